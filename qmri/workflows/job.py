"""From files to files: a fit prepared from a series on disk (:class:`FitJob`), and :func:`fit_files`.

A :class:`Workflow` says how a kind of series becomes a model and its data: which inputs it reads
besides the series (declared as :class:`qmri.options.Option`, so the command line offers them) and
a ``prepare`` function that reads headers and acquisition files, checks them against the series
and builds the model. :func:`fit_files` is the one call the command line makes per fitting command:
prepare, refuse to overwrite, fit, write the maps and their sidecars, the extra files and figures.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from qmri.errors import QMRIInputError
from qmri.options import Option, resolve

#: The automatic mask's file in the result set (``--mask auto``).
AUTO_MASK_FILE = "mask.nii.gz"


@dataclass(frozen=True)
class Workflow:
    """How a kind of series (diffusion, DCE, VFA) is read and turned into a model and its data.

    Attributes
    ----------
    name : str
        Name of the workflow (a model class's ``workflow``; a module of :mod:`qmri.workflows`).
    series : str
        Name of the series argument (``dwi``, ``dce``, ``vfa``).
    series_help : str
        What the series is (``--help``).
    inputs : callable
        ``inputs(model_cls)`` → tuple of :class:`~qmri.options.Option`: the acquisition inputs.
    prepare : callable
        ``prepare(model_cls, series, mask, inputs, model_options, ahead=None)`` → :class:`FitJob`;
        ``ahead``, a :class:`qmri.io.ReadAhead` of the series or None, is what the job's ``load``
        (and anything that reads the series while preparing) gives :func:`qmri.io.series_data`.
    protocol_inputs : callable or None
        ``protocol_inputs(model_cls)`` → the options that describe an acquisition without a series
        (what ``qmri train`` reads); None when the workflow cannot build a model without one.
    protocol_model : callable or None
        ``protocol_model(model_cls, inputs, model_options)`` → the model for that acquisition.
    hint : str
        The likely cause of a fit that is evidently wrong on such series (named with the warnings
        of :meth:`qmri.maps.ParameterMaps.warnings`), e.g. b-values in the wrong units.
    measured : callable, optional
        ``measured(values, provenance, index)`` → one voxel's data as the fit saw it, from the
        series' values at that voxel (``(n_volumes,)``) and the fit's provenance (``qmri
        plot-fit``); default the values as they are.
    mask_method : str
        How ``--mask auto`` masks the job's reference image (:func:`qmri.masking.auto_mask`:
        ``median_otsu`` or ``otsu``).
    mask_reference : str
        That reference image in words (``--help``).
    bids_suffix : str
        Suffix of the model maps in BIDS derivative names (:class:`qmri.naming.BIDSNaming`).
    bids_datatype : str
        BIDS datatype folder of the outputs when the series is not in a datatype folder of its own.
    advice : callable, optional
        ``advice(plan, maps, data) -> (notes, causes)``, from what the data and the fit show:
        ``notes``, warnings of their own (e.g. parameters the data do not determine), and ``causes``,
        the likely causes of the warnings of :meth:`qmri.maps.ParameterMaps.warnings`, each naming
        the option that helps; when neither it nor :func:`fit_warnings` finds a cause, ``hint`` is
        named.
    """

    name: str
    series: str
    series_help: str
    inputs: Callable[[type], tuple[Option, ...]]
    prepare: Callable
    protocol_inputs: Callable[[type], tuple[Option, ...]] | None = None
    protocol_model: Callable | None = None
    hint: str = ""
    measured: Callable | None = None
    mask_method: str = "otsu"
    mask_reference: str = "the mean image"
    bids_suffix: str = ""
    bids_datatype: str = ""
    advice: Callable | None = None

    @property
    def mask_help(self) -> str:
        """What ``--mask auto`` does, in words (``--help``)."""
        from qmri.masking import describe

        return f"{describe(self.mask_method)} of {self.mask_reference}"


@dataclass
class FitJob:
    """A fit prepared from files: the model, how to read its data, and what else to write.

    Attributes
    ----------
    model : qmri.models.model.Model
    load : callable
        ``load()`` → the data, shape ``spatial + (model.n_measurements,)`` (in its stored type).
    transform : callable or None
        Applied by :meth:`~qmri.models.model.Model.fit` to each chunk before fitting
        (``transform(Y, index)``, e.g. DCE signal to concentration).
    mask : ndarray of bool or None
    image : nibabel image
        The series: its affine and header go into every output.
    sources : list of Path
        Input files, recorded in the sidecars.
    provenance : dict
        Inputs that changed the numbers (written into the sidecars).
    files : dict of str to callable
        Extra text outputs: ``{file name: function(maps) -> text}`` (e.g. ``aif.csv``).
    plots : dict of str to callable
        Extra figures with ``plot``: ``{file name: function(maps, data, path)}``.
    notes : list of str or callable
        Warnings known before the fit, reported with the fit's own; a callable ``note(maps)`` gives
        its warning (or None) once the fitted voxels are known (e.g. voxels of a T1 or B1 map that
        cannot be used: :func:`unusable_note`).
    reference : callable or None
        ``reference(data)`` → ``(image (x, y, z), what)``: the 3-D image that ``--mask auto`` masks
        and in which voxels without signal are found (:mod:`qmri.masking`), with a description in
        words; None: neither.
    """

    model: object
    load: Callable[[], np.ndarray]
    mask: np.ndarray | None
    image: object
    transform: Callable | None = None
    sources: list = field(default_factory=list)
    provenance: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    plots: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    reference: Callable | None = None


@dataclass
class FitOutcome:
    """What :func:`fit_files` did: the maps, the files written, the seconds it took and the warnings
    (:meth:`qmri.maps.ParameterMaps.warnings`: signs that the fit is evidently wrong)."""

    maps: object
    written: list
    seconds: float
    warnings: list = field(default_factory=list)

    def summary(self) -> dict:
        """The summary for scripts (``--json``): :meth:`ParameterMaps.report
        <qmri.maps.ParameterMaps.report>` plus the warnings, the timings (fit and whole run, s) and
        the files written."""
        out = self.maps.report()
        out["warnings"] = list(self.warnings)
        out["timings"] = {"fit_s": out.pop("fit_seconds"), "total_s": round(self.seconds, 4)}
        out["outputs"] = [str(p) for p in self.written]
        return out


def file_provenance(key: str, path) -> dict:
    """``{key: path, "<key>_sha256": checksum}``: an input file as the sidecars record it."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {key: str(path), f"{key}_sha256": digest.hexdigest()}


def unusable_note(path, what: str, values):
    """A note (:attr:`FitJob.notes`) for a per-voxel input map (T1, B1): ``note(maps)`` gives the
    warning when fitted voxels of the map are NaN, zero or negative (those voxels are failed), else
    None."""
    values = np.asarray(values, dtype=np.float64)

    def note(maps):
        with np.errstate(invalid="ignore"):
            bad = int(np.sum(~(np.isfinite(values) & (values > 0)) & maps.mask))
        if not bad:
            return None
        return (f"{path}: {bad} of the {int(maps.mask.sum())} fitted voxels have no usable {what} (NaN, zero or "
                "negative, e.g. where its own fit failed): those voxels are failed in these maps (NaN, status failed)")

    return note


def method_options(model_cls) -> list:
    """The options of all of the model's methods (each name once, first declaration wins)."""
    seen = {}
    for m in model_cls.methods.values():
        for o in m.options:
            seen.setdefault(o.name, o)
    return list(seen.values())


def split_options(model_cls, options: dict, where: str) -> tuple[dict, dict, dict]:
    """Options given flat, as the command line takes them (``aif``, ``model``, ``compute_se``...), split
    into the workflow's inputs, the model's options and the methods' options.

    Returns
    -------
    (inputs, model_options, method_options) : tuple of dict

    Raises
    ------
    QMRIInputError
        A name that is none of them (the message names ``where`` and the options there are).
    """
    from qmri.workflows import workflow

    groups = (workflow(model_cls.workflow).inputs(model_cls), model_cls.options, method_options(model_cls))
    out = ({}, {}, {})
    for name, value in options.items():
        i = next((i for i, g in enumerate(groups) if any(o.name == name for o in g)), None)
        if i is None:
            known = ", ".join(o.name for g in groups for o in g)
            raise QMRIInputError(f"{where}: unknown option {name!r}; qmri {model_cls.command} takes {known}")
        out[i][name] = value
    return out


def noise_map(job: FitJob, method_options: dict, series: Path) -> None:
    """Read a noise map given as ``sigma`` (``--sigma FILE``, :data:`qmri.models.methods.CRLB_OPTIONS`)
    on the series' grid, in place of its path; record the file in the job's sources and provenance.

    Raises
    ------
    QMRIInputError
        Unreadable map, another grid, or no positive finite value.
    """
    from qmri import io
    from qmri.models.methods import CRLB_OPTIONS

    if method_options.get("sigma") is None:
        return
    value = next(o for o in CRLB_OPTIONS if o.name == "sigma").convert(method_options["sigma"])
    if isinstance(value, (str, Path)):
        path = Path(value)
        sigma = io.load_on_grid(path, job.image, what="noise map (--sigma)", reference_path=series)
        sigma = np.asarray(sigma, dtype=np.float64)
        if not np.any(np.isfinite(sigma) & (sigma > 0)):
            raise QMRIInputError(f"{path}: the noise map (--sigma) has no positive finite value")
        job.sources.append(path)
        job.provenance.update(file_provenance("noise_map", path))
        value = sigma
    method_options["sigma"] = value


def planned_maps(request, out_dir, naming) -> dict[str, tuple[str, Path]]:
    """``{map name: (kind, NIfTI path)}`` of the maps :func:`fit_files` writes for ``request`` (a
    :class:`~qmri.models.request.FitRequest`: its outputs and their kinds), named by ``naming``; each
    NIfTI has a JSON sidecar beside it."""
    folder = naming.folder(out_dir)
    return {name: (kind, folder / naming.map_file(name, kind)) for name, kind in request.outputs.items()}


def planned_outputs(job: FitJob, maps: dict, out_dir, plot: bool, naming, auto_mask: bool = False) -> list[Path]:
    """Every file :func:`fit_files` writes for ``job``: the NIfTI and sidecar of each of ``maps``
    (:func:`planned_maps`), the job's extra files, the PNGs with ``plot`` and ``mask.nii.gz`` with
    ``auto_mask``, named by ``naming``."""
    from qmri import io

    paths = []
    for _, nii in maps.values():
        paths += [nii, io.sidecar_path(nii)]
    extra = list(job.files) + (["maps.png", *job.plots] if plot else []) + ([AUTO_MASK_FILE] if auto_mask else [])
    paths += [naming.folder(out_dir) / naming.extra_file(name) for name in extra]
    return paths


@dataclass
class FitPlan:
    """A fit whose inputs are read and checked and whose outputs are named, not yet run
    (:func:`plan_fit`; :func:`run_fit` runs it).

    Attributes
    ----------
    job : FitJob
    request : qmri.models.request.FitRequest
        The fit, checked: the method, its resolved options, the maps with their kinds
        (:meth:`qmri.models.model.Model.request`).
    workflow : Workflow
    out_dir : Path
    naming : qmri.naming.BIDSNaming or qmri.naming.PrefixNaming
        BIDS derivative names, or qmri's own (with ``prefix``).
    prefix : str
    plot : bool
    mask : Path, "auto" or None
    maps : dict
        ``{map name: (kind, NIfTI path)}`` (:func:`planned_maps`).
    outputs : list of Path
        Every file the fit writes (:func:`planned_outputs`).
    started : float
        ``time.perf_counter()`` when planning began.
    bounds : dict or None
        The bounds given (``--bounds``), ``{name: (lower, upper)}``.
    """

    job: FitJob
    request: object
    workflow: Workflow
    out_dir: Path
    naming: object
    prefix: str
    plot: bool
    mask: Path | None
    maps: dict
    outputs: list
    started: float
    bounds: dict | None = None

    @property
    def method(self):
        """The method of the fit (:attr:`request`)."""
        return self.request.method

    @property
    def bids(self) -> bool:
        """Whether the outputs get BIDS derivative names."""
        from qmri.naming import PrefixNaming

        return not isinstance(self.naming, PrefixNaming)


def plan_fit(model_cls, series, *, out_dir, mask=None, method: str | None = None, prefix: str = "",
             plot: bool = False, bounds: dict | None = None, model_options: dict | None = None,
             method_options: dict | None = None, bids: bool | None = None, ahead=None, **inputs) -> FitPlan:
    """Read and check the inputs of a fit and name its outputs, without fitting or writing
    (parameters as :func:`fit_files`; ``ahead``: a :class:`qmri.io.ReadAhead` of the series, which
    the job reads it from).

    Raises
    ------
    QMRIInputError
        Any bad input (one line naming the file and the problem).
    """
    from qmri.masking import is_auto
    from qmri.naming import PrefixNaming
    from qmri.workflows import workflow

    t0 = time.perf_counter()
    wf = workflow(model_cls.workflow)
    inputs = resolve(wf.inputs(model_cls), inputs, f"qmri {model_cls.command}")
    model_opts = dict(resolve(model_cls.options, model_options or {}, model_cls.__name__))
    if bounds:
        model_opts["bounds"] = bounds
    auto = is_auto(mask)
    mask = None if mask is None else mask if auto else Path(mask)
    job = wf.prepare(model_cls, Path(series), None if auto else mask, inputs, model_opts, ahead=ahead)
    if auto and job.reference is None:
        raise QMRIInputError(f"--mask auto: no automatic mask for qmri {model_cls.command}; give --mask MASK.nii.gz")
    method_options = dict(method_options or {})
    job.model.method(method)  # an unknown method is named before the noise map is read
    noise_map(job, method_options, Path(series))
    request = job.model.request(method, **method_options)
    naming = derivative_naming(series, out_dir, job.model, wf, bids, prefix) or PrefixNaming(prefix)
    maps = planned_maps(request, out_dir, naming)
    outputs = planned_outputs(job, maps, out_dir, plot, naming, auto_mask=auto)
    return FitPlan(job, request, wf, Path(out_dir), naming, prefix, plot, mask, maps, outputs, t0,
                   bounds=dict(bounds) if bounds else None)


def run_fit(plan: FitPlan, *, force: bool = False, progress: bool = False, on_start=None, slices=None,
            provenance: dict | None = None) -> FitOutcome:
    """Fit a planned fit and write its outputs as one result set (what :func:`fit_files` does after
    :func:`plan_fit`).

    Parameters
    ----------
    plan : FitPlan
    force, progress, on_start, slices
        As :func:`fit_files`.
    provenance : dict, optional
        Further keys (lower-case ``snake_case``) recorded in every sidecar, e.g. the configuration of
        a pipeline that ran the fit.

    Raises
    ------
    OutputExistsError
        An output exists and ``force`` is False; nothing is written.
    """
    from qmri import io
    from qmri.masking import auto_mask, is_auto
    from qmri.resultset import refuse_existing

    job, m = plan.job, plan.method
    refuse_existing(plan.outputs, force)
    if on_start is not None:
        on_start(job.model.describe(m.name))
    # compiled kernels load (Numba's start-up, ~0.5 s) while the series is read and decompressed
    warm = threading.Thread(target=m.warm_up, args=(job.model,), daemon=True)
    warm.start()
    data = job.load()
    warm.join()
    auto = is_auto(plan.mask)
    reference = job.reference(data) if job.reference is not None else None
    inputs = dict(job.provenance)
    if auto:
        job.mask, mask_provenance = auto_mask(reference[0], plan.workflow.mask_method, reference[1])
        inputs.update(mask_provenance)
    elif plan.mask is not None:
        inputs.update(file_provenance("mask", plan.mask))
    inputs.update(provenance or {})
    request = plan.request.with_inputs(inputs, affine=job.image.affine, header=job.image.header)
    maps = job.model.fit(data, mask=job.mask, request=request, progress=progress, transform=job.transform)
    extra = {name: (lambda path, text=text: io.write_text(path, text(maps))) for name, text in job.files.items()}
    if auto:
        extra[AUTO_MASK_FILE] = lambda path: io.write_map(path, job.mask, affine=job.image.affine,
                                                          header=job.image.header, dtype=np.uint8)
    if plan.plot:
        from qmri.plot import montage

        title = f"{type(job.model).__name__} {m.name}: {Path(job.sources[0]).name}" if job.sources else None
        extra["maps.png"] = lambda path: montage(maps, path, slices=slices, title=title)
        extra.update({name: (lambda path, draw=draw: draw(maps, data, path)) for name, draw in job.plots.items()})
    naming = plan.naming
    written = maps.save(plan.out_dir, force=force, sources=job.sources, extra=extra, naming=naming)
    if plan.bids:
        from qmri.bids import write_dataset_description

        written += [p for p in [write_dataset_description(plan.out_dir, naming.dataset_links(plan.out_dir))] if p]
    return FitOutcome(maps, written, time.perf_counter() - plan.started, fit_warnings(plan, maps, data, reference))


def fit_warnings(plan: FitPlan, maps, data, reference) -> list[str]:
    """The warnings of a fit: those known before it (:attr:`FitJob.notes`), fitted voxels without
    signal (:func:`qmri.masking.no_signal_warning`), the workflow's notes, then the signs that the
    fit is evidently wrong (:meth:`qmri.maps.ParameterMaps.warnings`) with their likely causes from
    what the data show (:func:`common_causes` and the workflow's ``advice``; else its ``hint``)."""
    from qmri.masking import no_signal_warning

    job, wf = plan.job, plan.workflow
    out = [line for line in (n(maps) if callable(n) else n for n in job.notes) if line]
    line = None
    if reference is not None:
        line = no_signal_warning(reference[0], maps.mask, reference[1], mask_given=plan.mask is not None)
        if line:
            out.append(line)
    notes, causes = wf.advice(plan, maps, data) if wf.advice is not None else ([], [])
    out += notes + maps.out_of_range()
    if not maps.warnings():
        return out
    empty, common = common_causes(plan, maps, data)
    if line and not empty:
        fix = "check the mask, or use --mask auto" if plan.mask is not None else "give --mask, or --mask auto"
        common.insert(0, f"the fitted voxels without signal (above): {fix}")
    causes = common if empty else common + causes
    return out + maps.warnings("; ".join(causes) if causes else wf.hint)


def common_causes(plan: FitPlan, maps, data) -> tuple[bool, list[str]]:
    """Causes of a fit's warnings that any workflow's data can show: fitted voxels whose series is
    all NaN or zero (then the only cause: ``empty`` is True), and parameters at bounds narrowed with
    ``--bounds`` (naming the default bounds)."""
    from qmri.maps import MAX_AT_BOUND, MAX_FAILED

    causes = []
    index = np.flatnonzero(maps.mask.ravel())
    if index.size:
        blank = 0
        for start in range(0, index.size, 100_000):  # chunks of voxels: memory stays bounded
            voxels = np.asarray(data[np.unravel_index(index[start:start + 100_000], maps.mask.shape)])
            with np.errstate(invalid="ignore"):
                blank += int(np.sum(np.any(~np.isfinite(voxels), axis=-1) | np.all(voxels == 0, axis=-1)))
        frac = blank / index.size
        if frac > MAX_FAILED:
            return True, [f"the series holds NaN, infinite or no values (zero in every volume) in {100 * frac:.1f}% "
                          "of the fitted voxels: check the series file" + (" and the mask" if plan.mask else "")]
    given = plan.bounds or {}
    model = plan.job.model
    defaults = dict(zip(model.spec.names, zip(model.spec.lower, model.spec.upper))) if hasattr(model, "spec") else {}
    for name, e in maps.report()["parameters"].items():
        if name in given and max(e.get("at_lower_bound", 0.0), e.get("at_upper_bound", 0.0)) > MAX_AT_BOUND:
            lo, hi = given[name]
            d = defaults.get(name)
            default = f" (default {d[0]:g}:{d[1]:g})" if d is not None else ""
            causes.append(f"{name} bounds narrowed with --bounds to {lo:g}:{hi:g}{default}: the data lie beyond them; "
                          "widen them")
    return False, causes


def fit_files(model_cls, series, *, out_dir, mask=None, method: str | None = None, prefix: str = "",
              force: bool = False, plot: bool = False, progress: bool = False, bounds: dict | None = None,
              model_options: dict | None = None, method_options: dict | None = None, on_start=None,
              bids: bool | None = None, slices=None, provenance: dict | None = None, **inputs) -> FitOutcome:
    """Fit a series on disk and write the maps: what ``qmri <command>`` does.

    Parameters
    ----------
    model_cls : type
        A model class with a ``workflow`` (``qmri.models.IVIM``...).
    series : path
        The 4-D NIfTI series.
    out_dir : path
        Output folder (created if needed).
    mask : path or "auto", optional
        3-D mask on the series' grid; ``"auto"``: an automatic mask of the workflow's reference
        image (:mod:`qmri.masking`: dipy's ``median_otsu`` for diffusion, scikit-image's Otsu
        threshold for DCE and VFA), written as ``mask.nii.gz`` in the result set and recorded in the
        sidecars (method, parameters, reference image).
    method : str, optional
        One of ``model_cls.methods`` (default the model's).
    prefix : str
        Prepended to every output file name.
    force : bool
        Overwrite existing outputs (otherwise nothing is written if one exists).
    plot : bool
        Also write ``maps.png`` (a grid of slices: :func:`qmri.plot.montage`) and the workflow's figures.
    slices : list of int, optional
        z indices of the slices in ``maps.png`` (default: up to 5 through the fitted voxels).
    progress : bool
        Show a progress bar.
    bounds : dict, optional
        ``{name: (lower, upper)}`` overriding the model's bounds.
    model_options : dict, optional
        Keywords of the model (its declared ``options``, e.g. ``threshold``).
    method_options : dict, optional
        Keywords of the method (e.g. ``compute_se``).
    on_start : callable, optional
        Called with a one-line description once the inputs are checked, before the fit.
    bids : bool, optional
        Write a BIDS derivative dataset in ``out_dir`` (:class:`qmri.naming.BIDSNaming`, and
        ``dataset_description.json`` unless present); default (None): when the series is in a BIDS
        dataset and ``out_dir`` is a derivatives folder (:func:`qmri.naming.wants_bids`).
    provenance : dict, optional
        Further keys recorded in every sidecar (:func:`run_fit`).
    **inputs
        The workflow's inputs (``bval=``, ``aif=``...; see ``qmri <command> --help``).

    Returns
    -------
    FitOutcome

    Raises
    ------
    QMRIInputError
        Any bad input (one line naming the file and the problem); nothing is written.
    OutputExistsError
        An output exists and ``force`` is False; nothing is written.
    """
    from qmri import io

    with io.ReadAhead(series) as ahead:  # decompressed while the inputs are checked and the kernels load
        plan = plan_fit(model_cls, series, out_dir=out_dir, mask=mask, method=method, prefix=prefix, plot=plot,
                        bounds=bounds, model_options=model_options, method_options=method_options, bids=bids,
                        ahead=ahead, **inputs)
        return run_fit(plan, force=force, progress=progress, on_start=on_start, slices=slices, provenance=provenance)


def derivative_naming(series, out_dir, model, workflow: Workflow, bids: bool | None, prefix: str = ""):
    """:class:`qmri.naming.BIDSNaming` for the fit when BIDS outputs are wanted
    (:func:`qmri.naming.wants_bids`), else None (qmri's own names).

    Raises
    ------
    QMRIInputError
        BIDS outputs with a prefix, or for a series without a BIDS name.
    """
    from qmri.naming import BIDSNaming, wants_bids

    if not wants_bids(series, out_dir, bids):
        return None
    if prefix:
        raise QMRIInputError("--prefix cannot be combined with BIDS derivative names (--bids, or an output folder "
                             "under derivatives/ for a series in a BIDS dataset)")
    return BIDSNaming(series, model.label(), workflow.bids_suffix, workflow.bids_datatype)


def load_series(path: Path, what: str):
    """The 4-D series at ``path`` (lazy nibabel image)."""
    from qmri import io

    return io.load_nifti(path, ndim=4, what=what)


def load_mask(path: Path | None, img, series: Path):
    """The mask at ``path`` on the series' grid, or None."""
    from qmri import io

    return None if path is None else io.load_mask(path, img, reference_path=series)

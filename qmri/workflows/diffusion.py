"""Diffusion series from files: a 4-D NIfTI with an FSL ``.bval`` (and ``.bvec``), for any diffusion model.

``X.bval`` and ``X.bvec`` beside ``X.nii.gz`` (as dcm2niix writes them, or inherited in a BIDS
dataset: :func:`qmri.bids.companions`) are used when ``--bval`` / ``--bvec`` are not given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qmri.bids import companions, ignore_sidecar_option, split_image_name, take_file
from qmri.errors import QMRIInputError
from qmri.maps import MAX_AT_BOUND, MIN_MEDIAN_R2
from qmri.models.diffusion.acquisition import B0_THRESHOLD, check_bval_units, check_bvecs, fsl_bvec_frame
from qmri.options import Option
from qmri.workflows.job import FitJob, Workflow, file_provenance, load_mask, load_series

_BVAL = Option("bval", "FSL .bval file (s/mm2), one value per volume (default: X.bval beside X.nii.gz)", Path)
_BVEC = Option("bvec", "FSL .bvec file (unit vectors; needed for the full tensor; default: X.bvec beside "
               "X.nii.gz)", Path)
_BMIN = Option("bmin", "use only volumes with b >= BMIN s/mm2 (e.g. 200 for a perfusion-free ADC)", float)
_BMAX = Option("bmax", "use only volumes with b <= BMAX s/mm2 (e.g. 2500; DKI holds up to about 2000-3000)", float)
_IGNORE = ignore_sidecar_option()


def inputs(model_cls) -> tuple[Option, ...]:
    """``--bval``, ``--bvec`` (models that read b-vectors), ``--bmin``, ``--bmax``, ``--ignore-sidecar``."""
    return (_BVAL,) + ((_BVEC,) if model_cls.uses_bvecs else ()) + (_BMIN, _BMAX, _IGNORE)


def select_volumes(bvals, bmin=None, bmax=None) -> np.ndarray:
    """Boolean selection of the volumes with ``bmin <= b <= bmax`` (s/mm²).

    Raises
    ------
    QMRIInputError
        No volume left.
    """
    keep = np.ones(bvals.size, dtype=bool)
    if bmin is not None:
        keep &= bvals >= bmin
    if bmax is not None:
        keep &= bvals <= bmax
    if not keep.any():
        rng = " and ".join(s for s in (f"--bmin {bmin:g}" if bmin is not None else "",
                                       f"--bmax {bmax:g}" if bmax is not None else "") if s)
        raise QMRIInputError(f"{rng} leaves no volume (b from {bvals.min():g} to {bvals.max():g} s/mm2)")
    return keep


def read_acquisition(bval_path: Path, bvec_path: Path | None, inputs: dict, model_options: dict, *,
                     series: Path | None = None, n_volumes: int | None = None):
    """The b-values and unit b-vectors (or None) of the volumes kept by ``--bmin``/``--bmax``, and the
    boolean selection of those volumes.

    Parameters
    ----------
    bval_path, bvec_path : Path
        FSL ``.bval`` (s/mm²) and ``.bvec`` (3 rows of unit vectors) files; ``bvec_path`` may be None.
    inputs : dict
        The workflow's inputs (``bmin``, ``bmax`` in s/mm², optional).
    model_options : dict
        The model's options (``b0_threshold`` in s/mm²: volumes at or below it need no direction;
        default :data:`qmri.models.diffusion.acquisition.B0_THRESHOLD`).
    series : Path, optional
        The series, named in the error when the counts differ.
    n_volumes : int, optional
        Volumes of the series; the b-values must number as many.

    Returns
    -------
    bvals : ndarray, shape (m,)
        b-values (s/mm²) of the kept volumes.
    bvecs : ndarray, shape (m, 3), or None
    keep : ndarray of bool, shape (n,)
        Which of the file's volumes are kept.

    Raises
    ------
    QMRIInputError
        Unreadable files, b-values evidently not in s/mm² (:func:`~qmri.models.diffusion.acquisition.
        check_bval_units`), b-value count not ``n_volumes``, b-vectors not unit length, no volume left.
    """
    from qmri import io

    bvals = check_bval_units(io.read_bvals(bval_path), where=str(bval_path))
    if n_volumes is not None and bvals.size != n_volumes:
        raise QMRIInputError(f"{bval_path}: {bvals.size} b-values but {series} has {n_volumes} volumes")
    bvecs = io.read_bvecs(bvec_path, n=bvals.size) if bvec_path is not None else None
    keep = select_volumes(bvals, inputs.get("bmin"), inputs.get("bmax"))
    g = None
    if bvecs is not None:
        g = check_bvecs(bvals[keep], bvecs[keep], where=str(bvec_path),
                        b0_threshold=model_options.get("b0_threshold", B0_THRESHOLD))
    return bvals[keep], g, keep


def protocol_inputs(model_cls) -> tuple[Option, ...]:
    """The acquisition without a series (``qmri train``): :func:`inputs` less ``--ignore-sidecar``."""
    return tuple(o for o in inputs(model_cls) if o is not _IGNORE)


def protocol_model(model_cls, inputs: dict, model_options: dict):
    """The model for b-value (and b-vector) files alone, without a series (``qmri train``).

    Raises
    ------
    QMRIInputError
        No ``--bval``; unreadable files or an acquisition the model cannot fit.
    """
    if inputs.get("bval") is None:
        raise QMRIInputError("give the b-values: --bval FILE.bval")
    bvec = inputs.get("bvec") if model_cls.uses_bvecs else None
    b, g, _ = read_acquisition(inputs["bval"], bvec, inputs, model_options)
    return model_cls.from_acquisition(b, g, **model_options)


def prepare(model_cls, series: Path, mask: Path | None, inputs: dict, model_options: dict,
            ahead=None) -> FitJob:
    """Read the series header, b-values (and b-vectors), select volumes, build the model.

    ``--bval`` / ``--bvec`` default to the files beside the series (:func:`qmri.bids.companions`).

    Raises
    ------
    QMRIInputError
        No b-values (neither ``--bval`` nor ``X.bval`` beside the series), missing or unreadable
        files, b-value count not the volume count, b-vectors not unit length, mask on another grid,
        an acquisition the model cannot fit.
    """
    from qmri import io

    img = load_series(series, "DWI series")
    beside = companions(series, use=not inputs.get("ignore_sidecar"))
    bval_path = take_file(inputs.get("bval"), beside.bval, flag="--bval", what="b-values")
    if bval_path is None:
        raise QMRIInputError(f"{series}: no b-values: give --bval FILE.bval (or put "
                             f"{split_image_name(series)[0]}.bval beside the series)")
    bvec_path = take_file(inputs.get("bvec"), beside.bvec, flag="--bvec", what="b-vectors") \
        if model_cls.uses_bvecs else None
    b, g, keep = read_acquisition(bval_path, bvec_path, inputs, model_options, series=series,
                                  n_volumes=img.shape[3])
    mask_arr = load_mask(mask, img, series)
    frame = {"bvec_frame": fsl_bvec_frame(img.affine)} if model_cls.uses_bvecs else {}
    model = model_cls.from_acquisition(b, g, **frame, **model_options)
    provenance = {k: inputs[k] for k in ("bmin", "bmax") if inputs.get(k) is not None}
    if not keep.all():
        provenance["volumes"] = np.flatnonzero(keep).tolist()  # of the series, fitted
    provenance.update(file_provenance("bval_file", bval_path))
    if bvec_path is not None:
        provenance.update(file_provenance("bvec_file", bvec_path))

    def load():
        data = io.series_data(img, ahead)
        return data if keep.all() else data[..., keep]

    sources = [series, bval_path] + ([bvec_path] if bvec_path else []) + ([mask] if mask else [])
    notes = [line for line in [b_range_note(model, bval_path)] if line]
    return FitJob(model=model, load=load, mask=mask_arr, image=img, sources=sources, provenance=provenance,
                  reference=lambda data: low_b_image(data, b, model_options.get("b0_threshold", B0_THRESHOLD)),
                  notes=notes)


def b_range_note(model, bval_path=None) -> str | None:
    """The warning when the b-values reach beyond the model's range (its ``valid_b_max``), naming
    ``--bmax``; None when they do not (or the model has no such limit)."""
    top, limit = float(np.max(model.bvals)), getattr(model, "valid_b_max", None)
    if limit is None or top <= limit:
        return None
    where = f"{bval_path}: " if bval_path is not None else ""
    n_over = int(np.sum(model.bvals > limit))
    return (f"{where}b up to {top:g} s/mm2 ({n_over} of {model.bvals.size} volumes above {limit:g}) is beyond the "
            f"range of the {type(model).__name__} model: {model.valid_b_reason}; fit with --bmax {limit:g}")


def advice(plan, maps, data) -> tuple[list[str], list[str]]:
    """What the acquisition says about a diffusion fit's warnings: b-values beyond the model's range
    (``--bmax``), a largest b below the one the model needs (``needs_b_max``), too few low b-values for IVIM's f and D* (``--bmin`` with ``qmri adc``), b-values
    below 200 s/mm² that carry perfusion in an ADC (``--bmin``). Returns ``(notes, causes)``
    (:attr:`qmri.workflows.job.Workflow.advice`)."""
    model = plan.job.model
    b = np.asarray(model.bvals, dtype=np.float64)
    report = maps.report()
    flagged = {name for name, e in report["parameters"].items()
               if max(e.get("at_lower_bound", 0.0), e.get("at_upper_bound", 0.0)) > MAX_AT_BOUND}
    causes = []
    limit = getattr(model, "valid_b_max", None)
    if limit is not None and b.max() > limit:
        causes.append(f"b-values beyond the {type(model).__name__} model's range (up to {b.max():g} s/mm2): fit with "
                      f"--bmax {limit:g}")
    need = getattr(model, "needs_b_max", None)
    if need is not None and b.max() < need and flagged:
        causes.append(f"b-values only up to {b.max():g} s/mm2: {model.needs_b_reason}")
    threshold = getattr(model, "threshold", None)
    if getattr(model, "min_low_b", None) is not None and threshold is not None and flagged & {"f", "Dstar"}:
        low = np.unique(b[b < threshold])
        if low.size < model.min_low_b:
            values = ", ".join(f"{v:g}" for v in low) or "none"
            causes.append(f"{low.size} distinct b-value(s) below {threshold:g} s/mm2 ({values}): f and D* are told "
                          f"apart only by the signal there, which needs at least {model.min_low_b}; for D alone fit "
                          f"qmri adc --bmin {threshold:g}")
    if type(model).__name__ == "ADC" and report["median_r2"] < MIN_MEDIAN_R2 and np.sum(b < 200) >= 2 and b.min() < 200:
        causes.append("b-values below 200 s/mm2 carry perfusion (the ADC is then not mono-exponential): --bmin 200")
    return [], causes


def low_b_image(data, bvals, b0_threshold: float = 50.0) -> tuple[np.ndarray, str]:
    """The mean image of the volumes with b <= ``b0_threshold`` (s/mm²), or of those at the lowest b
    when there is none, and its description (the reference of ``--mask auto``, :mod:`qmri.masking`).

    Parameters
    ----------
    data : ndarray (x, y, z, n)
    bvals : ndarray (n,), s/mm²
    """
    low = bvals <= b0_threshold
    what = f"mean b<={b0_threshold:g} s/mm2 image"
    if not low.any():
        low = bvals == bvals.min()
        what = f"mean b={bvals.min():g} s/mm2 image (the lowest b)"
    with np.errstate(invalid="ignore", over="ignore"):
        image = np.asarray(data[..., np.flatnonzero(low)], dtype=np.float64).mean(axis=-1)
    return image, what


def measured(values, provenance: dict, index) -> np.ndarray:
    """The voxel's volumes the fit used (``volumes`` of the provenance, when ``--bmin``/``--bmax`` chose some).

    Raises :class:`QMRIInputError` if the series lacks one of them (not the series that was fitted)."""
    values = np.asarray(values, dtype=np.float64)
    volumes = provenance.get("volumes")
    if volumes is None:
        return values
    volumes = np.asarray(volumes, dtype=int)
    if volumes.size and volumes.max() >= values.size:
        raise QMRIInputError(f"the fit used volume {volumes.max()} of its series, this series has {values.size} "
                             "volumes; give the series that was fitted")
    return values[volumes]


# maps: BEP016's dwimap suffix
WORKFLOW = Workflow("diffusion", "dwi", "4-D diffusion-weighted NIfTI series", inputs, prepare, measured=measured,
                    bids_suffix="dwimap", bids_datatype="dwi",
                    protocol_inputs=protocol_inputs, protocol_model=protocol_model, mask_method="median_otsu",
                    mask_reference="the mean b=0 image (b <= --b0-threshold; else the lowest b)",
                    advice=advice, hint="b-values not in volume order: check the --bval file against the series")

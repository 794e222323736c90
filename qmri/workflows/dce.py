"""The DCE pipeline: frame times, arterial input, pre-contrast T1, signal to concentration, kinetic fit.

:func:`fit_dce` runs it on arrays (Python); :data:`WORKFLOW` runs it on files (``qmri dce``). Both
use the same defaults (:data:`qmri.models.dce.aif.DEFAULT_HCT`, :data:`qmri.models.dce.relaxation.DEFAULT_R1`,
population AIFs starting at ``aif_delay`` = 0 s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qmri.bids import companions, ignore_sidecar_option, reconcile
from qmri.errors import QMRIInputError
from qmri.models.dce import aif as A
from qmri.models.dce.aif import DEFAULT_HCT, POPULATION_AIFS
from qmri.models.dce.model import DCE, MAX_SERIES_S, check_frame_times  # noqa: F401 (MAX_SERIES_S: its name here before)
from qmri.models.dce.relaxation import DEFAULT_R1, signal_to_concentration
from qmri.options import Option
from qmri.plot import plot_curves
from qmri.workflows.job import FitJob, Workflow, file_provenance, load_mask, load_series, unusable_note


def _aif_paths(value: str, folder: Path) -> str:
    """``--aif`` with the file it names made absolute against ``folder`` (:meth:`qmri.options.Option.relative_to`):
    ``FILE.csv`` and ``roi:MASK``; a population AIF's name as it is."""
    if value in POPULATION_AIFS:
        return value
    prefix, file = ("roi:", value[4:]) if value.startswith("roi:") else ("", value)
    return prefix + str((folder / Path(file).expanduser()).resolve())


_INPUTS = (
    Option("time", "text file with one frame time in s per frame (white space or new lines); default: the frame "
           "timing of X.json beside X.nii.gz (FrameTimesStart, VolumeTiming, AcquisitionTime list or a "
           "RepetitionTime >= 0.5 s)", Path, group="time"),
    Option("tr_frame", "uniform frame interval in s (first frame at 0 s)", float, group="time", metavar="SECONDS"),
    Option("aif", "parker | georgiou | preclinical (population curves, starting at --aif-delay), FILE.csv (two "
           "columns: time s, concentration mM) or roi:ARTERY_MASK.nii.gz (mean concentration in the mask, whole "
           "blood)", str, required=True, paths=_aif_paths),
    Option("aif_delay", "time (s) at which a population AIF starts, i.e. the injection time (default 0)", float, 0.0),
    Option("aif_blood", "the AIF file holds whole-blood concentration: convert to plasma with --hct", bool, False),
    Option("hct", f"haematocrit for blood -> plasma (population AIFs, roi:, --aif-blood); default {DEFAULT_HCT}",
           float, DEFAULT_HCT),
    Option("input", "what the series holds (default signal: converted with --t1/--t10, --fa, --tr, --r1, "
           "--baseline)", str, "signal", choices=("signal", "concentration")),
    Option("t1", "pre-contrast T1 map in s (3-D, same grid)", Path, group="t1"),
    Option("t10", "pre-contrast T1 in s for every voxel", float, group="t1"),
    Option("fa", "flip angle in degrees (default: FlipAngle of X.json)", float),
    Option("tr", "repetition time in s (default: RepetitionTimeExcitation of X.json, or a RepetitionTime below "
           "0.5 s)", float),
    Option("r1", f"relaxivity in 1/s/mM (default {DEFAULT_R1})", float, DEFAULT_R1),
    Option("baseline", "number of pre-contrast frames", int),
    ignore_sidecar_option(),
)


# ---------------------------------------------------------------------------------------------
# The pipeline on arrays
# ---------------------------------------------------------------------------------------------
def check_times(t, n_frames: int, where: str = "frame times") -> np.ndarray:
    """Frame times (s) as a strictly increasing float array of ``n_frames`` values
    (:func:`qmri.models.dce.model.check_frame_times`).

    Raises
    ------
    QMRIInputError
        Wrong count, not finite, not strictly increasing, or spanning more than
        :data:`MAX_SERIES_S` (times in ms; the message names ``where``).
    """
    return check_frame_times(t, n_frames, where)


def check_t10(t10, mask=None, where: str = "T1 map"):
    """The pre-contrast T1 (s): a positive scalar, or a map (NaN where not usable).

    Voxels of a map whose T1 is zero, negative or not finite (e.g. where the T1 fit failed) are NaN
    in the map returned: their concentration, and so their DCE fit, is failed
    (:func:`qmri.workflows.job.unusable_note` reports them).

    Raises
    ------
    QMRIInputError
        Non-positive scalar; a map without a positive finite T1 inside the mask, or whose median
        looks like milliseconds.
    """
    t10 = np.asarray(t10, dtype=np.float64)
    if t10.ndim == 0:
        if not (np.isfinite(t10) and t10 > 0):
            raise QMRIInputError(f"--t10 must be a positive T1 in s, got {float(t10)}")
        return float(t10)
    inside = t10[mask] if mask is not None else t10.ravel()
    usable = inside[np.isfinite(inside) & (inside > 0)]
    if usable.size == 0:
        raise QMRIInputError(f"{where}: no voxel{' inside the mask' if mask is not None else ''} has a positive "
                             "finite T1 (T1 must be > 0 s)")
    if np.median(usable) > 20:
        raise QMRIInputError(f"{where}: median T1 {np.median(usable):g} looks like ms; T1 must be in s")
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(t10) & (t10 > 0), t10, np.nan)


def check_conversion(n_frames: int, *, fa, tr, baseline, has_t10: bool) -> None:
    """Check that a signal series can be converted to concentration.

    Raises
    ------
    QMRIInputError
        ``fa``, ``tr`` or ``baseline`` missing, a baseline outside the series, no pre-contrast T1.
    """
    missing = [f"--{k}" for k, v in (("fa", fa), ("tr", tr), ("baseline", baseline)) if v is None]
    if missing:
        raise QMRIInputError(f"--input signal needs {', '.join(missing)} to convert signal to concentration "
                             "(or give --input concentration)")
    if not 1 <= baseline < n_frames:
        raise QMRIInputError(f"--baseline must be between 1 and {n_frames - 1} frames, got {baseline}")
    if not has_t10:
        raise QMRIInputError("--input signal needs the pre-contrast T1: --t1 T1.nii.gz or --t10 SECONDS")


def to_concentration(data, *, input: str = "signal", t10=None, fa=None, tr=None, r1=DEFAULT_R1, baseline=None):
    """Concentration (mM) from a DCE series: converted from signal with the SPGR equation
    (:func:`qmri.models.dce.relaxation.signal_to_concentration`), or as given.

    Raises
    ------
    QMRIInputError
        As :func:`check_conversion`.
    """
    if input == "concentration":
        return np.asarray(data, dtype=np.float64)
    check_conversion(np.shape(data)[-1], fa=fa, tr=tr, baseline=baseline, has_t10=t10 is not None)
    with np.errstate(invalid="ignore", divide="ignore"):
        return signal_to_concentration(data, t10=t10, r1=r1, tr=tr, fa=fa, n_baseline=baseline)


def arterial_input(aif, t, *, hct=DEFAULT_HCT, aif_delay=0.0, aif_blood=False, concentration=None, where=None):
    """Plasma AIF (mM) on its own time grid, for frames at ``t`` (s).

    The AIF keeps its resolution: a file or a measured curve its samples, a population AIF a fine
    grid (:func:`qmri.models.dce.aif.population_samples`: at most 0.5 s, or a tenth of the shortest
    frame interval, apart where the curve bends); an arterial mask gives the mean curve at the
    frames, so its resolution is the frames'. Pass both to :class:`qmri.models.dce.DCE`
    (``DCE(t, cp, model, aif_times=times)``).

    Parameters
    ----------
    aif : str, path, tuple or ndarray
        A population AIF name (``parker``, ``georgiou``, ``preclinical``; starting at ``aif_delay``),
        a CSV file (time s, concentration mM), a measured curve ``(times_s, conc_mM)``, or a boolean
        arterial mask (whole-blood mean of ``concentration`` inside it).
    t : ndarray (n,)
        Frame times in s.
    hct : float
        Haematocrit for blood → plasma (population AIFs, masks, ``aif_blood``).
    aif_delay : float
        Start (s) of a population AIF.
    aif_blood : bool
        The file or curve holds whole-blood concentration.
    concentration : callable, optional
        ``concentration(mask)`` → the concentration (mM) of the voxels in ``mask``, shape (n, T)
        (needed for an arterial mask).
    where : str, optional
        The source of an arterial mask, named in errors (e.g. ``roi:artery.nii.gz``).

    Returns
    -------
    times : ndarray (k,)
        Sample times of the AIF in s (strictly increasing, covering the frames).
    cp : ndarray (k,)
        Plasma concentration in mM.

    Raises
    ------
    QMRIInputError
        Unknown name, a file or curve not covering the series or not strictly increasing, an
        empty mask, an AIF without signal over the frames (:func:`qmri.models.dce.aif.check_signal`:
        zero, negative, or arriving after the last frame).
    """
    if isinstance(aif, np.ndarray) and aif.dtype == bool:
        if not aif.any():
            raise QMRIInputError("AIF mask is empty")
        arterial = np.asarray(concentration(aif), dtype=np.float64)
        roi = A.roi_aif(arterial, np.ones(arterial.shape[0], dtype=bool))
        ta, ca = np.asarray(t, dtype=np.float64), A.blood_to_plasma(roi, hct)
        A.check_signal(ta, ca, t, where=f"{where or 'AIF mask'} (mean concentration in the mask)")
        return ta, ca
    if isinstance(aif, str) and aif in A.POPULATION_AIFS:
        if aif_delay >= t[-1]:
            raise QMRIInputError(f"--aif {aif} --aif-delay {aif_delay:g}: the AIF starts after the last frame "
                                 f"({t[-1]:g} s): no signal over the series")
        ta, ca = A.population_samples(aif, t, hct=hct, delay=aif_delay)
        A.check_signal(ta, ca, t, where=f"--aif {aif} --aif-delay {aif_delay:g}")
        return ta, ca
    if isinstance(aif, tuple):
        ta, ca = (np.asarray(v, dtype=np.float64) for v in aif)
        where = "AIF curve"
        if ta.ndim != 1 or ca.shape != ta.shape or ta.size < 2 or np.any(np.diff(ta) <= 0):
            raise QMRIInputError(f"{where}: times and concentrations must be two 1-D lists of the same length "
                                 "(at least 2), times strictly increasing")
        ca = A.blood_to_plasma(ca, hct) if aif_blood else ca
    else:
        path = Path(aif)
        if path.suffix.lower() not in (".csv", ".txt", ".tsv") and not path.exists():
            raise QMRIInputError(f"--aif {str(aif)!r}: not a population AIF ({', '.join(A.POPULATION_AIFS)}), "
                                 f"an existing file or roi:MASK")
        ta, ca = A.load_aif_csv(path, blood=aif_blood, hct=hct)
        where = f"AIF file {path}"
    tol = 1e-6 * max(1.0, abs(t[-1]))
    if ta[-1] < t[-1] - tol:
        raise QMRIInputError(f"{where} ends at {ta[-1]:g} s but the series runs to {t[-1]:g} s "
                             "(the AIF is shorter than the series)")
    if ta[0] > t[0] + tol:
        raise QMRIInputError(f"{where} starts at {ta[0]:g} s, after the first frame ({t[0]:g} s)")
    A.check_signal(ta, ca, t, where=where)
    return ta, ca


def fit_dce(series, times, aif, *, model: str = "tofts", fit_delay: bool = False, input: str = "signal",
            t10=None, fa=None, tr=None, r1=DEFAULT_R1, baseline=None, hct=DEFAULT_HCT, aif_delay=0.0,
            aif_blood=False, mask=None, method: str = "lsq", bounds=None, progress: bool = False,
            **method_options):
    """Fit a pharmacokinetic model to a DCE series (the ``qmri dce`` pipeline on arrays).

    Parameters
    ----------
    series : array_like, shape (..., n_frames)
        Signal (a.u.) or, with ``input="concentration"``, concentration (mM).
    times : array_like, shape (n_frames,)
        Frame times in s, strictly increasing.
    aif : str, path, tuple or bool ndarray
        Arterial input (see :func:`arterial_input`).
    model : {"tofts", "etm", "patlak", "2cxm", "2cum", "aath"}
    fit_delay : bool
        Also fit an arterial delay (s, ±10 s).
    input : {"signal", "concentration"}
    t10 : float or array_like, optional
        Pre-contrast T1 in s (a scalar or a map of the spatial shape); needed for signal input.
    fa, tr : float, optional
        Flip angle (degrees) and TR (s) of the SPGR series (signal input).
    r1 : float
        Relaxivity in 1/s/mM (default 4.5).
    baseline : int, optional
        Pre-contrast frames (signal input).
    hct, aif_delay, aif_blood
        See :func:`arterial_input`.
    mask : array_like of bool, optional
    method : str
        ``lsq`` (default) or ``linear``.
    bounds : dict, optional
        ``{name: (lower, upper)}``.
    progress : bool
    **method_options
        E.g. ``compute_se=True``.

    Returns
    -------
    qmri.maps.ParameterMaps
        Provenance includes the AIF used (``aif_times_s``, ``aif_plasma_mm``: on its own grid) and
        the conversion inputs.

    Raises
    ------
    QMRIInputError
        Any inconsistent input (one line).
    """
    data = np.asarray(series)
    t = check_times(times, data.shape[-1])
    if input == "signal" and t10 is not None:
        t10 = check_t10(t10, None if mask is None else np.asarray(mask, bool))
    conc = to_concentration(data, input=input, t10=t10, fa=fa, tr=tr, r1=r1, baseline=baseline)
    ta, cp = arterial_input(aif, t, hct=hct, aif_delay=aif_delay, aif_blood=aif_blood, concentration=lambda m: conc[m])
    dce = DCE(t, cp, model, fit_delay=fit_delay, bounds=bounds, aif_times=ta)
    facts = input_provenance(input, aif, hct=hct, aif_delay=aif_delay, aif_blood=aif_blood, r1=r1, fa=fa, tr=tr,
                             baseline=baseline, t10=t10)
    return dce.fit(conc, mask=mask, request=dce.request(method, inputs=facts, **method_options), progress=progress)


def input_provenance(input, aif, *, hct, aif_delay, aif_blood, r1, fa, tr, baseline, t10) -> dict:
    """The inputs that changed a DCE fit's numbers, for the sidecars: the AIF (a population curve's
    name, source, parameters and start; a file's path and SHA-256; an arterial mask), the
    haematocrit where it was used, and for signal input the conversion (T10 value or map, r1, flip
    angle, TR, baseline frames). ``aif`` and ``t10`` as given to :func:`fit_dce` or on the command
    line (``roi:MASK``, a T1 map's path)."""
    prov = {"input": input}
    population = {"parker": A.PARKER_PARAMS, "georgiou": A.GEORGIOU_PARAMS, "preclinical": A.MCGRATH_B_PARAMS}
    if isinstance(aif, str) and aif in A.POPULATION_AIFS:
        prov.update({"aif": aif, "aif_source": (A.POPULATION_AIFS[aif].__doc__ or "").strip().splitlines()[0],
                     "aif_parameters": population.get(aif), "aif_delay_s": aif_delay})
        if aif != "preclinical":
            prov["hct"] = hct
    elif isinstance(aif, str) and aif.startswith("roi:"):
        prov.update({"aif": "arterial mask (mean whole-blood concentration)", "hct": hct})
        prov.update(file_provenance("aif_mask", aif[4:]))
    elif isinstance(aif, (str, Path)):
        prov.update(file_provenance("aif", aif))
        prov["aif_whole_blood"] = bool(aif_blood)
        if aif_blood:
            prov["hct"] = hct
    elif isinstance(aif, np.ndarray) and aif.dtype == bool:
        prov.update({"aif": "arterial mask (mean whole-blood concentration)", "aif_mask_voxels": int(aif.sum()),
                     "hct": hct})
    else:
        prov.update({"aif": "curve given as (times, concentrations)", "aif_whole_blood": bool(aif_blood)})
        if aif_blood:
            prov["hct"] = hct
    if input == "signal":
        if isinstance(t10, (str, Path)):
            prov.update(file_provenance("t10_map", t10))
        elif np.ndim(t10) == 0:
            prov["t10_s"] = float(t10)
        else:
            prov["t10_map_median_s"] = float(np.nanmedian(t10))
        prov.update({"relaxivity_per_s_per_mmol": r1, "fa_deg": fa, "tr_s": tr, "baseline_frames": baseline})
    return prov


# ---------------------------------------------------------------------------------------------
# The pipeline on files
# ---------------------------------------------------------------------------------------------
def frame_times(inputs: dict, n_frames: int | None) -> np.ndarray | None:
    """Frame times (s) from ``--time FILE`` or ``--tr-frame SECONDS`` (``n_frames`` frames; with a file,
    None accepts its length); None when neither is given.

    Raises
    ------
    QMRIInputError
        Unreadable file, wrong count, times not increasing, interval not positive.
    """
    from qmri import io

    if inputs.get("time") is not None:
        t = io.read_frame_times(inputs["time"])
        return check_times(t, t.size if n_frames is None else n_frames, where=str(inputs["time"]))
    dt = inputs.get("tr_frame")
    if dt is None:
        return None
    if not (np.isfinite(dt) and dt > 0):
        raise QMRIInputError(f"--tr-frame must be a positive number of seconds, got {dt}")
    return check_times(np.arange(n_frames) * dt, n_frames, where="--tr-frame")


_FRAMES = Option("frames", "number of frames (with --tr-frame)", int, metavar="N")


def protocol_inputs(model_cls) -> tuple[Option, ...]:
    """Frame times (``--time``, or ``--tr-frame`` with ``--frames``) and the AIF options."""
    keep = ("time", "tr_frame", "aif", "aif_delay", "aif_blood", "hct")
    return tuple(o for o in _INPUTS if o.name in keep) + (_FRAMES,)


def protocol_model(model_cls, inputs: dict, model_options: dict):
    """The model for frame times and an AIF alone, without a series (``qmri train``).

    Parameters
    ----------
    model_cls : type
        :class:`qmri.models.dce.DCE`.
    inputs : dict
        ``time`` (file of frame times, s) or ``tr_frame`` (s) with ``frames``; ``aif`` (population
        name or CSV file), ``aif_delay`` (s), ``aif_blood``, ``hct`` (as :func:`arterial_input`).
    model_options : dict
        The model's keywords (``model``, ``fit_delay``, ``bounds``).

    Returns
    -------
    qmri.models.dce.DCE
        Bound to the frame times and the AIF on its own grid.

    Raises
    ------
    QMRIInputError
        ``--tr-frame`` without ``--frames``, an arterial-mask AIF (it needs the series), bad inputs.
    """
    if inputs.get("time") is None and (inputs.get("tr_frame") is None or not inputs.get("frames")):
        raise QMRIInputError("give the frame times: --time FILE, or --tr-frame SECONDS with --frames N")
    if str(inputs["aif"]).startswith("roi:"):
        raise QMRIInputError("--aif roi: needs the series; give a population AIF or an AIF file")
    t = frame_times(inputs, inputs.get("frames"))
    ta, cp = arterial_input(inputs["aif"], t, hct=inputs["hct"], aif_delay=inputs["aif_delay"],
                            aif_blood=inputs["aif_blood"])
    return model_cls(t, cp, aif_times=ta, **model_options)


def acquisition_from_sidecar(series: Path, inputs: dict, n_frames: int) -> np.ndarray:
    """Frame times (s) from ``--time`` / ``--tr-frame`` or the sidecar, and, for signal input, the flip
    angle and TR: those given, else the sidecar's (set in ``inputs``). Where both are known they must
    agree (:func:`qmri.bids.reconcile`; frame times compared relative to the first frame).

    Raises
    ------
    QMRIInputError
        No frame timing anywhere, a bad ``--tr-frame``, a value contradicting the sidecar.
    """
    side = companions(series, use=not inputs.get("ignore_sidecar")).sidecar()
    t = frame_times(inputs, n_frames)
    found, key = side.frame_times(n_frames)
    if found is not None:
        flag = "--time" if inputs.get("time") is not None else "--tr-frame"
        reconcile(None if t is None else t - t[0], found - found[0], flag=flag, where=side.where(key),
                  what="frame times relative to the first (s)")
        if t is None:
            t = check_times(found, n_frames, where=side.where(key))
    if t is None:
        raise QMRIInputError(f"{series}: frame times needed: give --time FILE or --tr-frame SECONDS (no "
                             "FrameTimesStart, VolumeTiming, AcquisitionTime list or frame RepetitionTime in a "
                             "JSON sidecar beside the series)")
    if inputs["input"] == "signal":
        inputs["fa"] = reconcile(inputs.get("fa"), side.flip_angle(), flag="--fa", where=side.where("FlipAngle"),
                                 what="flip angle (deg)")
        if np.ndim(inputs["fa"]) > 0:
            raise QMRIInputError(f"{side.where('FlipAngle')}: one flip angle expected for a DCE series")
        tr, tr_key = side.excitation_tr(frame_interval_possible=True)
        inputs["tr"] = reconcile(inputs.get("tr"), tr, flag="--tr", where=side.where(tr_key), what="TR (s)")
    return t


def prepare(model_cls, series: Path, mask: Path | None, inputs: dict, model_options: dict,
            ahead=None) -> FitJob:
    """Read the series header, frame times, T1 and AIF, and build the model (the concentration is
    computed when the data are loaded, except for an arterial-mask AIF, which needs it now).

    Frame times, flip angle and TR not given come from the sidecar (:func:`acquisition_from_sidecar`).

    Raises
    ------
    QMRIInputError
        As :func:`fit_dce`, naming the files; no frame timing; a value contradicting the sidecar.
    """
    from qmri import io

    img = load_series(series, "DCE series")
    n_frames = img.shape[3]
    inputs = dict(inputs)
    t = acquisition_from_sidecar(series, inputs, n_frames)
    mask_arr = load_mask(mask, img, series)
    sig = inputs["input"] == "signal"
    t10 = None
    notes = []
    if sig:
        check_conversion(n_frames, fa=inputs.get("fa"), tr=inputs.get("tr"), baseline=inputs.get("baseline"),
                         has_t10=inputs.get("t10") is not None or inputs.get("t1") is not None)
        if inputs.get("t10") is not None:
            t10 = check_t10(inputs["t10"])
        else:
            t1img = io.load_nifti(inputs["t1"], ndim=3, what="T1 map")
            if t1img.shape[:3] != img.shape[:3]:
                raise QMRIInputError(f"{inputs['t1']}: T1 map shape {t1img.shape[:3]} differs from the DCE series "
                                     f"{img.shape[:3]}")
            t10 = check_t10(io.image_data(t1img), mask_arr, where=str(inputs["t1"]))
            notes.append(unusable_note(inputs["t1"], "T1", t10))
    cache = {}

    def load():
        if "data" not in cache:
            cache["data"] = io.series_data(img, ahead)
        return cache["data"]

    conversion = dict(input=inputs["input"], fa=inputs.get("fa"), tr=inputs.get("tr"), r1=inputs["r1"],
                      baseline=inputs.get("baseline"))
    t10_flat = None if t10 is None or np.ndim(t10) == 0 else np.asarray(t10).ravel()

    def transform(Y, index):
        """Signal → concentration for a chunk of voxels (C-order flat indices ``index``)."""
        return to_concentration(Y, t10=t10 if t10_flat is None else t10_flat[index], **conversion)

    def concentration(voxels):
        return to_concentration(np.asarray(load()[voxels], dtype=np.float64),
                                t10=t10 if t10_flat is None else t10[voxels], **conversion)

    spec = inputs["aif"]
    aif = io.load_mask(Path(spec[4:]), img, reference_path=series) if spec.startswith("roi:") else spec
    ta, cp = arterial_input(aif, t, hct=inputs["hct"], aif_delay=inputs["aif_delay"], aif_blood=inputs["aif_blood"],
                            concentration=concentration, where=f"--aif {spec}")
    model = model_cls(t, cp, aif_times=ta, **model_options)
    provenance = input_provenance(inputs["input"], spec, hct=inputs["hct"], aif_delay=inputs["aif_delay"],
                                  aif_blood=inputs["aif_blood"], r1=inputs["r1"], fa=inputs.get("fa"),
                                  tr=inputs.get("tr"), baseline=inputs.get("baseline"),
                                  t10=inputs.get("t1") or inputs.get("t10"))
    sources = [series] + [p for p in (inputs.get("time"), mask, inputs.get("t1")) if p is not None]
    files = {"aif.csv": lambda maps: "time_s,cp_mM\n" + "".join(f"{a:.8g},{b:.8g}\n" for a, b in zip(ta, cp))}
    chunk_transform = transform if sig else None
    plots = {"curves.png": lambda maps, data, path: plot_curves(model, data, maps, path, transform=chunk_transform)}
    n_base = inputs.get("baseline") if sig else None

    def reference(data):
        """The mean pre-contrast image of a signal series, the mean concentration otherwise."""
        frames = slice(0, n_base) if n_base else slice(None)
        with np.errstate(invalid="ignore", over="ignore"):
            image = np.asarray(data[..., frames], dtype=np.float64).mean(axis=-1)
        return image, (f"mean baseline image (first {n_base} frames)" if n_base else "mean concentration image")

    return FitJob(model=model, load=load, transform=chunk_transform, mask=mask_arr, image=img, sources=sources,
                  provenance=provenance, files=files, plots=plots, notes=notes, reference=reference)


def measured(values, provenance: dict, index) -> np.ndarray:
    """The voxel's concentration (mM): the series itself for concentration input, else converted with
    the recorded T10 (value, or the map at ``index``), relaxivity, flip angle, TR and baseline.

    Raises
    ------
    QMRIInputError
        The T1 map the fit used is no longer where the sidecars say.
    """
    from qmri import io

    values = np.asarray(values, dtype=np.float64)
    if provenance.get("input") != "signal":
        return values
    t10 = provenance.get("t10_s")
    if t10 is None:
        path = provenance.get("t10_map")
        if not path or not Path(path).is_file():
            raise QMRIInputError(f"the fit converted signal with a T1 map, {path}, that is not found")
        t10 = float(io.image_data(io.load_nifti(path, what="T1 map"))[tuple(index)])
    return to_concentration(values[None, :], t10=t10, fa=provenance["fa_deg"], tr=provenance["tr_s"],
                            r1=provenance["relaxivity_per_s_per_mmol"], baseline=provenance["baseline_frames"])[0]


#: Fitted voxels sampled (evenly) to judge enhancement and bolus timing in :func:`advice`.
ADVICE_VOXELS = 20_000
#: A voxel "barely enhances" when its mean concentration after the baseline exceeds the baseline's
#: mean by less than this many times the baseline's standard deviation (its noise).
MIN_ENHANCEMENT_SD = 2.0
#: Share of the fitted voxels that barely enhance above which they are named as a likely cause.
MAX_NON_ENHANCING = 0.3


def _arrival(curves, t, fraction: float = 0.2) -> float:
    """Time (s) at which the median of ``curves`` (n, T) first reaches ``fraction`` of its peak."""
    c = np.nanmedian(curves, axis=0)
    c = c - c[0]
    peak = np.nanmax(c) if c.size else np.nan
    if not np.isfinite(peak) or peak <= 0:
        return float("nan")
    return float(t[int(np.argmax(c >= fraction * peak))])


def advice(plan, maps, data) -> tuple[list[str], list[str]]:
    """What the data say about a DCE fit (:attr:`qmri.workflows.job.Workflow.advice`): ``ve``
    undetermined where Ktrans is 0 (a note); as causes of the fit's warnings, voxels that barely
    enhance (``--mask``), and AIF timing only when the data show it: the fitted delay at its bound,
    or the bolus arriving in the fitted curves at another time than in the data (``--aif-delay``,
    ``--fit-delay``). Judged on up to :data:`ADVICE_VOXELS` fitted voxels."""
    from qmri.maps import MAX_AT_BOUND, MIN_MEDIAN_R2

    job, model = plan.job, plan.job.model
    notes, causes = [], []
    converged = maps.mask & (maps.status == 0)
    if "ve" in maps.params and "Ktrans" in maps.params:
        n_ve = int(np.sum(converged & np.isnan(maps["ve"]) & np.isfinite(maps["Ktrans"])))
        if n_ve:
            notes.append(f"ve (and kep) not determined in {n_ve} of the {int(maps.mask.sum())} fitted voxels: Ktrans "
                         "is 0 there (no transfer into the tissue seen), so the curve does not depend on ve; those "
                         "voxels have ve = NaN")
    report = maps.report()
    delay = report["parameters"].get("delay", {})
    if max(delay.get("at_lower_bound", 0.0), delay.get("at_upper_bound", 0.0)) > MAX_AT_BOUND:
        causes.append("AIF timing: the fitted delay (--fit-delay) is at its bound (the bolus is more than 10 s "
                      "off): set the injection time with --aif-delay (population AIF, s) or check the frame times "
                      "(--time, --tr-frame)")
    flat = np.flatnonzero(converged.ravel())
    if flat.size == 0 or report["median_r2"] >= MIN_MEDIAN_R2 and not causes:
        return notes, causes
    pick = flat[np.unique(np.linspace(0, flat.size - 1, min(flat.size, ADVICE_VOXELS)).round().astype(int))]
    curves = np.asarray(np.asarray(data)[np.unravel_index(pick, maps.mask.shape)], dtype=np.float64)
    t = model.t
    n_base = plan.job.provenance.get("baseline_frames")
    if not n_base:  # concentration input: the frames before the AIF reaches a tenth of its peak
        cp = np.interp(t, model.aif_times, model.aif)
        n_base = int(np.argmax(cp >= 0.1 * np.max(cp)))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if job.transform is not None:
            curves = job.transform(curves, pick)
        if n_base >= 3:
            base = curves[:, :n_base]
            enhancement = curves[:, n_base:].mean(axis=1) - base.mean(axis=1)
            weak = ~(enhancement >= MIN_ENHANCEMENT_SD * base.std(axis=1, ddof=1))
        else:
            weak = np.zeros(len(pick), dtype=bool)
    share = float(np.mean(weak))
    if share > MAX_NON_ENHANCING:
        causes.append(f"{100 * share:.1f}% of the fitted voxels barely enhance (mean concentration after the "
                      f"{n_base} baseline frames less than {MIN_ENHANCEMENT_SD:g} standard deviations of the baseline "
                      "above it): no model describes their noise; restrict --mask to the enhancing tissue")
    if not model.fit_delay and (~weak).sum() >= 10:
        strong = ~weak
        params = {k: maps[k].ravel()[pick[strong]] for k in model.spec.names}
        fitted = model.concentration(params)
        t_data, t_fit = _arrival(curves[strong], t), _arrival(fitted, t)
        step = float(np.median(np.diff(t)))
        if np.isfinite(t_data) and np.isfinite(t_fit) and abs(t_data - t_fit) > max(2 * step, 3.0):
            causes.append(f"AIF timing: the bolus reaches the enhancing voxels at {t_data:g} s but the fitted curves "
                          f"at {t_fit:g} s: set the injection time with --aif-delay (population AIF, s) or fit the "
                          "arterial delay with --fit-delay")
    return notes, causes


# maps: "dcemap" by analogy with BEP016's dwimap (no BIDS proposal names DCE maps yet: provisional)
WORKFLOW = Workflow("dce", "dce", "4-D DCE series (signal, or concentration in mM with --input concentration)",
                    lambda cls: _INPUTS, prepare, bids_suffix="dcemap", bids_datatype="perf", measured=measured,
                    protocol_inputs=protocol_inputs, protocol_model=protocol_model,
                    mask_reference="the mean baseline image (--baseline frames; the mean concentration image for "
                                   "--input concentration)",
                    advice=advice,
                    hint="check the frame times (--time, --tr-frame, in s), the AIF (--aif, --aif-delay) and, for "
                         "signal input, --t1/--t10, --fa, --tr and --baseline")

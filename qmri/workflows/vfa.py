"""Variable-flip-angle series from files: a 4-D NIfTI (one volume per flip angle), flip angles, TR and
an optional B1 map, for T1 mapping.

``--fa`` and ``--tr`` default to the series' JSON sidecar (``FlipAngle``, one per volume;
``RepetitionTimeExcitation`` or ``RepetitionTime``: :mod:`qmri.bids`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qmri.bids import companions, ignore_sidecar_option, reconcile
from qmri.errors import QMRIInputError
from qmri.options import Option, float_list
from qmri.workflows.job import FitJob, Workflow, file_provenance, load_mask, load_series, unusable_note

_INPUTS = (
    Option("fa", "flip angles in degrees, comma separated, in volume order (e.g. 2,5,10,15; default: FlipAngle "
           "of X.json beside X.nii.gz)", float_list),
    Option("tr", "repetition time in s (e.g. 0.005), or one value per flip angle, comma separated (default: "
           "RepetitionTimeExcitation or RepetitionTime of X.json)", float_list),
    Option("b1", "3-D relative B1 map on the same grid (actual/nominal flip angle)", Path),
    Option("b1_units", "B1 map values: fraction (1 = nominal, default) or percent (100 = nominal)", str,
           "fraction", choices=("fraction", "percent")),
    ignore_sidecar_option(),
)


def acquisition_from_sidecar(series: Path, inputs: dict):
    """Flip angles (deg) and TR (s): those given (``inputs["fa"]``, ``inputs["tr"]``), else the
    sidecar's; both must agree where both are known (:func:`qmri.bids.reconcile`).

    Raises
    ------
    QMRIInputError
        Neither gives them (naming what is missing), or they contradict each other.
    """
    side = companions(series, use=not inputs.get("ignore_sidecar")).sidecar()
    fa = reconcile(inputs.get("fa"), side.flip_angle(), flag="--fa", where=side.where("FlipAngle"),
                   what="flip angles (deg)")
    tr_found, key = side.excitation_tr()
    tr = reconcile(inputs.get("tr"), tr_found, flag="--tr", where=side.where(key), what="TR (s)")
    keys = {"--fa": "FlipAngle", "--tr": "RepetitionTimeExcitation or RepetitionTime"}
    missing = {flag: keys[flag] for flag, v in (("--fa", fa), ("--tr", tr)) if v is None}
    if missing:
        raise QMRIInputError(f"{series}: {' and '.join(missing)} needed (no {' and no '.join(missing.values())} in "
                             "a JSON sidecar beside the series)")
    return fa, tr


def prepare(model_cls, series: Path, mask: Path | None, inputs: dict, model_options: dict,
            ahead=None) -> FitJob:
    """Check flip angles and TR against the series, read the B1 map, build the model.

    Flip angles and TR not given come from the sidecar (:func:`acquisition_from_sidecar`).

    Raises
    ------
    QMRIInputError
        Flip angles or TR neither given nor in the sidecar, contradicting the sidecar, of the wrong
        count or values; missing or unreadable files, B1 map on another grid, empty or apparently
        in percent while given as a fraction.
    """
    from qmri import io

    fa, tr = acquisition_from_sidecar(series, inputs)
    fa = np.atleast_1d(np.asarray(fa, dtype=np.float64))
    tr = np.atleast_1d(np.asarray(tr, dtype=np.float64))
    if np.any(fa <= 0):
        raise QMRIInputError("--fa: flip angles must be positive (degrees)")
    if np.any(tr <= 0):
        raise QMRIInputError("--tr: repetition time must be positive (seconds)")
    img = load_series(series, "VFA series")
    if fa.size != img.shape[3]:
        raise QMRIInputError(f"--fa gives {fa.size} flip angles but {series} has {img.shape[3]} volumes")
    if tr.size not in (1, fa.size):
        raise QMRIInputError(f"--tr: give one TR or one per flip angle ({fa.size}), got {tr.size}")
    mask_arr = load_mask(mask, img, series)
    b1 = None
    notes = []
    b1_path = inputs.get("b1")
    if b1_path is not None:
        b1 = io.load_on_grid(b1_path, img, what="B1 map", reference_path=series).astype(np.float64)
        if inputs["b1_units"] == "percent":
            b1 = b1 / 100.0
        inside = b1[mask_arr] if mask_arr is not None else b1
        inside = inside[np.isfinite(inside) & (inside > 0)]
        where = " inside the mask" if mask_arr is not None else ""
        if inside.size == 0:
            raise QMRIInputError(f"{b1_path}: no positive finite B1 values{where}")
        if inputs["b1_units"] == "fraction" and np.median(inside) > 10:
            raise QMRIInputError(f"{b1_path}: median B1 {np.median(inside):g} looks like percent; "
                                 "use --b1-units percent")
        notes.append(unusable_note(b1_path, "B1", b1))
    model = model_cls(fa, tr, b1=b1, **model_options)
    sources = [series] + ([b1_path] if b1_path else []) + ([mask] if mask else [])
    provenance = {"b1_units": inputs["b1_units"], **file_provenance("b1_map", b1_path)} if b1_path else {}
    return FitJob(model=model, load=lambda: io.series_data(img, ahead), mask=mask_arr, image=img, sources=sources,
                  provenance=provenance, notes=notes, reference=mean_image)


def mean_image(data) -> tuple[np.ndarray, str]:
    """The mean over the flip angles (the reference of ``--mask auto``, :mod:`qmri.masking`)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(data, dtype=np.float64).mean(axis=-1), "mean image over the flip angles"


# maps without a ratified qMRI suffix (T1map, M0map are ratified): "vfamap", by analogy with BEP016's dwimap
WORKFLOW = Workflow("vfa", "vfa", "4-D NIfTI, one volume per flip angle", lambda cls: _INPUTS, prepare,
                    bids_suffix="vfamap", bids_datatype="anat",
                    mask_reference="the mean image over the flip angles",
                    hint="flip angles (--fa, degrees, in volume order), TR (--tr, s) or the B1 map (--b1-units)")

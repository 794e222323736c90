"""Diffusion series from files: a 4-D NIfTI with an FSL ``.bval`` (and ``.bvec``), for any diffusion model.

``X.bval`` and ``X.bvec`` beside ``X.nii.gz`` (as dcm2niix writes them, or inherited in a BIDS
dataset: :func:`qmri.bids.companions`) are used when ``--bval`` / ``--bvec`` are not given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qmri.bids import ignore_sidecar_option
from qmri.errors import QMRIInputError
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
        Unreadable files, b-value count not ``n_volumes``, b-vectors not unit length, no volume left.
    """
    from qmri import io
    from qmri.models.diffusion.acquisition import B0_THRESHOLD, check_bvecs

    bvals = io.read_bvals(bval_path)
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


def prepare(model_cls, series: Path, mask: Path | None, inputs: dict, model_options: dict) -> FitJob:
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
    from qmri.bids import companions, take_file
    from qmri.models.diffusion.acquisition import fsl_bvec_frame

    img = load_series(series, "DWI series")
    beside = companions(series, use=not inputs.get("ignore_sidecar"))
    bval_path = take_file(inputs.get("bval"), beside.bval, flag="--bval", what="b-values")
    if bval_path is None:
        from qmri.bids import split_image_name

        raise QMRIInputError(f"{series}: no b-values: give --bval FILE.bval (or put "
                             f"{split_image_name(series)[0]}.bval beside the series)")
    bvec_path = take_file(inputs.get("bvec"), beside.bvec, flag="--bvec", what="b-vectors") \
        if model_cls.uses_bvecs else None
    b, g, keep = read_acquisition(bval_path, bvec_path, inputs, model_options, series=series,
                                  n_volumes=img.shape[3])
    mask_arr = load_mask(mask, img, series)
    model = model_cls.from_acquisition(b, g, **model_options)
    model.bvec_frame = fsl_bvec_frame(img.affine)
    provenance = {k: inputs[k] for k in ("bmin", "bmax") if inputs.get(k) is not None}
    if not keep.all():
        provenance["volumes"] = np.flatnonzero(keep).tolist()  # of the series, fitted
    provenance.update(file_provenance("bval_file", bval_path))
    if bvec_path is not None:
        provenance.update(file_provenance("bvec_file", bvec_path))

    def load():
        data = io.series_data(img)
        return data if keep.all() else data[..., keep]

    sources = [series, bval_path] + ([bvec_path] if bvec_path else []) + ([mask] if mask else [])
    return FitJob(model=model, load=load, mask=mask_arr, image=img, sources=sources, provenance=provenance)


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


WORKFLOW = Workflow("diffusion", "dwi", "4-D diffusion-weighted NIfTI series", inputs, prepare, measured=measured,
                    protocol_inputs=protocol_inputs, protocol_model=protocol_model,
                    hint="b-values not in s/mm2 (e.g. 0-1 in ms/um2 or 0-1e9 in s/m2) or not in volume order; "
                         "check the --bval file")

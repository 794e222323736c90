"""Automatic masks (``--mask auto``) and the check for fitted voxels without signal.

Both work on one 3-D reference image of the series, which its workflow chooses
(:attr:`qmri.workflows.job.Workflow.reference`): the mean b≈0 image of a diffusion series, the
mean pre-contrast (baseline) image of a DCE signal series, the mean image otherwise. The mask is
made by a well-kept library's method, named with its parameters in the sidecars:

``median_otsu`` (diffusion)
    dipy's :func:`dipy.segment.mask.median_otsu` (median filter, then Otsu's threshold;
    Garyfallidis et al., Front Neuroinform 2014;8:8) with a median filter of radius 2 voxels, one
    pass (:data:`MEDIAN_OTSU`): dipy's defaults (radius 4, 4 passes) are tuned for whole-brain
    series of 2 mm voxels and erode the few thick slices of a body series (a ball of radius 12
    voxels lost 83 % of its voxels, radius 2 with one pass 1 %).
``otsu`` (DCE, VFA)
    scikit-image's :func:`skimage.filters.threshold_otsu` on the reference image (Otsu, IEEE
    Trans Syst Man Cybern 1979;9:62): voxels above the threshold.

Otsu's threshold always splits an image in two, tissue or not: both are applied only where the
image has a background (Otsu's lower class at the noise level, :func:`background_threshold`);
an image of tissue only (a cropped field of view) keeps every voxel with signal.
"""

from __future__ import annotations

import numpy as np

from qmri.errors import QMRIInputError

#: The value of ``mask`` (``--mask auto``) that asks for an automatic mask.
AUTO = "auto"
#: Parameters of dipy's median_otsu as used (see the module's description).
MEDIAN_OTSU = {"median_radius": 2, "numpass": 1}
#: A warning when more than this fraction of the fitted voxels have no signal.
MAX_NO_SIGNAL = 0.1
#: Otsu's lower class counts as background (no signal) only when its mean is below this fraction of the
#: upper class's mean: magnitude background is at the noise level, below a fifth of the tissue signal
#: in any series of SNR > 5; two tissue classes (e.g. white matter and CSF) are not that far apart.
BACKGROUND_RATIO = 0.2


def describe(method: str) -> str:
    """What :func:`auto_mask` does with ``method``, in a few words (``--help``)."""
    return {"median_otsu": "dipy's median_otsu (median filter of radius 2, one pass, then Otsu's threshold)",
            "otsu": "scikit-image's Otsu threshold"}[method]


def is_auto(mask) -> bool:
    """Whether ``mask`` asks for an automatic mask (the string ``"auto"``)."""
    return isinstance(mask, str) and mask == AUTO


def _scaled(image) -> tuple[np.ndarray, float]:
    """``image`` with non-finite values as 0, divided by its second-largest positive value and
    clipped at 1 (Otsu's threshold does not depend on the scale; one extreme voxel must not overflow
    its histogram's moments), and that divisor."""
    image = np.asarray(image, dtype=np.float64)
    image = np.where(np.isfinite(image), image, 0.0)
    positive = image[image > 0]
    if positive.size == 0:
        return image, 1.0
    top = float(np.partition(positive, -2)[-2] if positive.size > 1 else positive[0])
    return np.clip(image / top, None, 1.0), top


def background_threshold(reference) -> float | None:
    """Otsu's threshold of the positive finite values of ``reference`` when its lower class is
    background (its mean below :data:`BACKGROUND_RATIO` of the upper class's mean), else None: an
    image without background (all tissue, e.g. a cropped field of view) is not split."""
    ref = np.asarray(reference, dtype=np.float64)
    usable = ref[np.isfinite(ref) & (ref > 0)]
    if usable.size < 2:
        return None
    scaled, _ = _scaled(usable)
    if np.ptp(scaled) == 0:
        return None
    from skimage.filters import threshold_otsu

    t = float(threshold_otsu(scaled))
    low, high = scaled <= t, scaled > t
    if not low.any() or not high.any() or scaled[low].mean() >= BACKGROUND_RATIO * scaled[high].mean():
        return None
    return float(usable[low].max())


def auto_mask(reference, method: str, what: str) -> tuple[np.ndarray, dict]:
    """An automatic mask of a 3-D reference image.

    An image without background (:func:`background_threshold` is None) is not split: the mask is
    every voxel with a positive finite value (recorded as ``mask_background: false``).

    Parameters
    ----------
    reference : ndarray (x, y, z)
        The reference image (non-finite values count as 0).
    method : {"median_otsu", "otsu"}
        See the module's description.
    what : str
        What the reference image is (recorded in the sidecars).

    Returns
    -------
    mask : ndarray of bool (x, y, z)
    provenance : dict
        ``mask: "auto"``, ``mask_method`` (library function), ``mask_parameters``, ``mask_reference``
        (the reference image in words), ``mask_background`` (whether a background was found) and
        ``mask_voxels``.

    Raises
    ------
    QMRIInputError
        No voxel left (e.g. an image of zeros).
    """
    image, top = _scaled(reference)
    background = background_threshold(image) is not None
    if method == "median_otsu":
        name, params = "dipy.segment.mask.median_otsu", dict(MEDIAN_OTSU)
        if background:
            from dipy.segment.mask import median_otsu

            _, mask = median_otsu(image, **MEDIAN_OTSU)
    elif method == "otsu":
        name, params = "skimage.filters.threshold_otsu", {}
        if background:
            from skimage.filters import threshold_otsu

            t = float(threshold_otsu(image.ravel()))
            mask = image > t
            params["threshold"] = t * top  # in the reference image's unit
    else:
        raise ValueError(f"unknown automatic mask method {method!r}")
    if not background:
        mask = image > 0
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise QMRIInputError(f"--mask auto: no voxel of the {what} has signal; give --mask MASK.nii.gz")
    return mask, {"mask": AUTO, "mask_method": name, "mask_parameters": params, "mask_reference": what,
                  "mask_background": background, "mask_voxels": int(mask.sum())}


def no_signal(reference, fitted) -> np.ndarray:
    """Which fitted voxels have no signal: a reference value that is not finite or not positive, or
    background (below :func:`background_threshold`).

    Parameters
    ----------
    reference : ndarray (x, y, z)
    fitted : ndarray of bool (x, y, z)

    Returns
    -------
    ndarray of bool: over the fitted voxels (in ``reference[fitted]`` order).
    """
    values = np.asarray(reference, dtype=np.float64)[fitted]
    with np.errstate(invalid="ignore"):
        empty = ~(np.isfinite(values) & (values > 0))
        t = background_threshold(reference)
        return empty if t is None else empty | (values <= t)
def no_signal_warning(reference, fitted, what: str, mask_given: bool) -> str | None:
    """The warning when more than :data:`MAX_NO_SIGNAL` of the fitted voxels have no signal
    (:func:`no_signal`), naming the option that helps; None otherwise."""
    fitted = np.asarray(fitted, dtype=bool)
    n = int(fitted.sum())
    if n == 0:
        return None
    k = int(no_signal(reference, fitted).sum())
    if k <= MAX_NO_SIGNAL * n:
        return None
    fix = "check the mask, or use --mask auto" if mask_given else "give --mask MASK.nii.gz, or --mask auto"
    return (f"{k} of the {n} fitted voxels ({100 * k / n:.1f}%) have no signal (zero, not finite or background "
            f"in the {what}): their values are noise; {fix}")

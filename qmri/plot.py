"""Matplotlib figures: montages of parameter maps."""

from __future__ import annotations

import numpy as np


def colour_range(values, mask=None, percentiles=(1.0, 99.0)) -> tuple[float, float]:
    """Display range of a map: the ``percentiles`` of its finite values inside ``mask`` (the whole
    map, every slice, not only the one shown), so that a map which is uniform in the shown slice
    is drawn as uniform, not as stretched noise. A constant map gets a small range around its value.

    Parameters
    ----------
    values : ndarray
    mask : ndarray of bool, optional
        Voxels that count (default every voxel).
    percentiles : (float, float)

    Returns
    -------
    (vmin, vmax) : floats, vmin < vmax; (0, 1) when there is no finite value.
    """
    values = np.asarray(values, dtype=float)
    inside = values[mask] if mask is not None and np.shape(mask) == values.shape else values.ravel()
    inside = inside[np.isfinite(inside)]
    if inside.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(inside, percentiles))
    if hi <= lo:
        pad = 0.05 * abs(lo) if lo != 0 else 0.5
        lo, hi = lo - pad, hi + pad
    return lo, hi


def montage(maps, path, *, names=None, slice_index=None, title=None) -> dict[str, tuple[float, float]]:
    """Write a PNG with one panel per parameter map (middle slice of 3-D maps), atomically.

    Each panel's colour range is :func:`colour_range` of that map over the fitted voxels (the
    ``mask`` of a ``ParameterMaps``), in every slice.

    Parameters
    ----------
    maps : Mapping of str to ndarray
        ``ParameterMaps`` or any dict of 2-D/3-D arrays.
    path : path
        PNG file.
    names : list of str, optional
        Maps to show (default: the parameters of a ``ParameterMaps``, else every key).
    slice_index : int, optional
        z index for 3-D maps (default the middle).
    title : str, optional

    Returns
    -------
    dict of str to (float, float)
        The colour range (vmin, vmax) of each panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qmri import io

    names = list(names or getattr(maps, "params", maps).keys())
    units = getattr(maps, "units", {})
    mask = getattr(maps, "mask", None)
    ranges = {}
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        full = np.asarray(maps[name], dtype=float)
        vmin, vmax = ranges[name] = colour_range(full, mask)
        img = full
        if img.ndim == 3:
            img = img[:, :, img.shape[2] // 2 if slice_index is None else slice_index]
        elif img.ndim == 1:
            img = img[None, :]
        im = ax.imshow(img.T, origin="lower", cmap="viridis", vmin=vmin, vmax=vmax)
        unit = units.get(name, "")
        ax.set_title(f"{name} ({unit})" if unit else name)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return ranges

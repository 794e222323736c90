"""Matplotlib figures: montages of parameter maps."""

from __future__ import annotations

import numpy as np


def montage(maps, path, *, names=None, slice_index=None, title=None):
    """Write a PNG with one panel per parameter map (middle slice of 3-D maps), atomically.

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
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qmri import io

    names = list(names or getattr(maps, "params", maps).keys())
    units = getattr(maps, "units", {})
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        img = np.asarray(maps[name], dtype=float)
        if img.ndim == 3:
            img = img[:, :, img.shape[2] // 2 if slice_index is None else slice_index]
        elif img.ndim == 1:
            img = img[None, :]
        finite = img[np.isfinite(img)]
        vmin, vmax = (np.percentile(finite, [1, 99]) if finite.size else (0, 1))
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

"""The habitat figure of a subject: overlay on a grid of slices and the feature-space scatter."""

from __future__ import annotations

import numpy as np

from qmri import io

#: Most slices in the overlay grid and points in the scatter.
MAX_SLICES = 8
MAX_POINTS = 4000


def habitat_figure(result, path, *, title: str = "") -> None:
    """Write a PNG (atomic): the habitats over the first feature on up to :data:`MAX_SLICES` axial
    slices through the ROI, and the first two features of the labelled voxels coloured by habitat.

    Parameters
    ----------
    result : qmri.habitats.analysis.SubjectResult
    path : path
    title : str
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    x = result.subject
    labels = result.labels
    k = int(labels.max())
    colours = plt.get_cmap("tab10")(np.arange(max(k, 1)) % 10)
    zs = np.flatnonzero(x.usable.any(axis=(0, 1)))
    zs = zs[np.linspace(0, zs.size - 1, min(MAX_SLICES, zs.size)).round().astype(int)]
    background = np.full(x.usable.shape, np.nan)
    background[x.usable] = x.values[:, 0]
    rows = 1 if len(zs) <= 4 else 2
    cols = int(np.ceil(len(zs) / rows))
    fig = plt.figure(figsize=(2.3 * cols + 4.0, 2.4 * rows + 0.6))
    grid = fig.add_gridspec(rows, cols + 2)
    lo, hi = np.percentile(x.values[:, 0], [1, 99])
    for i, z in enumerate(zs):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        ax.imshow(background[:, :, z].T, origin="lower", cmap="gray", vmin=lo, vmax=hi)
        lab = np.where(labels[:, :, z] > 0, labels[:, :, z] - 1, np.nan)
        ax.imshow(lab.T, origin="lower", cmap=ListedColormap(colours), vmin=-0.5, vmax=k - 0.5, alpha=0.55,
                  interpolation="nearest")
        ax.set_title(f"z = {z}", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(grid[:, cols:])
    lab = labels[x.usable]
    idx = np.random.default_rng(0).permutation(lab.size)[:MAX_POINTS]
    j = 1 if x.values.shape[1] > 1 else 0
    for h in range(1, k + 1):
        sel = idx[lab[idx] == h]
        ax.scatter(x.values[sel, 0], x.values[sel, j], s=2, color=colours[h - 1], label=f"habitat {h}")
    ax.set_xlabel(_axis_label(x, 0), fontsize=8)
    ax.set_ylabel(_axis_label(x, j), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, markerscale=4)
    fig.suptitle(title or f"{x.id}: {k} habitats over {x.names[0]}", fontsize=10)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def _axis_label(x, j: int) -> str:
    return f"{x.names[j]} ({x.units[j]})" if x.units[j] else x.names[j]

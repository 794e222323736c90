"""Matplotlib figures: slice grids of parameter maps (``--plot``), one voxel's measured and fitted signal
(``qmri plot-fit``, whose workflow is :func:`qmri.workflows.plot_fit.plot_fit`) and the DCE fits' curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qmri.errors import QMRIInputError


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


#: Colours of the ``status`` map: not fitted, converged, max-iter, failed.
STATUS_COLOURS = ("#ffffff", "#4daf4a", "#ff7f00", "#e41a1c")


def default_slices(mask, n: int = 5) -> list[int]:
    """Up to ``n`` evenly spaced z indices through the slices that hold fitted voxels (all slices
    when ``mask`` is None)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim < 3:
        return [0]
    zs = np.flatnonzero(mask.reshape(-1, mask.shape[2]).any(axis=0)) if mask.any() else np.arange(mask.shape[2])
    if zs.size <= n:
        return [int(z) for z in zs]
    return [int(zs[i]) for i in np.unique(np.linspace(0, zs.size - 1, n).round().astype(int))]


def orientation_labels(affine) -> dict[str, str]:
    """Anatomical direction at each edge of a panel showing a z slice with x to the right and y up
    (``left``, ``right``, ``bottom``, ``top``), from the affine's axis codes (nibabel)."""
    import nibabel as nib

    opposite = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
    codes = nib.aff2axcodes(np.eye(4) if affine is None else affine)
    return {"right": codes[0], "left": opposite[codes[0]], "top": codes[1], "bottom": opposite[codes[1]]}


def montage(maps, path, *, names=None, slices=None, title=None) -> dict[str, tuple[float, float]]:
    """Write a PNG grid of slices, atomically: one row per map, one column per slice.

    Rows: the parameters (of a ``ParameterMaps``: its ``params``), then ``r2`` and ``status`` when
    present; columns: ``slices`` (z indices; default :func:`default_slices` of the fitted voxels).
    Each row has a colour bar labelled with the map's unit and a robust colour range
    (:func:`colour_range` over the fitted voxels of every slice); ``status`` has one colour per
    code. The first column's panels carry the anatomical directions of the edges
    (:func:`orientation_labels`; x to the right, y up, as stored).

    Parameters
    ----------
    maps : Mapping of str to ndarray
        ``ParameterMaps`` or any dict of 2-D/3-D arrays.
    path : path
        PNG file.
    names : list of str, optional
        Rows (default as above; every key of a plain dict).
    slices : list of int, optional
        z indices of 3-D maps.
    title : str, optional

    Returns
    -------
    dict of str to (float, float)
        The colour range (vmin, vmax) of each row (``status``: its code range).

    Raises
    ------
    QMRIInputError
        A slice outside the maps.
    """
    import matplotlib.pyplot as plt

    from qmri import io

    fig, ranges = slice_figure(maps, names=names, slices=slices, title=title)
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return ranges


def slice_figure(maps, *, names=None, slices=None, title=None):
    """The figure of :func:`montage` (``(figure, ranges)``; the caller closes the figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap

    if names is None:
        names = list(getattr(maps, "params", maps).keys())
        names += [q for q in ("r2", "status") if q in maps and q not in names]
    names = list(names)
    units = getattr(maps, "units", {})
    mask = getattr(maps, "mask", None)
    first = np.asarray(maps[names[0]])
    if slices is None:
        slices = default_slices(mask if mask is not None else np.ones(first.shape, bool))
    slices = [int(z) for z in slices]
    depth = first.shape[2] if first.ndim == 3 else 1
    bad = [z for z in slices if not 0 <= z < depth]
    if bad:
        raise QMRIInputError(f"--slices: slice {bad[0]} outside 0..{depth - 1}")
    edges = orientation_labels(getattr(maps, "affine", None))
    ranges = {}
    fig, axes = plt.subplots(len(names), len(slices), figsize=(2.2 * len(slices) + 2.2, 2.2 * len(names) + 0.4),
                             squeeze=False, layout="constrained")
    for r, name in enumerate(names):
        full = np.asarray(maps[name], dtype=float)
        if name == "status":
            cmap, norm = ListedColormap(STATUS_COLOURS), BoundaryNorm(np.arange(-1.5, 3.5), 4)
            vmin, vmax = ranges[name] = (-1.0, 2.0)
            kw = {"cmap": cmap, "norm": norm}
        else:
            vmin, vmax = ranges[name] = colour_range(full, mask)
            kw = {"cmap": "viridis", "vmin": vmin, "vmax": vmax}
        im = None
        for c, z in enumerate(slices):
            ax = axes[r][c]
            img = full[:, :, z] if full.ndim == 3 else (full[None, :] if full.ndim == 1 else full)
            im = ax.imshow(img.T, origin="lower", interpolation="nearest", **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"z = {z}", fontsize=9)
            if c == 0:
                ax.set_ylabel(name, fontsize=10)
                for where, (x, y, ha, va) in {"left": (0.02, 0.5, "left", "center"),
                                              "right": (0.98, 0.5, "right", "center"),
                                              "top": (0.5, 0.98, "center", "top"),
                                              "bottom": (0.5, 0.02, "center", "bottom")}.items():
                    ax.text(x, y, edges[where], transform=ax.transAxes, ha=ha, va=va, fontsize=7, color="white",
                            bbox={"boxstyle": "round,pad=0.1", "fc": "0.2", "ec": "none", "alpha": 0.6})
        bar = fig.colorbar(im, ax=list(axes[r]), shrink=0.9, pad=0.02)
        unit = units.get(name, "")
        bar.set_label(unit if unit else "(no unit)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
        if name != "status":
            bar.formatter.set_powerlimits((-2, 4))
            bar.update_ticks()
        else:
            bar.set_ticks([-1, 0, 1, 2])
            bar.set_ticklabels(["outside", "converged", "max-iter", "failed"], fontsize=7)
    if title:
        fig.suptitle(title)
    return fig, ranges


def parse_voxel(text: str) -> tuple[int, int, int]:
    """``"12,30,4"`` → (12, 30, 4).

    Raises
    ------
    QMRIInputError
        Not three integers.
    """
    try:
        ijk = tuple(int(v) for v in str(text).replace(" ", "").split(","))
    except ValueError:
        ijk = ()
    if len(ijk) != 3:
        raise QMRIInputError(f"--voxel: expected three integers i,j,k, got {text!r}")
    return ijk


def draw_curve(curve, params, maps, ijk, out, series):
    """Write the figure of one voxel's measured and fitted signal (PNG, atomically).

    Parameters
    ----------
    curve : dict
        :meth:`qmri.models.model.Model.curve` of the voxel: ``x``, ``measured``, ``fitted``, axis labels.
    params : dict of str to float
        The voxel's parameters (the first six are shown in the title).
    maps : qmri.maps.ParameterMaps
        The maps read (provenance, R², status).
    ijk : tuple of 3 int
        The voxel.
    out : path
        PNG to write.
    series : path
        The series the voxel's data come from (its name is shown).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qmri import io

    x, order = np.asarray(curve["x"], float), np.argsort(curve["x"], kind="stable")
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    if "points" in curve:  # the single measurements behind averaged ones (e.g. DKI: each direction)
        ax.plot(*curve["points"], ".", ms=3, color="0.7", label=curve.get("points_label", "measured, each"))
    ax.plot(x, curve["measured"], "o", ms=4, label=curve.get("measured_label", "measured"))
    ax.plot(x[order], np.asarray(curve["fitted"])[order], "-", lw=1.5, label=curve.get("fitted_label", "fitted"))
    ax.set_xlabel(curve["xlabel"])
    ax.set_ylabel(curve["ylabel"])
    prov = maps.provenance
    shown = ", ".join(f"{k} {v:.4g}" for k, v in list(params.items())[:6])
    ax.set_title(f"{prov.get('model')} {prov.get('method')}: {Path(series).name}, voxel {ijk}\n{shown}",
                 fontsize=9)
    r2 = maps.quality["r2"][ijk]
    ax.legend(title=f"R2 {r2:.3f}, status {maps.status[ijk]}", fontsize=8, title_fontsize=8)
    fig.tight_layout()
    with io.atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def plot_curves(model, data, maps, path, n: int = 4, transform=None):
    """Measured and fitted concentration of a few fitted voxels (quantiles of the first parameter): the
    ``curves.png`` of a DCE fit.

    ``data`` is the series as fitted, or the raw series with ``transform(Y, index)`` turning the
    chosen voxels' signals (C-order flat indices) into concentration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qmri import io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    first = model.spec.names[0]
    vals = maps[first]
    ok = np.flatnonzero((maps.status.ravel() == 0) & np.isfinite(vals.ravel()))
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.0), squeeze=False)
    if ok.size:
        order = ok[np.argsort(vals.ravel()[ok])]
        picks = order[np.unique(np.linspace(0, order.size - 1, n).round().astype(int))]
        curves = np.asarray(data[np.unravel_index(picks, vals.shape)], dtype=np.float64)
        if transform is not None:
            curves = transform(curves, picks)
        for ax, v, curve in zip(axes[0], picks, curves):
            params = {k: maps[k].ravel()[v] for k in model.spec.names}
            ax.plot(model.t, curve, ".", ms=3, label="data")
            ax.plot(model.t, model.concentration(params), "-", label="fit")
            idx = np.unravel_index(v, vals.shape)
            ax.set_title(f"voxel {tuple(int(i) for i in idx)}\n" + ", ".join(
                f"{k} {params[k]:.3g}" for k in model.spec.names), fontsize=8)
            ax.set_xlabel("time (s)")
            ax.set_ylabel("concentration (mM)")
        axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def __getattr__(name: str):
    # plot_fit, the workflow of ``qmri plot-fit``, lives in qmri.workflows.plot_fit; the old name stays
    if name == "plot_fit":
        from qmri.workflows.plot_fit import plot_fit

        return plot_fit
    raise AttributeError(f"module 'qmri.plot' has no attribute {name!r}")

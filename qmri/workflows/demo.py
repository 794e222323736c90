"""``qmri demo``: build each model's phantom, fit it with every method, report accuracy and speed.

Everything comes from the model declarations: the phantom (:meth:`Model.phantom`) and the model's
demo facet (``Model.demo``, :class:`qmri.models.facets.Demo`): the cases to fit (``demo.cases``), the
parameters to score (``demo.parameters``) and any further column (``demo.extra``, described by
``demo.columns``). Accuracy is NRMSE and relative bias against the phantom's ground truth
(:func:`qmri.simulate.nrmse_bias`), explained under each table: relative to what, and for each bias
of 5 % or more the phantom regions its error comes from. Speed is voxels per second of a warm fit
(Numba compiled or loaded from its cache by a first fit on a corner of the data).
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import numpy as np

from qmri.plot import montage
from qmri.simulate import nrmse_bias, save_phantom


def timed_fit(model, data, mask, method=None):
    """Fit once on a corner of ``data`` (Numba compilation / cache load), then time the real fit.

    A method is run with the options it declares for validation
    (:attr:`qmri.models.methods.Validation.options`; e.g. the network estimator with the networks
    shipped for the phantoms, rather than training on the phantom).

    Returns ``(maps, voxels_per_second)`` for the voxels inside ``mask``.
    """
    options = type(model).method(method).validation.options
    model.fit(data[:2, :2, :1], method=method, **options)
    t = time.perf_counter()
    maps = model.fit(data, mask=mask, method=method, **options)
    return maps, int(mask.sum()) / (time.perf_counter() - t)


def demo_part(model_cls, out_dir, *, force: bool = False) -> str:
    """Fit ``model_cls``'s phantom with every case of its ``demo.cases``
    (:meth:`qmri.models.facets.Demo.cases`); write the phantom, maps and PNGs under ``out_dir``;
    return the table (one row per case).

    Raises
    ------
    OutputExistsError
        Outputs exist and ``force`` is False.
    """
    out_dir = Path(out_dir)
    ph = model_cls.phantom(**model_cls.demo.phantom)
    save_phantom(ph, out_dir / "phantom", force=force)
    keys = model_cls.demo.parameters
    rows, fits = [], []
    for label, model, data, mask, method in model_cls.demo.cases(ph):
        maps, rate = timed_fit(model, data, mask, method)
        fits.append((label, maps, mask))
        shown = [k for k in maps.params if k in ph.truth] or None
        maps.save(out_dir / label, force=force, extra={"maps.png": lambda path, maps=maps, label=label: montage(
            maps, path, names=shown, title=f"{model_cls.__name__} {label}")})
        cells = {"voxels": int(mask.sum()), "vox/s": rate, "conv %": 100 * maps.converged_fraction}
        cells.update(model_cls.demo.extra(model, ph, maps, method, mask))
        for k in keys:
            if k in maps.params:
                e, b = nrmse_bias(maps[k], ph.truth[k], mask)
                cells[f"NRMSE {k}"], cells[f"bias {k}"] = e, f"{100 * b:.1f}%"
            else:
                cells[f"NRMSE {k}"], cells[f"bias {k}"] = "-", "-"
        rows.append((label, cells))
    snr = ph.acquisition.get("snr")
    head = (f"{model_cls.__name__} phantom: {int(ph.mask.sum())} voxels, {len(ph.regions)} regions, "
            f"{ph.data.shape[-1]} measurements, SNR {snr:g} (Rician)")
    notes = [textwrap.fill(n, 112, initial_indent="  ", subsequent_indent="    ")
             for n in _notes(model_cls, ph, fits, snr)]
    return head + "\n" + _table(rows) + "\n" + "\n".join(notes)


#: A bias (fraction of the mean true value) from which the demo says where it comes from.
BIAS_EXPLAINED = 0.05


def _notes(model_cls, ph, fits, snr) -> list[str]:
    """The lines under a demo table: what its columns are relative to, and for every parameter with a
    bias of :data:`BIAS_EXPLAINED` or more, the phantom regions its error comes from (the case with
    the largest bias: the regions with the largest share of the summed error, and their true value)."""
    lines = [f"vox/s: voxels per second of a warm fit; conv %: voxels whose fit converged. NRMSE = RMS error / "
             f"mean |true value| and bias = mean error / mean |true value|, against the phantom's ground truth "
             f"over the fitted voxels of all {len(ph.regions)} regions pooled, at SNR {snr:g}."]
    lines += [f"{col}: {text}" for col, text in model_cls.demo.columns.items()]
    for k in model_cls.demo.parameters:
        scored = [(label, maps, mask, nrmse_bias_of(maps, ph, k, mask))
                  for label, maps, mask in fits if k in maps.params]
        scored = [s for s in scored if np.isfinite(s[3]) and abs(s[3]) >= BIAS_EXPLAINED]
        if not scored:
            continue
        label, maps, mask, bias = max(scored, key=lambda s: abs(s[3]))
        shares = _error_by_region(maps[k], ph, k, mask)
        top = ", ".join(f"{100 * share:.0f}% from '{name}' (true {k} {true:.3g})" for name, share, true in shares[:2])
        lines.append(f"bias {k} {100 * bias:+.1f}% ({label}): of its summed error {top}"
                     + (" (other regions' errors have the other sign)" if shares[0][1] > 1 else ""))
    return lines


def nrmse_bias_of(maps, ph, k, mask) -> float:
    return nrmse_bias(maps[k], ph.truth[k], mask)[1]


def _error_by_region(estimate, ph, k, mask) -> list[tuple[str, float, float]]:
    """``(region name, share of the summed error, mean true value)`` per region, largest share first."""
    err = np.asarray(estimate, dtype=float) - np.asarray(ph.truth[k], dtype=float)
    ok = mask & np.isfinite(err)
    total = err[ok].sum()
    out = []
    for i, region in enumerate(ph.regions):
        sel = ok & (ph.labels == i + 1)
        if sel.any() and total != 0:
            out.append((region.get("name", f"region {i + 1}"), float(err[sel].sum() / total),
                        float(np.mean(np.asarray(ph.truth[k])[sel]))))
    return sorted(out, key=lambda r: -r[1])


def _table(rows) -> str:
    cols = list(rows[0][1]) if rows else []
    cells = [[label] + [_fmt(c[k]) if k in c else "-" for k in cols] for label, c in rows]
    widths = [max(len(x) for x in col) for col in zip(["case"] + cols, *cells)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(["case"] + cols, widths)))]
    for row in cells:
        lines.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3f}"

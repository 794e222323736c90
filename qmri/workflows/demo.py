"""``qmri demo``: build each model's phantom, fit it with every method, report accuracy and speed.

Everything comes from the model declarations: the phantom (:meth:`Model.phantom`), the cases to fit
(:meth:`Model.demo_cases`), the parameters to score (``demo_parameters``) and any further column
(:meth:`Model.demo_extra`). Accuracy is NRMSE and relative bias against the phantom's ground truth
(:func:`qmri.simulate.nrmse_bias`); speed is voxels per second of a warm fit (Numba compiled or
loaded from its cache by a first fit on a corner of the data).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


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
    """Fit ``model_cls``'s phantom with every case of :meth:`demo_cases`; write the phantom, maps and
    PNGs under ``out_dir``; return the table (one row per case).

    Raises
    ------
    OutputExistsError
        Outputs exist and ``force`` is False.
    """
    from qmri.plot import montage
    from qmri.simulate import nrmse_bias, save_phantom

    out_dir = Path(out_dir)
    ph = model_cls.phantom(**model_cls.demo_phantom)
    save_phantom(ph, out_dir / "phantom", force=force)
    keys = model_cls.demo_parameters
    rows = []
    for label, model, data, mask, method in model_cls.demo_cases(ph):
        maps, rate = timed_fit(model, data, mask, method)
        shown = [k for k in maps.params if k in ph.truth] or None
        maps.save(out_dir / label, force=force, extra={"maps.png": lambda path, maps=maps, label=label: montage(
            maps, path, names=shown, title=f"{model_cls.__name__} {label}")})
        cells = {"voxels": int(mask.sum()), "vox/s": rate, "conv %": 100 * maps.converged_fraction}
        cells.update(model_cls.demo_extra(model, ph, maps, method, mask))
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
    return head + "\n" + _table(rows)


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

"""The phantoms of every model, fitted by every method: exact recovery without noise, accuracy with.

Everything comes from the declarations: the models with a phantom (:data:`qmri.models.COMMANDS`,
:meth:`~qmri.models.model.Model.has_phantom`, :meth:`~qmri.models.model.Model.phantom`), what is
fitted on it (the model's ``demo.cases``, :meth:`qmri.models.facets.Demo.cases`: each distinct model
of those cases is fitted with every method of its ``methods`` table), the parameters scored
(``demo.parameters``) and how each method is validated (:class:`qmri.models.methods.Validation`:
its tolerance without noise and its options). A model or method added later is validated without
editing this module.

Per model (a demo case) and method, one case:

* **recovery**: the noise-free phantom (``snr=inf``); every voxel must be fitted (status not failed,
  finite values) and the NRMSE (:func:`qmri.simulate.nrmse_bias`) of every parameter that has a
  ground truth must not exceed the method's ``Validation.recovery``;
* **accuracy** (reported, not judged): NRMSE and relative bias of the ``demo.parameters`` on the
  phantom at its default SNR (seed 0), and the fraction of voxels that converged.
"""

from __future__ import annotations

import numpy as np

from qmri.simulate import nrmse_bias
from qmri.validation.cases import Case, Outcome, validated_fit

SUITE = "phantoms"
TITLE = "Phantoms of every model and method"
RULES = ("each model's phantom (qmri phantom), fitted by every method: without noise, every voxel fitted and the "
         "NRMSE of every parameter with a ground truth within the method's declared tolerance; accuracy (NRMSE, "
         "bias) at the phantom's default SNR reported")

#: Most voxels per parameter kept in the figures' scatter plots.
MAX_POINTS = 2000


def _fit(cls, ph, index: int, method: str):
    """The model of demo case ``index`` on ``ph``, its maps fitted by ``method`` and the mask."""
    _, model, data, mask, _ = cls.demo.cases(ph)[index]
    return model, validated_fit(model, data, method, mask), mask


def recovery(cls, ph, index: int, method: str) -> Outcome:
    """Fit the noise-free phantom ``ph`` (demo case ``index``) with ``method``; judge every parameter
    with a ground truth by the method's declared tolerance."""
    model, maps, mask = _fit(cls, ph, index, method)
    tol = type(model).method(method).validation.recovery
    names = [k for k in ph.truth if k in maps.params]
    errors = {k: nrmse_bias(maps[k], ph.truth[k], mask)[0] for k in names}
    unfitted = mask & ((maps["status"] == 2) | ~np.all([np.isfinite(maps[k]) for k in names], axis=0))
    metrics = {"recovery NRMSE": max(errors.values(), default=float("nan")),
               "recovery tolerance": float("nan") if tol is None else tol}
    bad = []
    if unfitted.any():
        bad.append(f"{int(unfitted.sum())}/{int(mask.sum())} voxels not fitted without noise")
    if tol is not None:
        bad += [f"{k}: NRMSE {e:.3g} without noise > {tol:g}" for k, e in errors.items() if not e <= tol]
    return Outcome(not bad, "; ".join(bad), metrics=metrics)


def accuracy(cls, ph, index: int, method: str) -> Outcome:
    """NRMSE and bias of the ``demo.parameters`` on the noisy phantom ``ph`` (demo case ``index``)
    fitted by ``method``, and the estimates against the truth (at most :data:`MAX_POINTS` voxels)."""
    _, maps, mask = _fit(cls, ph, index, method)
    metrics = {"SNR": float(ph.acquisition["snr"]), "voxels": int(mask.sum()),
               "converged %": 100.0 * float(maps.converged_fraction)}
    values = {}
    keep = np.flatnonzero(mask)
    if keep.size > MAX_POINTS:
        keep = np.sort(np.random.default_rng(0).choice(keep, MAX_POINTS, replace=False))
    for k in cls.demo.parameters:
        if k in maps.params and k in ph.truth:
            e, b = nrmse_bias(maps[k], ph.truth[k], mask)
            metrics[f"NRMSE {k}"], metrics[f"bias {k}"] = e, b
            unit = maps.units.get(k, "")
            values[f"{k} ({unit})" if unit else k] = (maps[k].ravel()[keep], ph.truth[k].ravel()[keep])
    return Outcome(True, values=values, metrics=metrics)


def model_groups(cls, ph) -> list[tuple[int, str, type]]:
    """The distinct models of ``cls.demo.cases(ph)``: ``(index of its first case, label, model class)``;
    the label is empty when the demo labels its cases by method only."""
    seen = {}
    for i, (label, model, _, _, method) in enumerate(cls.demo.cases(ph)):
        if id(model) not in seen:
            seen[id(model)] = (i, "" if label in type(model).methods else label, type(model))
    return list(seen.values())


def cases(models=None) -> list[Case]:
    """One case per model with a phantom, distinct model of its demo cases and method
    (``<command>[-<label>]-<method>``); ``models`` restricts them to some commands.

    The phantoms are built here (the noise-free one, to list the demo cases) and shared by the
    model's cases.
    """
    from qmri.models import COMMANDS

    out = []
    for command, cls in COMMANDS.items():
        if not cls.has_phantom() or (models is not None and command not in models):
            continue
        clean = cls.phantom(snr=np.inf)
        noisy = {}

        def run(cls=cls, clean=clean, noisy=noisy, index=0, method=""):
            if "ph" not in noisy:
                noisy["ph"] = cls.phantom()
            return recovery(cls, clean, index, method).merge(accuracy(cls, noisy["ph"], index, method))

        for index, label, model_cls in model_groups(cls, clean):
            for method in model_cls.methods:
                name = " ".join(x for x in (cls.__name__, label) if x)
                cid = "-".join(x for x in (command, label, method) if x)
                out.append(Case(SUITE, f"{name} {method}", cid,
                                lambda run=run, i=index, m=method: run(index=i, method=m)))
    return out

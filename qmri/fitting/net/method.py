"""The network estimator as a method of any declared model: ``method="dnn"``, ``--method dnn``.

:data:`DNN` knows no model: it reads the model's declaration (``spec``: parameters, torch twin),
acquisition (``acq``), the hooks of :class:`qmri.models.model.Model` (``normalise``, ``complete``)
and its network facet (``model.network``, :class:`qmri.models.network.Network`: ``bounds``,
``channels``, ``protocol``...). Without weights it
trains networks on the voxels being fitted (self-supervised, :mod:`qmri.fitting.net.training`)
once per fit, before the voxel chunks; with ``weights`` it loads networks trained before
(``qmri train``, or the ones shipped with qmri) and refuses them for another protocol. Either way
each chunk is then estimated by the networks (:meth:`qmri.fitting.net.weights.Trained.estimate`).

Importing this module does not import torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qmri.errors import QMRIInputError
from qmri.fitting.methods import INTERVAL_OPTION, Method, Validation, set_interval
from qmri.options import Option, random_seed

#: Most voxels self-supervised training reads (a random subset of larger fits).
MAX_TRAINING_VOXELS = 1_000_000

WEIGHTS = Option("weights", "trained networks: a weights file of 'qmri train', or 'builtin' for those shipped with "
                 "qmri for the phantoms' protocols; refused if trained for another protocol or bounds (default: "
                 "train on the voxels being fitted, self-supervised)", str, None, metavar="FILE|builtin",
                 paths=lambda value, folder: value if value == "builtin" else str((folder / Path(value).expanduser()).resolve()))
ENSEMBLE = Option("ensemble", "networks trained from successive seeds (self-supervised training; default 1); with "
                  "more than 1 the estimate is their mean and <param>_sd maps give their spread", int, None)
EPOCHS = Option("epochs", "most epochs of self-supervised training (early stopping on 10% of the voxels; default "
                "100)", int, None)
SEED = Option("seed", "seed of self-supervised training: initial weights, validation split, batches (default 0)",
              random_seed, None)
#: How networks are trained for a fit without weights (``--training``; a model's default is
#: :attr:`qmri.models.network.Network.training`).
TRAININGS = ("self", "pilot")
#: Estimators of the pilot fit of ``--training pilot`` (:attr:`qmri.models.network.Network.pilot`).
PILOTS = ("lsq", "self")
TRAINING = Option("training", "how networks are trained for the fit without --weights: self (self-supervised on "
                  "the voxels, IVIM-NET style) or pilot (supervised on signals simulated from a pilot fit of 2,000 "
                  "of the voxels, with their residuals as noise: for DCE a least-squares fit, whose estimate the "
                  "network also reads, for IVIM a self-supervised network); default: the model's (pilot for DCE "
                  "and IVIM, self for the others)", str, None, choices=TRAININGS)
DEVICE = Option("device", "where the networks run: auto (CUDA when available), cpu or cuda", str, "auto",
                choices=("auto", "cpu", "cuda"))

_UNPREPARED = object()


def _training_options(options: dict) -> dict:
    given = [k for k in ("ensemble", "epochs", "seed", "training") if options.get(k) is not None]
    if options.get("weights") is not None and given:
        raise QMRIInputError(f"--{given[0]} applies to training; it cannot be used with --weights (trained networks)")
    defaults = {"ensemble": 1, "epochs": 100, "seed": 0}  # a value given as 0 is kept (and checked), not replaced
    return {k: default if options.get(k) is None else options[k] for k, default in defaults.items()}


class NetworkMethod(Method):
    """The ``dnn`` method (see the module docstring); its options are declared in :data:`OPTIONS`."""

    def __init__(self):
        super().__init__(
            "dnn", "neural network: trained on the voxels being fitted (self-supervised, IVIM-NET style) or "
            "loaded with --weights; outputs within the bounds; --ensemble N adds <param>_sd maps, --interval 95 % "
            "intervals",
            options=(WEIGHTS, ENSEMBLE, EPOCHS, SEED, TRAINING, DEVICE, INTERVAL_OPTION),
            reference="Barbieri et al., MRM 2020;83:312; Kaandorp et al., MRM 2021;86:2250; Ottens et al., "
                      "Med Image Anal 2022;80:102512 (pilot: trained for the fit's acquisition)",
            validation=Validation(
                recovery=None, options={"weights": "builtin"}, reference_cases=False,
                note="the networks shipped for the phantoms' protocols (--weights builtin); a network is not exact "
                     "on noise-free signals, so only the accuracy at the phantom's SNR is reported"))

    def warm_up(self, model) -> None:
        """Nothing: a network is trained or loaded by the fit itself (never on a made-up voxel)."""

    def prepare(self, model, rows, index, covariates, *, progress: bool = False, weights=None, ensemble=None,
                epochs=None, seed=None, training=None, device="auto", interval=False):
        from qmri.fitting.net.pilot import train_on_pilot
        from qmri.fitting.net.training import resolve_device
        from qmri.fitting.net.training import threads as torch_threads

        opts = _training_options({"weights": weights, "ensemble": ensemble, "epochs": epochs, "seed": seed,
                                  "training": training})
        dev = resolve_device(device)
        with torch_threads():
            if weights is not None:
                from qmri.fitting.net.weights import load

                trained = load(weights, model)
            else:
                how = train_on_pilot if (training or model.network.training) == "pilot" else train_on_voxels
                trained = how(model, rows, index, covariates, n_networks=opts["ensemble"], epochs=opts["epochs"],
                              seed=opts["seed"], device=dev, progress=progress)
        prov = {"network_device": dev}
        if trained is not None:
            prov.update(trained.describe())
        return {"network": trained}, prov

    def fit(self, model, Y, C, *, network=_UNPREPARED, **options):
        from qmri.fitting.net.training import resolve_device
        from qmri.fitting.net.training import threads as torch_threads
        from qmri.fitting.net.weights import Trained

        if network is _UNPREPARED:
            network = self.prepare(model, lambda sel: Y[sel], np.arange(Y.shape[0]), C, **options)[0]["network"]
        if network is None:  # no voxel could be trained on: all fail
            from qmri.fitting.net.data import voxel_inputs

            inputs, scale, _ = voxel_inputs(model, Y, C)
            P = np.full((Y.shape[0], model.spec.n_params), np.nan)
            res = Trained._result(model, P, inputs, scale, np.zeros(Y.shape[0], bool), quality=False)
        else:
            with torch_threads():
                res = network.estimate(model, Y, C, resolve_device(options.get("device", "auto")))
        if options.get("interval"):
            add_interval(model, res, C)
        return res

    def output_units(self, model, options: dict) -> dict[str, str]:
        units = model.output_units()
        if n_networks(model, options) > 1:
            units.update({f"{k}_sd": u for k, u in list(units.items())})
        if options.get("interval"):
            model.check_crlb()
            units.update({f"{k}_{end}": model.spec.units[k] for k in model.spec.names for end in ("lo", "hi")})
        return units


#: Normal quantile of the two-sided 95 % interval of :func:`add_interval`.
Z95 = 1.959963984540054


def add_interval(model, res, C) -> None:
    """Add ``<param>_lo`` and ``<param>_hi`` to a network result, in place: the estimate ± 1.96·sqrt(SD² +
    CRLB²) within the bounds (:func:`qmri.fitting.methods.set_interval`), SD the ensemble spread (0 for
    one network) and CRLB the Cramér–Rao bound at the estimate
    (:meth:`qmri.models.model.Model.add_crlb`, σ from each voxel's residuals, the noise the networks are
    trained for: :attr:`~qmri.models.network.Network.noise`). The ensemble spread alone measures
    how much the networks disagree, not the noise, and covers the truth far less than 95 % of the
    time; the bound adds the noise's share (coverage measured in ``benchmarks/results/coverage.md``)."""
    model.add_crlb(res, C, noise=model.network.noise)
    for k in model.spec.names:
        sd = res.params.get(f"{k}_sd", 0.0)
        half = Z95 * np.sqrt(np.square(sd) + np.square(res.crlb[k]))
        set_interval(model, res, k, res.params[k] - half, res.params[k] + half)
    res.crlb = {}


def n_networks(model, options: dict) -> int:
    """How many networks estimate (the ensemble size of the weights, or of training)."""
    if options.get("weights") is not None:
        from qmri.fitting.net.weights import load

        return load(options["weights"], model).n_networks
    return _training_options(options)["ensemble"]


def train_on_voxels(model, rows, index, covariates, *, n_networks: int = 1, epochs: int = 100, seed: int = 0,
                    device: str = "cpu", progress: bool = False):
    """Self-supervised networks trained on the voxels ``index``, whose signals ``rows(sel)`` gives
    (float64, (len(sel), m); see :meth:`qmri.fitting.methods.Method.prepare`).

    At most :data:`MAX_TRAINING_VOXELS` voxels (a random subset, chosen by ``seed``) with finite
    normalised signals are used. Returns a :class:`~qmri.fitting.net.weights.Trained`, or None
    when no voxel can be used.
    """
    from qmri.fitting.net.data import voxel_inputs
    from qmri.fitting.net.training import train_networks

    index = np.asarray(index)
    if index.size > MAX_TRAINING_VOXELS:
        index = np.sort(np.random.default_rng(seed).choice(index, MAX_TRAINING_VOXELS, replace=False))
    Y = np.ascontiguousarray(rows(index), dtype=np.float64)
    C = None if covariates is None else np.ascontiguousarray(covariates[index], dtype=np.float64)
    inputs, _, good = voxel_inputs(model, Y, C)
    inputs = inputs.subset(np.flatnonzero(good))
    if inputs.n == 0:
        return None
    record = {"mode": "self-supervised", "data": "the voxels being fitted", "voxels": inputs.n}
    return train_networks(model, inputs, supervised=False, n_networks=n_networks, seed=seed, epochs=epochs,
                          device=device, progress=progress, record=record)


#: The network estimator, added to the models that offer it in :mod:`qmri.models`.
DNN = NetworkMethod()

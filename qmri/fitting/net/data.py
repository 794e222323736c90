"""What a network reads: normalised signals of voxels, or simulated signals with their parameters.

Everything here comes from the model's declaration (:class:`qmri.models.model.Model`): ``normalise``
(the network sees the signals as the least-squares fit does) and ``amplitude``, and its network
facet ``model.network`` (:class:`qmri.models.network.Network`): ``channels`` (curves shared by the
voxels, e.g. the AIF), ``training_models`` (acquisitions to simulate), ``sample`` and ``bounds``
(the training prior and output ranges) and ``noise``. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qmri.errors import QMRIInputError
from qmri.simulate import add_gaussian_noise, add_rician_noise


@dataclass
class Inputs:
    """Signals for a network, in groups that share an acquisition.

    Attributes
    ----------
    signals : ndarray (n, m) float32
        Normalised signals (the model's :meth:`~qmri.models.model.Model.normalise`).
    covariates : ndarray (n, k) float32 or None
    groups : ndarray (n,) int
        Index of each row's acquisition in ``acqs`` / ``channels``.
    acqs : list of ndarray (m, k_acq)
        Acquisition arrays (``model.acq``) of the groups: the torch twin decodes with them.
    channels : list of ndarray (n_channels, m), or None
        Curves of each group read beside the signal (:meth:`~qmri.models.network.Network.channels`).
    targets : ndarray (n, n_params) float32 or None
        Simulated parameters scaled to [0, 1] within the network ranges (supervised training).
    estimates : ndarray (n, n_params) float32 or None
        Each row's least-squares estimate, read by the network beside the signal and covariates
        (networks trained on a pilot fit, :mod:`qmri.fitting.net.pilot`); never used to decode.
    """

    signals: np.ndarray
    covariates: np.ndarray | None
    groups: np.ndarray
    acqs: list
    channels: list | None
    targets: np.ndarray | None = None
    estimates: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.signals.shape[0])

    def subset(self, rows) -> "Inputs":
        """The rows ``rows`` (index array)."""
        def take(a):
            return None if a is None else a[rows]

        return Inputs(self.signals[rows], take(self.covariates), self.groups[rows], self.acqs, self.channels,
                      take(self.targets), take(self.estimates))


def _channels(model):
    ch = model.network.channels()
    return None if ch is None else np.asarray(ch, dtype=np.float32)


def voxel_inputs(model, Y, C) -> tuple[Inputs, np.ndarray, np.ndarray]:
    """The network inputs of measured signals.

    Parameters
    ----------
    model : qmri.models.model.Model
    Y : ndarray (n, n_measurements)
    C : ndarray (n, n_covariates) or None

    Returns
    -------
    inputs : Inputs
        One group (the model's acquisition); rows that cannot be fitted hold zeros.
    scale : ndarray (n,)
        The normalisation (amplitudes are multiplied back by it).
    good : ndarray of bool (n,)
        Rows whose normalised signals and covariates are finite.
    """
    Yn, scale, good = model.normalise(Y, C)
    good = good & np.all(np.isfinite(Yn), axis=1)
    if C is not None:
        good &= np.all(np.isfinite(C), axis=1)
    X = np.where(good[:, None], Yn, 0.0).astype(np.float32)
    Cf = None if C is None else np.where(good[:, None], C, 0.0).astype(np.float32)
    ch = _channels(model)
    return (Inputs(X, Cf, np.zeros(X.shape[0], np.int64), [np.asarray(model.acq)], None if ch is None else [ch]),
            scale, good)


def lsq_estimates(model, Y, C, scale) -> np.ndarray:
    """Each row's least-squares estimate (``lsq`` with its defaults), as a network reads it
    (:attr:`Inputs.estimates`): the amplitude divided by the normalisation ``scale`` (n,), clipped
    to the network ranges, the middle of the ranges where the fit gives no finite value.

    Parameters
    ----------
    model : qmri.models.model.Model
        With an ``lsq`` method.
    Y : ndarray (n, n_measurements)
        Signals as the fit sees them (not normalised).
    C : ndarray (n, n_covariates) or None
    scale : ndarray (n,)
        The normalisation of each row (:meth:`~qmri.models.model.Model.normalise`).

    Returns
    -------
    ndarray (n, n_params) float32
        In the parameters' units (the amplitude relative to ``scale``).

    Raises
    ------
    QMRIInputError
        The model has no ``lsq`` method.
    """
    res = model.method("lsq").fit(model, Y, C)
    names = model.spec.names
    E = np.stack([np.asarray(res.params[k], dtype=np.float64) for k in names], axis=1)
    if model.amplitude:
        with np.errstate(divide="ignore", invalid="ignore"):
            E[:, names.index(model.amplitude)] /= scale
    lo, hi = (np.asarray(v, dtype=np.float64) for v in model.network.bounds())
    E = np.where(np.isfinite(E), E, 0.5 * (lo + hi))
    return np.clip(E, lo, hi).astype(np.float32)


def parse_range(text, what: str = "range") -> tuple[float, float]:
    """``"10:50"`` (or a pair, or one number) → (10.0, 50.0).

    Raises
    ------
    QMRIInputError
        Not one or two positive numbers with low <= high.
    """
    if isinstance(text, str):
        try:
            vals = [float(v) for v in text.split(":")]
        except ValueError:
            raise QMRIInputError(f"{what}: expected LOW:HIGH, got {text!r}") from None
    else:
        vals = [float(v) for v in np.atleast_1d(text)]
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or not (0 < vals[0] <= vals[1]) or not np.all(np.isfinite(vals)):
        raise QMRIInputError(f"{what}: expected two positive numbers LOW:HIGH with LOW <= HIGH, got {text!r}")
    return vals[0], vals[1]


def simulated_inputs(model, n: int, rng, *, snr=(10.0, 50.0), prior: dict | None = None) -> Inputs:
    """Simulated training signals with their parameters (supervised training).

    For each model of ``model.network.training_models(rng)`` (an equal share of ``n`` each):
    parameters from ``model.network.sample`` (uniform over the network ranges, or
    ``prior``), clean signals from the declaration (``spec.evaluate``), noise of standard deviation
    ``level / SNR`` with the SNR uniform in ``snr`` per signal — Rician or Gaussian as the model's
    ``network.noise`` says; ``level`` is the amplitude parameter (S0) when the model declares one,
    else the peak of each clean signal — then the model's normalisation. Targets are the
    parameters scaled to [0, 1] within the ranges (the amplitude divided by the normalisation).

    Parameters
    ----------
    model : qmri.models.model.Model
    n : int
        Signals in all.
    rng : numpy.random.Generator
    snr : (float, float)
        SNR range.
    prior : dict, optional
        ``{name: (low, high)}`` replacing some ranges of the training parameters.

    Returns
    -------
    Inputs
        With ``targets``; signals that cannot be normalised are dropped.
    """
    lo, hi = (np.asarray(v, dtype=np.float64) for v in model.network.bounds())
    variants = model.network.training_models(rng)
    shares = np.diff(np.linspace(0, int(n), len(variants) + 1).round().astype(int))
    parts = []
    for g, (v, k) in enumerate(zip(variants, shares)):
        P = v.network.sample(int(k), rng, prior)
        C = v.spec.covariate_array(None, int(k)) if v.spec.covariates else None  # declared defaults
        clean = v.spec.evaluate(P, v.acq, C)
        amp = v.spec.names.index(v.amplitude) if v.amplitude else None
        level = P[:, amp] if amp is not None else np.max(np.abs(clean), axis=1)
        sigma = level / rng.uniform(snr[0], snr[1], P.shape[0])
        noisy = (add_rician_noise if v.network.noise == "rician" else add_gaussian_noise)(clean, sigma[:, None], rng)
        Yn, scale, good = v.normalise(noisy, C)
        good &= np.all(np.isfinite(Yn), axis=1)
        if amp is not None:
            P[:, amp] /= scale
        S = np.clip((P - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0)
        parts.append((Yn[good], S[good], np.full(int(good.sum()), g), None if C is None else C[good]))
    channels = [_channels(v) for v in variants]
    cov = None if parts[0][3] is None else np.concatenate([p[3] for p in parts]).astype(np.float32)
    return Inputs(np.concatenate([p[0] for p in parts]).astype(np.float32), cov,
                  np.concatenate([p[2] for p in parts]).astype(np.int64), [np.asarray(v.acq) for v in variants],
                  None if channels[0] is None else channels, np.concatenate([p[1] for p in parts]).astype(np.float32))

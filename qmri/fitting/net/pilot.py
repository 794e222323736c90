"""Networks trained for one fit on signals simulated from a pilot fit (``--training pilot``).

Self-supervised training (:func:`qmri.fitting.net.method.train_on_voxels`) fits the signal; supervised
training on a declared prior (:func:`qmri.fitting.net.train`) learns the mean parameter of signals
drawn from that prior, which is far from the data's own distribution when the prior is wide (DCE:
Ktrans 0-1 /min). Training on a pilot fit instead learns, for this acquisition, the data's own
distribution and noise (the approach of DCE-NET, Ottens et al., Med Image Anal 2022;80:102512,
trained for its acquisition; here the prior is empirical, estimated from the voxels themselves):

1. the pilot fit estimates at most :data:`PILOT_VOXELS` of the voxels being fitted (a random subset,
   chosen by the seed), with the estimator the model's network facet names
   (:attr:`qmri.models.network.Network.pilot`): ``"lsq"``
   (:class:`qmri.fitting.methods.LeastSquares`, its defaults; DCE) or ``"self"`` (a self-supervised
   network trained on all the voxels being fitted, :func:`qmri.fitting.net.method.train_on_voxels`;
   IVIM, where least squares scatters D* and f far wider than the tissue does);
2. :data:`PILOT_SIGNALS` parameter vectors are drawn from the pilot estimates of the voxels it
   fitted (converged), each jittered (:func:`jitter`) and clipped to the network ranges
   (``model.network.bounds()``);
3. their clean signals (``model.spec.evaluate``) get the noise of a random pilot voxel: its residual
   vector, scaled by sqrt(m / (m − p)) (the residuals of a fit are smaller than the noise by that
   factor), with a random sign per measurement (Gaussian noise, :attr:`~qmri.models.network.Network.noise`:
   the noise level, its variation over voxels and its shape over the measurements are the data's),
   or for magnitude images (Rician noise) Rician noise whose σ is that scaled residual's RMS (the
   noise floor of the low signals is then simulated too: on the IVIM phantom at SNR 10 it took
   the bias of D from −11 % to −6 %). For a model with an amplitude (S0) the jitter and
   the ranges apply to it relative to each voxel's normalisation, and the noise is scaled from
   its voxel's normalisation to that of the voxel whose parameters it is added to;
4. with an ``lsq`` pilot every simulated signal is fitted by ``lsq`` too (with a ``self`` pilot only
   the held-out ones of step 5). With an ``lsq`` pilot the network reads that
   estimate beside the signal (:attr:`qmri.fitting.net.data.Inputs.estimates`): it learns a
   correction of the least-squares estimate towards the mean parameter given the signal; with a
   ``self`` pilot it reads the signal alone. It is a per-parameter network
   (:class:`~qmri.fitting.net.networks.ParameterNets`, :data:`WIDTH` units; no channels: the AIF of
   a DCE fit is fixed, so the network need not read it), trained on the scaled parameters, with
   outputs over the range of the training parameters;
5. :data:`PILOT_SIGNALS` / 10 more simulated signals, held out, decide per parameter (:func:`lsq_for`):
   where the network's estimate is further from the truth than the least-squares estimate of the
   same signal (RMSE), the method gives the ``lsq`` estimate for that parameter and the contract
   says so (``lsq_for``): it is never worse than ``lsq`` on the data it simulates.

At inference every voxel is fitted by ``lsq`` first (:func:`with_pilot`) when the network reads that
estimate or ``lsq_for`` names a parameter.
Measured against ``lsq`` on the DCE phantom (``benchmarks/dce_pilot.py``, ``benchmarks/results/dce_pilot.md``;
the experiments that led here: ``benchmarks/dce_own_aif.py``) and against IVIM-NET on the IVIM phantom
(``benchmarks/dnn.py``, ``benchmarks/results/dnn.md``).
"""

from __future__ import annotations

import numpy as np

from qmri.fitting.net.data import Inputs, lsq_estimates, voxel_inputs
from qmri.fitting.net.method import train_on_voxels
from qmri.simulate import add_rician_noise

#: Voxels estimated by the pilot fit (a random subset of larger fits).
PILOT_VOXELS = 2000
#: Simulated training signals. 200,000 gave the same accuracy on the IVIM phantom (NRMSE of f, D and
#: D* within 2 %) in twice the time; 50,000 lost up to 3 % on f and D (``benchmarks/results/ivim_pilot.md``).
PILOT_SIGNALS = 100_000
#: Hidden units of each parameter's sub-network.
WIDTH = 64
#: Jitter of the pilot estimates (:func:`jitter`): the log-normal SD of the parameters bounded
#: below by 0 or more; twice the SD, as a fraction of the range, of the additive jitter of the others.
JITTER = 0.1


def jitter(P: np.ndarray, lo: np.ndarray, hi: np.ndarray, rng) -> np.ndarray:
    """Pilot estimates ``P`` (n, n_params) smoothed into a continuous prior: parameters whose lower
    bound is at least 0 are multiplied by exp(N(0, :data:`JITTER`)) (10 %); the others get Gaussian
    noise of SD :data:`JITTER` / 2 × (hi − lo) added (1 s for a delay within ±10 s). Clipped to
    [lo, hi]. A choice, not a published rule: it was measured against lsq on the DCE phantom."""
    out = P.copy()
    positive = lo >= 0
    out[:, positive] *= np.exp(rng.normal(0.0, JITTER, (P.shape[0], int(positive.sum()))))
    span = (hi - lo)[~positive]
    out[:, ~positive] += rng.normal(0.0, 1.0, (P.shape[0], span.size)) * (0.5 * JITTER * span)
    return np.clip(out, lo, hi)


def pilot_inputs(model, Y: np.ndarray, C, rng, *, n_signals: int | None = None, pilot=None,
                 source: str = "lsq", estimated: int | None = None):
    """Simulated training inputs from a pilot fit of the voxels ``Y`` (see the module docstring).

    Parameters
    ----------
    model : qmri.models.model.Model
    Y : ndarray (n, n_measurements)
        The pilot voxels, as the fit sees them (not normalised), finite.
    C : ndarray (n, n_covariates) or None
    rng : numpy.random.Generator
    n_signals : int, optional
        Simulated signals (default :data:`PILOT_SIGNALS`).
    pilot : qmri.fitting.result.FitResult, optional
        The pilot estimates of ``Y`` (default: ``lsq`` fits them here); voxels with a status other
        than converged (0) or a non-finite estimate are left out.
    source : str
        The pilot estimator, as the record names it (``"lsq"`` or ``"self"``).
    estimated : int, optional
        How many of the last usable simulated signals get their least-squares estimate (the ones
        the caller holds out for :func:`lsq_for`; the others' estimates are NaN). Default: all
        (a network that reads the estimate needs them).

    Returns
    -------
    inputs : Inputs or None
        Signals, targets (scaled within ``ranges``) and the signals' least-squares estimates; None
        when no pilot voxel converged or the model has as many parameters as measurements.
    ranges : (ndarray, ndarray)
        The output ranges: those of the training parameters.
    record : dict
        What the contract records of the pilot.
    """
    names = model.spec.names
    m, p = Y.shape[1], len(names)
    n_signals = PILOT_SIGNALS if n_signals is None else int(n_signals)
    res = model.method("lsq").fit(model, Y, C) if pilot is None else pilot
    P = np.stack([np.asarray(res.params[k], dtype=np.float64) for k in names], axis=1)
    clean = model.spec.evaluate(P, model.acq, C)
    R = Y - clean
    ok = (res.status == 0) & np.all(np.isfinite(P), axis=1) & np.all(np.isfinite(R), axis=1)
    if not np.any(ok) or m <= p:
        return None, None, {}
    P, R = P[ok], R[ok] * np.sqrt(m / (m - p))
    Cp = None if C is None else C[ok]
    lo, hi = (np.asarray(v, dtype=np.float64) for v in model.network.bounds())
    amp = names.index(model.amplitude) if model.amplitude else None
    level = np.ones(P.shape[0])
    if amp is not None:  # the amplitude and the noise relative to each pilot voxel's normalisation
        level = model.normalise(Y[ok], Cp)[1]
        P[:, amp] /= level
        R /= level[:, None]
    n = n_signals
    pick, noise = rng.integers(0, P.shape[0], n), rng.integers(0, P.shape[0], n)
    PT = jitter(P[pick], lo, hi, rng)
    CT = None if Cp is None else Cp[pick]
    raw = PT.copy()
    if amp is not None:
        raw[:, amp] *= level[pick]
    clean = model.spec.evaluate(raw, model.acq, CT)
    if model.network.noise == "rician":  # magnitude images: Rician noise of each pilot voxel's residual SD
        sigma = np.sqrt(np.mean(np.square(R), axis=1))[noise] * level[pick]
        noisy = add_rician_noise(clean, sigma[:, None], rng)
        how = "Rician, of the SD of a random pilot voxel's residuals x sqrt(m/(m-p))"
    else:
        noisy = clean + R[noise] * level[pick][:, None] * rng.choice([-1.0, 1.0], (n, m))
        how = "pilot residuals x sqrt(m/(m-p)), random signs"
    inputs, scale, good = voxel_inputs(model, noisy, CT)
    usable = np.flatnonzero(good)
    inputs = with_pilot(model, inputs, noisy, CT, scale,
                        rows=None if estimated is None else usable[max(usable.size - int(estimated), 0):])
    if amp is not None:
        PT[:, amp] = raw[:, amp] / scale
    rlo, rhi = PT[good].min(axis=0), PT[good].max(axis=0)
    rhi = np.where(rhi > rlo, rhi, rlo + 1e-6 * np.maximum(hi - lo, 1e-12))
    inputs.targets = np.clip((PT - rlo) / (rhi - rlo), 0.0, 1.0).astype(np.float32)
    record = {"pilot": source, "pilot_voxels": int(Y.shape[0]), "pilot_converged": int(ok.sum()),
              "prior": f"pilot {source} estimates, jittered (log-normal SD {JITTER}; additive for parameters below 0)",
              "noise": how}
    return inputs.subset(usable), (rlo, rhi), record


def with_pilot(model, inputs: Inputs, Y, C, scale, *, rows=None) -> Inputs:
    """``inputs`` as a pilot-trained network reads them: with each row's least-squares estimate
    (:func:`qmri.fitting.net.data.lsq_estimates`) and without channels.

    Parameters
    ----------
    model : qmri.models.model.Model
    inputs : Inputs
        The rows' network inputs (:func:`~qmri.fitting.net.data.voxel_inputs`).
    Y : ndarray (n, n_measurements)
        The same rows as the fit sees them (not normalised).
    C : ndarray (n, n_covariates) or None
    scale : ndarray (n,)
        Their normalisation (from ``voxel_inputs``).
    rows : ndarray of int, optional
        The rows to fit (default all); the others' estimates are NaN.

    Returns
    -------
    Inputs
        The same signals, covariates, groups, acquisitions and targets; ``estimates`` (n, n_params).
    """
    if rows is None:
        E = lsq_estimates(model, Y, C, scale)
    else:
        E = np.full((Y.shape[0], len(model.spec.names)), np.nan, dtype=np.float32)
        E[rows] = lsq_estimates(model, Y[rows], None if C is None else C[rows], scale[rows])
    return Inputs(inputs.signals, inputs.covariates, inputs.groups, inputs.acqs, None, inputs.targets, E)


def train_on_pilot(model, rows, index, covariates, *, n_networks: int = 1, epochs: int = 100, seed: int = 0,
                   device: str = "cpu", progress: bool = False):
    """Networks trained for this fit on curves simulated from a pilot fit of the voxels ``index``
    (see the module docstring).

    Parameters
    ----------
    model : qmri.models.model.Model
        Needs an ``lsq`` method and a torch-free ``spec.evaluate``; its network facet names the pilot
        estimator (:attr:`~qmri.models.network.Network.pilot`); nothing else of it is named.
    rows : callable
        ``rows(sel)`` gives the signals of voxels ``sel`` as the fit sees them, float64
        (len(sel), n_measurements) (:meth:`qmri.fitting.methods.Method.prepare`).
    index : ndarray of int
        The voxels being fitted.
    covariates : ndarray (n_total, n_covariates) or None
    n_networks, epochs, seed, device, progress
        As :func:`qmri.fitting.net.training.train_networks`; ``seed`` also picks the pilot voxels,
        draws the simulated signals and trains a ``self`` pilot's network (``epochs`` too).

    Returns
    -------
    qmri.fitting.net.weights.Trained or None
        Its contract's training has ``mode`` ``"pilot"``, ``pilot`` (the estimator), ``lsq_for`` and,
        with an ``lsq`` pilot, ``reads`` ``"lsq"``; None when no voxel can be used (every voxel of
        the fit then fails).

    Raises
    ------
    QMRIInputError
        ``n_networks`` or ``epochs`` below 1 (:func:`~qmri.fitting.net.training.train_networks`).
    """
    from qmri.fitting.net.networks import architecture
    from qmri.fitting.net.training import train_networks

    source = model.network.pilot
    rng = np.random.default_rng(seed)
    index = np.asarray(index)
    Y = np.ascontiguousarray(rows(index), dtype=np.float64)
    C = None if covariates is None else np.ascontiguousarray(covariates[index], dtype=np.float64)
    _, _, good = voxel_inputs(model, Y, C)
    usable = np.flatnonzero(good)
    if usable.size > PILOT_VOXELS:
        usable = np.sort(rng.choice(usable, PILOT_VOXELS, replace=False))
    if usable.size == 0:
        return None
    Yp, Cp = Y[usable], None if C is None else C[usable]
    res, extra = None, {}
    if source == "self":  # a self-supervised network of every voxel estimates the pilot voxels
        net = train_on_voxels(model, rows, index, covariates, epochs=epochs, seed=seed, device=device,
                              progress=progress)
        if net is None:
            return None
        res = net.estimate(model, Yp, Cp, device)
        extra = {"pilot_network": {"mode": net.contract["training"]["mode"],
                                   "voxels": net.contract["training"]["voxels"],
                                   "epochs": net.histories[0].get("epochs_run") if net.histories else None}}
    n_check = PILOT_SIGNALS // 10
    reads = source == "lsq"  # a network that reads the lsq estimate needs it for every signal; else the held-out only
    inputs, ranges, record = pilot_inputs(model, Yp, Cp, rng, n_signals=PILOT_SIGNALS + n_check, pilot=res,
                                          source=source, estimated=None if reads else n_check)
    if inputs is None or inputs.n < 20:
        return None
    n_check = min(n_check, inputs.n // 10)
    held, inputs = inputs.subset(np.arange(inputs.n - n_check, inputs.n)), inputs.subset(np.arange(inputs.n - n_check))
    if not reads:
        inputs = signals_only(inputs)
    record.update(extra, signals=inputs.n, check_signals=n_check)
    if reads:
        record["reads"] = "lsq"
    n_cov = 0 if inputs.covariates is None else inputs.covariates.shape[1]
    n_est = inputs.estimates.shape[1] if reads else 0
    arch = architecture(inputs.signals.shape[1], n_cov + n_est, len(model.spec.names), 0, width=WIDTH)
    data = {"lsq": "a least-squares fit", "self": "a self-supervised network's fit"}[source]
    record = {"mode": "pilot", "data": f"signals simulated from {data} of the voxels being fitted", **record}
    trained = train_networks(model, inputs, supervised=True, n_networks=n_networks, seed=seed, epochs=epochs,
                             device=device, progress=progress, record=record, ranges=ranges, arch=arch)
    trained.contract["training"]["lsq_for"] = lsq_for(trained, held, ranges, model.spec.names)
    return trained


def signals_only(inputs: Inputs) -> Inputs:
    """``inputs`` without the least-squares estimates (what a network that reads none is given)."""
    return Inputs(inputs.signals, inputs.covariates, inputs.groups, inputs.acqs, inputs.channels, inputs.targets)


def lsq_for(trained, held: Inputs, ranges, names) -> list[str]:
    """The parameters whose least-squares estimate is closer to the truth than the networks' ensemble
    mean on the held-out simulated signals ``held`` (RMSE): for those the networks give the ``lsq``
    estimate itself (:meth:`~qmri.fitting.net.weights.Trained.estimate`).
    Measured: Tofts Ktrans at SNR 20 with 2 s frames (``benchmarks/results/dce_pilot.md``).

    Parameters
    ----------
    trained : qmri.fitting.net.weights.Trained
    held : Inputs
        With ``targets`` (scaled within ``ranges``) and ``estimates`` (read by the networks only
        when they read estimates, :attr:`~qmri.fitting.net.weights.Trained.reads_estimates`).
    ranges : (ndarray, ndarray)
        The networks' output ranges, each (n_params,), in the parameters' units.
    names : sequence of str
        The parameters, in order.

    Returns
    -------
    list of str
    """
    from qmri.fitting.net.training import predict

    lo, hi = ranges
    truth = held.targets * (hi - lo) + lo
    P = predict(trained.networks, held if trained.reads_estimates else signals_only(held)).mean(axis=0)
    net = np.sqrt(np.mean(np.square(P - truth), axis=0))
    lsq = np.sqrt(np.mean(np.square(held.estimates - truth), axis=0))
    return [name for name, a, b in zip(names, net, lsq) if b < a]

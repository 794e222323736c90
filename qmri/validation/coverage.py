"""Do the 95 % intervals hold the truth 95 % of the time? (``qmri validate --suite coverage``)

Simulations (:func:`simulate`): for each model, on the protocol of its phantom (``qmri phantom``;
trace DKI: b = 0, 250, 500, 1000-2500 s/mm²; VFA: flip angles 2, 5, 10, 15, 20°, TR 5 ms), parameter
sets drawn uniformly from :data:`PRIORS` (:func:`qmri.simulate.sample_parameters`, seed 0), each
simulated with independent noise (seed ``1000·SNR + model index``) at the SNR given, σ = the set's
peak noise-free signal / SNR: Rician noise for magnitude signals
(:func:`qmri.simulate.add_rician_noise`), Gaussian for DCE concentrations
(:func:`qmri.simulate.add_gaussian_noise`). Parameters without a prior (the DCE delay) are held at 0.

Interval (:data:`qmri.models.methods.INTERVAL_OPTION`, ``--interval``): ``<param>_lo`` to ``<param>_hi``;
for the least-squares methods the estimate ± t(0.975, m − p)·SE, for ``dnn`` (the networks shipped
for the phantom protocols, ``--weights builtin``, where they exist: :data:`SHIPPED`) the estimate
± 1.96·sqrt(SD² + CRLB²) (:func:`qmri.fitting.net.method.add_interval`). A voxel without a finite
interval (failed fit, singular Jacobian, D* moved by the IVIM refinement) counts as not covered.

Cases: one per model, method, parameter and SNR (10, 20, 50), passing when the coverage over
``SETS × REPEATS`` voxels lies in 90-98 % (the coverage's own standard error there is about 1 %).
Where it does not, the case is an expected failure with its measured value
(:data:`EXPECTED_FAILURES`), counted apart.
"""

from __future__ import annotations

import numpy as np

from qmri.simulate import add_gaussian_noise, add_rician_noise, sample_parameters
from qmri.validation.cases import Case, Outcome

SUITE = "coverage"
TITLE = "Coverage of the 95 % intervals"
RULES = ("simulated voxels (phantom protocols, parameters from realistic priors, Rician noise; DCE: Gaussian on "
         "concentrations) at SNR 10, 20 and 50, fitted by least squares and by dnn (shipped networks) with "
         "--interval; pass if the 95 % interval holds the truth in 90-98 % of the voxels")

SNRS = (10, 20, 50)
#: Parameter sets and noise realisations of each set per model and SNR in the suite.
SETS, REPEATS = 8, 100
#: Coverage range that passes.
LOW, HIGH = 0.90, 0.98
#: Realistic parameter ranges (within each model's bounds).
PRIORS = {
    "IVIM": {"S0": (900, 1100), "f": (0.05, 0.3), "D": (0.5e-3, 2.0e-3), "Dstar": (0.01, 0.08)},
    "ADC": {"S0": (900, 1100), "ADC": (0.5e-3, 2.5e-3)},
    "stretched": {"S0": (900, 1100), "DDC": (0.5e-3, 2.0e-3), "alpha": (0.6, 1.0)},
    "DKI trace": {"S0": (900, 1100), "D": (0.5e-3, 2.0e-3), "K": (0.4, 1.5)},
    "DCE Tofts": {"Ktrans": (0.05, 0.5), "ve": (0.1, 0.5)},
    "DCE ETM": {"Ktrans": (0.05, 0.5), "ve": (0.1, 0.5), "vp": (0.01, 0.1)},
    "VFA T1": {"M0": (900, 1100), "T1": (0.5, 2.0)},
}

#: Known misses: ``(model, parameter, SNR)`` → why, with the coverage measured by this suite.
_IVIM_LOW = ("low-SNR IVIM: fits at a bound (f or D* at its limit) have no finite standard error (13 % of the voxels "
             "at SNR 10, 6 % at 20) and the estimates are biased (f +20 %, D* +50 % at SNR 20), so the Jacobian "
             "interval is not calibrated; measured {:.1f} %")
_BOOT = ("IVIM bootstrap at SNR 10: refits from a biased fit (f +51 %, D -19 %) reproduce its bias, so the "
         "percentile interval is off-centre; measured {:.1f} %")
_DNN_WIDE = ("dnn D*: the Cramér–Rao bound of the weakly determined D* at the estimate is wide while the network's "
             "estimate is shrunk towards its training range, so the interval is conservative; measured {:.1f} %")
EXPECTED_FAILURES: dict[tuple[str, str, int], str] = {
    ("IVIM", "lsq", "S0", 10): _IVIM_LOW.format(83.4),
    ("IVIM", "lsq", "f", 10): _IVIM_LOW.format(83.6),
    ("IVIM", "lsq", "D", 10): _IVIM_LOW.format(83.9),
    ("IVIM", "lsq", "Dstar", 10): _IVIM_LOW.format(65.6),
    ("IVIM", "lsq", "S0", 20): _IVIM_LOW.format(88.4),
    ("IVIM", "lsq", "f", 20): _IVIM_LOW.format(88.8),
    ("IVIM", "lsq", "Dstar", 20): _IVIM_LOW.format(82.2),
    ("IVIM", "lsq-bootstrap", "f", 10): _BOOT.format(86.6),
    ("IVIM", "lsq-bootstrap", "D", 10): _BOOT.format(82.9),
    ("IVIM", "lsq-bootstrap", "f", 50): "IVIM bootstrap f at SNR 50: percentile intervals are a little narrow "
                                        "(sigma estimated from 9 residual degrees of freedom); measured 89.8 %",
    ("IVIM", "dnn", "Dstar", 10): _DNN_WIDE.format(98.1),
    ("IVIM", "dnn", "Dstar", 20): _DNN_WIDE.format(99.6),
    ("IVIM", "dnn", "Dstar", 50): _DNN_WIDE.format(99.5),
    ("IVIM", "dnn", "S0", 50): "dnn S0 at SNR 50: the residual sigma includes the networks' misfit, so the CRLB "
                               "term is too wide (conservative); measured 99.2 %",
    ("ADC", "dnn", "S0", 10): "dnn S0 at SNR 10: the networks' S0 is shrunk towards the training mean and the "
                              "interval a little narrow; measured 88.8 %",
    ("DKI trace", "lsq", "K", 10): "trace DKI K at SNR 10: the estimate is biased (+6 %: Rician noise floor at "
                                   "high b) and fits end at the bounds; measured 89.0 %",
}


def models() -> dict:
    """``{label: (model, least-squares method, shipped networks exist for its protocol)}`` (the
    shipped networks: :data:`SHIPPED`)."""
    from qmri.models import ADC, DCE, IVIM, VFA, StretchedExponential, TraceDKI

    out = {}
    for label, cls in (("IVIM", IVIM), ("ADC", ADC), ("stretched", StretchedExponential)):
        out[label] = (cls.for_phantom(cls.phantom(snr=np.inf, block=(1, 1, 1))), "lsq", label in SHIPPED)
    out["DKI trace"] = (TraceDKI([0, 250, 500, 1000, 1500, 2000, 2500]), "lsq", False)
    ph = DCE.phantom(snr=np.inf, block=(1, 1, 1))
    acq = {k: np.asarray(ph.acquisition[k]) for k in ("times", "aif", "aif_times")}
    out["DCE Tofts"] = (DCE(acq["times"], acq["aif"], "tofts", aif_times=acq["aif_times"]), "lsq", False)
    out["DCE ETM"] = (DCE(acq["times"], acq["aif"], "etm", aif_times=acq["aif_times"]), "lsq", False)
    out["VFA T1"] = (VFA([2, 5, 10, 15, 20], 0.005), "lsq", False)
    return out


def simulate(model, label: str, snr: float, sets: int, repeats: int, index: int):
    """Simulated voxels of one model at one SNR (see the module docstring).

    Returns
    -------
    truth : ndarray (sets·repeats, n_params)
    signals : ndarray (sets·repeats, n_measurements)
    sigma : ndarray (sets·repeats,)
        The noise level of each voxel.
    groups : ndarray of int (sets·repeats,)
        The parameter set of each voxel.
    """
    spec = model.spec
    lo, hi = model.lower.copy(), model.upper.copy()
    prior = {k: v for k, v in PRIORS[label].items() if k in spec.names}
    for k in spec.names:
        if k not in prior:
            j = spec.names.index(k)
            lo[j] = hi[j] = max(0.0, lo[j]) if np.isfinite(lo[j]) else 0.0
    P = sample_parameters(spec, sets, np.random.default_rng(0), prior=prior, lower=lo, upper=hi)
    truth = np.repeat(P, repeats, axis=0)
    clean = spec.evaluate(truth, model.acq)
    sigma = np.repeat(np.abs(spec.evaluate(P, model.acq)).max(axis=1), repeats) / snr
    rng = np.random.default_rng(int(1000 * snr) + index)
    add = add_rician_noise if model.network.noise == "rician" else add_gaussian_noise
    return truth, add(clean, sigma[:, None], rng), sigma, np.repeat(np.arange(sets), repeats)


def interval_coverage(estimate, lo, hi, truth) -> float:
    """Fraction of voxels whose interval [lo, hi] holds the truth (no finite interval: not covered)."""
    ok = np.isfinite(estimate) & np.isfinite(lo) & np.isfinite(hi) & (lo <= truth) & (truth <= hi)
    return float(np.mean(ok))


def _measure(label: str, method: str, snr: float, cache: dict) -> dict:
    key = (label, method, snr)
    if key not in cache:
        every = cache.setdefault("models", models())
        model = every[label][0]
        truth, Y, _, _ = simulate(model, label, snr, SETS, REPEATS, list(every).index(label))
        name, opts = METHODS[method]
        maps = model.fit(Y, method=name, interval=True, **opts)
        cache[key] = {k: interval_coverage(maps[k], maps[f"{k}_lo"], maps[f"{k}_hi"], truth[:, j])
                      for j, k in enumerate(model.spec.names) if k in PRIORS[label]}
    return cache[key]


def _case(label: str, method: str, name: str, snr: float, cache: dict) -> Outcome:
    cov = _measure(label, method, snr, cache)[name]
    metrics = {"SNR": float(snr), "voxels": SETS * REPEATS, "coverage %": 100 * cov}
    if LOW <= cov <= HIGH:
        return Outcome(True, metrics=metrics)
    return Outcome(False, f"{label} {method} {name} at SNR {snr:g}: coverage {100 * cov:.1f} % outside "
                          f"{100 * LOW:.0f}-{100 * HIGH:.0f} %", metrics=metrics)


#: What the suite's method labels fit: ``{label: (method, options besides interval=True)}``.
METHODS = {"lsq": ("lsq", {}), "dnn": ("dnn", {"weights": "builtin"}),
           "lsq-bootstrap": ("lsq", {"bootstrap": 200})}
#: Models whose least-squares t intervals are not calibrated at low SNR: their bootstrap intervals are measured too.
BOOTSTRAPPED = ("IVIM",)


def methods(label: str) -> list[str]:
    """The method labels (:data:`METHODS`) whose intervals the suite measures for model ``label``: its
    least-squares method; its parametric bootstrap where the t interval is not calibrated
    (:data:`BOOTSTRAPPED`); and ``dnn`` with the shipped networks where qmri ships them for the
    model's protocol (:data:`SHIPPED`)."""
    out = ["lsq"]
    out += ["lsq-bootstrap"] if label in BOOTSTRAPPED else []
    return out + (["dnn"] if label in SHIPPED else [])


#: Models whose phantom protocol has shipped networks (an ensemble of 3: ``--weights builtin``).
SHIPPED = ("IVIM", "ADC", "stretched")


def cases() -> list[Case]:
    """One case per model, method, parameter and SNR (the fits are shared by a model's cases at one SNR)."""
    cache: dict = {}
    out = []
    for label, names in PRIORS.items():
        for method in methods(label):
            for snr in SNRS:
                for name in names:
                    cid = f"{label.lower().replace(' ', '-')}-{method}-{name}-snr{snr}"
                    out.append(Case(SUITE, f"{label} {method} {name}", cid,
                                    lambda label=label, method=method, name=name, snr=snr:
                                    _case(label, method, name, snr, cache),
                                    expected_failure=EXPECTED_FAILURES.get((label, method, name, snr), "")))
    return out

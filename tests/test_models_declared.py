"""Every declared signal model: analytic Jacobian matches finite differences; Numba and torch agree."""

import numpy as np
import pytest
import torch

import qmri.models
from qmri.models.base import SIGNAL_MODELS

qmri.models.commands()  # imports every model module, which registers its declarations


def _covariates(spec):
    """Example covariates: 10% off each declared default, so that they matter."""
    return np.array([0.9 * c.default for c in spec.covariates])


def _sample_params(spec, rng, n=6):
    lo, hi = spec.lower.copy(), spec.upper.copy()
    init = spec.initial
    for j in range(spec.n_params):
        if not np.isfinite(lo[j]):
            lo[j] = init[j] - abs(init[j]) - 1.0
        if not np.isfinite(hi[j]):
            hi[j] = init[j] + abs(init[j]) + 1.0
    span = hi - lo
    return lo + span * (0.1 + 0.8 * rng.random((n, spec.n_params)))


@pytest.mark.parametrize("name", sorted(SIGNAL_MODELS))
def test_jacobian_matches_finite_differences(name):
    spec = SIGNAL_MODELS[name]
    acq = spec.example_acquisition()
    cov = _covariates(spec)
    rng = np.random.default_rng(1)
    for p in _sample_params(spec, rng):
        J = spec.jacobian_at(p, acq, cov)
        Jfd = np.empty_like(J)
        for j in range(spec.n_params):
            h = 1e-6 * max(abs(p[j]), (spec.upper[j] - spec.lower[j]) * 1e-3 if np.isfinite(spec.upper[j] - spec.lower[j]) else 1.0)
            dp = np.zeros_like(p)
            dp[j] = h
            Jfd[:, j] = (spec.evaluate(p + dp, acq, cov) - spec.evaluate(p - dp, acq, cov)) / (2 * h)
        scale = np.maximum(np.abs(Jfd).max(axis=0), 1e-12)
        np.testing.assert_allclose(J / scale, Jfd / scale, atol=1e-5, err_msg=f"{name} at {p}")


@pytest.mark.parametrize("name", sorted(SIGNAL_MODELS))
def test_numba_and_torch_signals_agree(name):
    spec = SIGNAL_MODELS[name]
    acq = spec.example_acquisition()
    P = _sample_params(spec, np.random.default_rng(2))
    cov = np.tile(_covariates(spec), (P.shape[0], 1))
    ref = spec.evaluate(P, acq, cov)
    got = spec.torch_signal(torch.as_tensor(P, dtype=torch.float64), torch.as_tensor(acq, dtype=torch.float64),
                            torch.as_tensor(cov, dtype=torch.float64) if spec.covariates else None)
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("name", sorted(SIGNAL_MODELS))
def test_combined_kernel_matches_separate_kernels(name):
    spec = SIGNAL_MODELS[name]
    acq = np.ascontiguousarray(spec.example_acquisition(), dtype=np.float64)
    cov = np.ascontiguousarray(_covariates(spec), dtype=np.float64)
    for p in _sample_params(spec, np.random.default_rng(4), n=3):
        m = spec.n_measurements(acq)  # acquisition rows may outnumber measurements (DCE: the AIF's grid)
        out = np.empty(m)
        J = np.empty((m, spec.n_params))
        spec.signal_and_jacobian(np.ascontiguousarray(p), acq, cov, out, J)
        np.testing.assert_allclose(out, spec.evaluate(p, acq, cov), rtol=1e-12)
        np.testing.assert_allclose(J, spec.jacobian_at(p, acq, cov), rtol=1e-12, atol=1e-300)


def test_engine_fits_a_model_without_a_combined_kernel():
    """A model that declares only signal and jacobian gets a composed kernel and fits."""
    import numba as nb

    from qmri.fitting import fit_lm
    from qmri.models.base import Parameter, SignalModel

    @nb.njit
    def sig(p, acq, cov, out):
        for i in range(acq.shape[0]):
            out[i] = p[0] * np.exp(-acq[i, 0] * p[1])

    @nb.njit
    def jac(p, acq, cov, J):
        for i in range(acq.shape[0]):
            e = np.exp(-acq[i, 0] * p[1])
            J[i, 0] = e
            J[i, 1] = -acq[i, 0] * p[0] * e

    spec = SignalModel("monoexp-test", (Parameter("S0", "", 0, 10, 1), Parameter("R", "", 0, 10, 1)),
                       sig, jac, None, "acq[:, 0]: x", lambda: np.linspace(0, 3, 8)[:, None], "test")
    acq = spec.example_acquisition()
    y = spec.evaluate(np.array([[2.0, 0.7], [5.0, 1.5]]), acq)
    res = fit_lm(spec, acq, y, np.array([1.0, 1.0]))
    np.testing.assert_allclose(res.params["S0"], [2.0, 5.0], rtol=1e-7)
    np.testing.assert_allclose(res.params["R"], [0.7, 1.5], rtol=1e-7)

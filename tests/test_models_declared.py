"""Every declared signal model: analytic Jacobian matches finite differences; Numba and torch agree."""

import numpy as np
import pytest
import torch

import qmri.models  # noqa: F401  (registers every model)
from qmri.models.base import SIGNAL_MODELS


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
    rng = np.random.default_rng(1)
    for p in _sample_params(spec, rng):
        J = spec.jacobian_at(p, acq)
        Jfd = np.empty_like(J)
        for j in range(spec.n_params):
            h = 1e-6 * max(abs(p[j]), (spec.upper[j] - spec.lower[j]) * 1e-3 if np.isfinite(spec.upper[j] - spec.lower[j]) else 1.0)
            dp = np.zeros_like(p)
            dp[j] = h
            Jfd[:, j] = (spec.evaluate(p + dp, acq) - spec.evaluate(p - dp, acq)) / (2 * h)
        scale = np.maximum(np.abs(Jfd).max(axis=0), 1e-12)
        np.testing.assert_allclose(J / scale, Jfd / scale, atol=1e-5, err_msg=f"{name} at {p}")


@pytest.mark.parametrize("name", sorted(SIGNAL_MODELS))
def test_numba_and_torch_signals_agree(name):
    spec = SIGNAL_MODELS[name]
    acq = spec.example_acquisition()
    P = _sample_params(spec, np.random.default_rng(2))
    ref = spec.evaluate(P, acq)
    got = spec.torch_signal(torch.as_tensor(P, dtype=torch.float64), torch.as_tensor(acq, dtype=torch.float64))
    np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())

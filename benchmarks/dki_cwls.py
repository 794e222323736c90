"""Constrained DKI (``cwls``) on noisy phantoms: failed voxels, negative kurtosis maps, QP optimality.

Phantom: ``qmri.models.diffusion.dki.phantom.dki_phantom`` (7 tissues) with 3 b=0 + 32 directions at
b=1000 and at b=2000 s/mm², Rician noise at SNR 10, 20 and 40. For each SNR: voxels fitted, voxels
``failed`` by ``wls`` and by ``cwls``, voxels with a negative MK, AK, RK or MKT, voxels/s of
``cwls`` (warm, best of ``--repeat``), and, on a random sample of the voxels where a constraint
was active, the relative difference between qmri's WLS cost and the cost at the optimum found by
scipy's general SLSQP solver for the same constraints (the fixed 300 directions plus each voxel's
own directions). The sample check is done in the well-scaled form ``u = Lᵀ(β − β_wls)``.

Usage: ``python benchmarks/dki_cwls.py [--block 24 24 8] [--sample 50] [--repeat 2]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def qp_reference(X, y_raw, C, d, min_signal=1e-4):
    """(cost at scipy SLSQP's optimum, cost function) of the constrained WLS problem of one voxel."""
    from scipy.linalg import cholesky, solve_triangular
    from scipy.optimize import minimize

    y = np.log(np.maximum(y_raw, min_signal))
    w = np.exp(2 * X @ np.linalg.lstsq(X, y, rcond=None)[0])
    A = X.T @ (w[:, None] * X)
    b_wls = np.linalg.solve(A, X.T @ (w * y))
    L = cholesky(A / np.trace(A) * A.shape[0], lower=True)
    G, h = solve_triangular(L, C.T, lower=True).T, d - C @ b_wls
    u = minimize(lambda u: u @ u, np.zeros(X.shape[1]), jac=lambda u: 2 * u, method="SLSQP",
                 constraints=[{"type": "ineq", "fun": lambda u: G @ u - h, "jac": lambda u: G}],
                 options={"ftol": 1e-15, "maxiter": 1000}).x

    def cost(b):
        return float(np.sum(w * (X @ b - y) ** 2))

    return cost(b_wls + solve_triangular(L.T, u)), cost


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--block", type=int, nargs=3, default=(24, 24, 8))
    ap.add_argument("--sample", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    from qmri.models.diffusion.dki import DKI
    from qmri.models.diffusion.dki.constrained import constrained_fit
    from qmri.models.diffusion.dki.phantom import dki_phantom, dki_protocol

    bvals, bvecs = dki_protocol(directions_per_shell=32)
    model = DKI(bvals, bvecs)
    model.fit(dki_phantom(snr=20, block=(2, 2, 1), bvals=bvals, bvecs=bvecs).data[:1, :1, :1], method="cwls")
    print("| SNR | voxels | wls failed | cwls failed | negative MK/AK/RK/MKT | cwls voxels/s | QP sample | "
          "max rel. cost diff | max violation |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for snr in (10, 20, 40):
        ph = dki_phantom(snr=snr, seed=0, block=tuple(args.block), bvals=bvals, bvecs=bvecs)
        Y = ph.data[ph.mask]
        wls = model.fit(Y, method="wls")
        best = np.inf
        for _ in range(args.repeat):
            t = time.perf_counter()
            maps = model.fit(Y, method="cwls")
            best = min(best, time.perf_counter() - t)
        neg = int(np.sum(np.any(np.stack([maps[k] < 0 for k in ("MK", "AK", "RK", "MKT")]), axis=0)))
        beta, ok, rounds, (C, d, extra) = constrained_fit(model.X, Y, model.b_max, return_constraints=True)
        active = np.flatnonzero(rounds > 0)
        sample = np.random.default_rng(snr).choice(active, min(args.sample, active.size), replace=False)
        worst, viol = 0.0, 0.0
        for v in sample:
            Cv, dv = (np.vstack([C, extra[v][0]]), np.r_[d, extra[v][1]]) if v in extra else (C, d)
            ref, cost = qp_reference(model.X, Y[v], Cv, dv)
            worst = max(worst, abs(cost(beta[v]) - ref) / ref)
            viol = max(viol, -float(np.min(Cv @ beta[v] - dv)))
        print(f"| {snr} | {len(Y)} | {int(np.sum(wls['status'] == 2))} | {int(np.sum(maps['status'] == 2))} | {neg} | "
              f"{len(Y) / best:,.0f} | {sample.size} | {worst:.1e} | {max(viol, 0.0):.1e} |", flush=True)


if __name__ == "__main__":
    main()

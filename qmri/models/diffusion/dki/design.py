"""DKI design matrix, direction polynomials, constraint directions and signals from tensors.

Model (Jensen et al., MRM 2005;53:1432, doi:10.1002/mrm.20508; Jensen & Helpern, NMR Biomed
2010;23:698, doi:10.1002/nbm.1518)::

    log S(n, b) = log S0 − b Σ n_i n_j D_ij + b²/6 · MD² Σ n_i n_j n_k n_l W_ijkl

Internally b is in ms/µm² (b/1000) and diffusivities in µm²/ms (= 1e-3 mm²/s), which keeps the
least-squares problems well conditioned. The coefficient vector is
``β = (Dxx, Dxy, Dyy, Dxz, Dyz, Dzz, MD²W × 15, log S0)`` (tensor element order as dipy's
``lower_triangular`` and ``dki_design_matrix``).
"""

from __future__ import annotations

import numpy as np

#: Names of the 15 kurtosis-tensor elements, in dipy's order.
KT_NAMES = ("xxxx", "yyyy", "zzzz", "xxxy", "xxxz", "xyyy", "yyyz", "xzzz", "yzzz", "xxyy", "xxzz", "yyzz",
            "xxyz", "xyyz", "xyzz")
DT_NAMES = ("xx", "xy", "yy", "xz", "yz", "zz")
#: Multiplicity of each of the 15 elements in the full contraction Σ W_ijkl n_i n_j n_k n_l.
_KT_MULT = np.array([1, 1, 1, 4, 4, 4, 4, 4, 4, 6, 6, 6, 12, 12, 12], dtype=np.float64)
#: Fixed constraint directions of the ``cwls`` fit (on a half sphere; antipodes are equivalent);
#: the fit then adds, per voxel, the directions where a constraint is most violated.
N_CONSTRAINT_DIRECTIONS = 300
#: Signal-monotonicity constant of the ``cwls`` upper bound K(n) <= C / (b_max D(n)) (Tabesh 2011).
KURTOSIS_MONOTONIC_C = 3.0


def dt_row(n):
    """Monomials of D(n) = Σ D_ij n_i n_j per element (dipy order), multiplicities included: (..., 6)."""
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    return np.stack([x * x, 2 * x * y, y * y, 2 * x * z, 2 * y * z, z * z], axis=-1)


def kt_row(n):
    """Monomials of Σ W_ijkl n_i n_j n_k n_l per dipy element, multiplicities included."""
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    mono = np.stack([x ** 4, y ** 4, z ** 4, x ** 3 * y, x ** 3 * z, x * y ** 3, y ** 3 * z, x * z ** 3,
                     y * z ** 3, x * x * y * y, x * x * z * z, y * y * z * z, x * x * y * z, x * y * y * z,
                     x * y * z * z], axis=-1)
    return mono * _KT_MULT


def design_matrix(bvals, bvecs) -> np.ndarray:
    """DKI design matrix in ms/µm², shape (n, 22): ``log S = X β``.

    Parameters
    ----------
    bvals : array_like, shape (n,)
        b-values in s/mm².
    bvecs : array_like, shape (n, 3)
        Unit gradient directions as applied (every volume, low b-values included; a zero vector
        makes its row that of b = 0).

    Returns
    -------
    ndarray, shape (n, 22)
        Columns ``-b' D-monomials`` (6), ``b'²/6 · W-monomials`` (15), ``1`` (log S0), with
        ``b' = b / 1000``.
    """
    b = np.asarray(bvals, dtype=np.float64) / 1000.0
    g = np.asarray(bvecs, dtype=np.float64)
    return np.concatenate([-b[:, None] * dt_row(g), (b * b / 6.0)[:, None] * kt_row(g),
                           np.ones((b.size, 1))], axis=1)


def hemisphere(n: int) -> np.ndarray:
    """``n`` near-uniform unit vectors on the half sphere z >= 0 (Fibonacci lattice), (n, 3)."""
    k = np.arange(n) + 0.5
    z = 1.0 - k / n
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (3.0 - np.sqrt(5.0)) * k
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def constraint_matrix(b_max: float, n_dirs: int | None = None, c: float = KURTOSIS_MONOTONIC_C):
    """Linear constraints ``C β >= 0`` of the ``cwls`` fit (Tabesh et al. 2011, CLLS):

    along every one of ``n_dirs`` directions, D(n) >= 0, K(n) >= 0 and K(n) <= c / (b_max D(n))
    (the signal decreases monotonically up to ``b_max``), all linear in β since
    ``K(n) D(n)² = MD² W(n)``. ``b_max`` in s/mm².

    Returns
    -------
    C : ndarray, shape (3 n_dirs, 22)
    d : ndarray, shape (3 n_dirs,)
    """
    n_dirs = N_CONSTRAINT_DIRECTIONS if n_dirs is None else int(n_dirs)
    n = hemisphere(n_dirs)
    dt, kt = dt_row(n), kt_row(n)
    z6, z15, z1 = np.zeros((n_dirs, 6)), np.zeros((n_dirs, 15)), np.zeros((n_dirs, 1))
    bp = b_max / 1000.0
    C = np.concatenate([np.concatenate([dt, z15, z1], axis=1),
                        np.concatenate([z6, kt, z1], axis=1),
                        np.concatenate([(c / bp) * dt, -kt, z1], axis=1)], axis=0)
    return np.ascontiguousarray(C), np.zeros(3 * n_dirs)


def apparent_kurtosis(beta, directions) -> np.ndarray:
    """Apparent kurtosis K(n) = MD² W(n) / D(n)² along ``directions`` (k, 3) for coefficients
    ``beta`` (..., 22) (any units consistent with :func:`design_matrix`); returns (..., k)."""
    beta = np.asarray(beta, dtype=np.float64)
    n = np.asarray(directions, dtype=np.float64)
    dn = beta[..., :6] @ dt_row(n).T
    qn = beta[..., 6:21] @ kt_row(n).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return qn / (dn * dn)



def dki_signal(bvals, bvecs, dt, kt, S0=1.0) -> np.ndarray:
    """DKI signal for tensors ``dt`` (..., 6) in mm²/s and ``kt`` (..., 15), b in s/mm²; (..., n)."""
    dt = np.asarray(dt, dtype=np.float64)
    kt = np.asarray(kt, dtype=np.float64)
    md = (dt[..., 0] + dt[..., 2] + dt[..., 5]) / 3.0 * 1e3
    beta = np.concatenate([dt * 1e3, kt * (md * md)[..., None]], axis=-1)
    X = design_matrix(bvals, bvecs)[:, :21]
    return np.asarray(S0, dtype=np.float64)[..., None] * np.exp(beta @ X.T)


def tensors_from_compartments(fractions, evals, directions):
    """Diffusion and kurtosis tensors of a mixture of non-exchanging Gaussian compartments.

    ``D = Σ f_i D_i`` and ``W_ijkl = 3/MD² · (Σ_c f_c sym(D_c⊗D_c) − sym(D⊗D))``, with
    ``sym(A⊗A)_ijkl = (A_ij A_kl + A_ik A_jl + A_il A_jk)/3`` (Jensen et al. 2005; the same
    cumulant expansion as ``dipy.sims.voxel.multi_tensor_dki``).

    Parameters
    ----------
    fractions : array_like, shape (c,)
        Signal fractions (summing to 1).
    evals : array_like, shape (c, 3)
        Compartment eigenvalues in mm²/s (principal first).
    directions : array_like, shape (c, 3)
        Principal direction of each compartment (the other two are perpendicular; axially
        symmetric use only needs the first).

    Returns
    -------
    dt : ndarray (6,), mm²/s (xx, xy, yy, xz, yz, zz)
    kt : ndarray (15,), dipy order
    """
    f = np.asarray(fractions, dtype=np.float64)
    ev = np.asarray(evals, dtype=np.float64)
    dirs = np.asarray(directions, dtype=np.float64)
    Ds = []
    for lam, u in zip(ev, dirs):
        u = u / np.linalg.norm(u)
        a = np.array([1.0, 0, 0]) if abs(u[0]) < 0.9 else np.array([0, 1.0, 0])
        v = np.cross(u, a)
        v /= np.linalg.norm(v)
        w = np.cross(u, v)
        R = np.stack([u, v, w], axis=1)
        Ds.append(R @ np.diag(lam) @ R.T)
    Ds = np.array(Ds)
    Dm = np.einsum("c,cij->ij", f, Ds)

    def sym(A):
        return (np.einsum("ij,kl->ijkl", A, A) + np.einsum("ik,jl->ijkl", A, A) + np.einsum("il,jk->ijkl", A, A)) / 3

    md = np.trace(Dm) / 3.0
    W = 3.0 / md ** 2 * (sum(fc * sym(Dc) for fc, Dc in zip(f, Ds)) - sym(Dm))
    idx = {"x": 0, "y": 1, "z": 2}
    kt = np.array([W[tuple(idx[c] for c in name)] for name in KT_NAMES])
    dt = np.array([Dm[idx[n[0]], idx[n[1]]] for n in DT_NAMES])
    return dt, kt

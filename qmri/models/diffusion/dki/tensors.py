"""Tensor images of a DKI fit (``--tensors``), in the layout MRtrix3 reads, and the predicted signal.

Element order and units (MRtrix3 ``dwi2tensor`` and its ``-dkt`` option):

* ``DT`` (6 volumes, mm²/s): D11, D22, D33, D12, D13, D23;
* ``KT`` (15 volumes, dimensionless kurtosis tensor W): W1111, W2222, W3333, W1112, W1113, W1222,
  W1333, W2223, W2333, W1122, W1133, W2233, W1123, W1223, W1233, with W = (MD² W) / MD² and MD the
  mean of the tensor's diagonal (as ``dwi2tensor`` computes it).

Both are in scanner (world) coordinates, as MRtrix3 stores tensors: the fit's tensors, in the frame
of the FSL b-vectors (image axes, x flipped for a positive-determinant affine: FSL's convention),
are rotated by :func:`qmri.models.diffusion.acquisition.fsl_bvec_frame` (``D' = M D Mᵀ``, ``W'``
likewise on its four indices). ``eigenvalues`` (λ1 >= λ2 >= λ3, mm²/s), ``V1`` (unit principal
eigenvector) and ``colour_FA`` (FA·|V1|, RGB) stay in the b-vector frame, as FSL ``dtifit`` writes
``V1`` and dipy ``color_fa``. Internally the coefficients follow dipy's element order
(:mod:`qmri.models.diffusion.dki.design`).
"""

from __future__ import annotations

import itertools

import numpy as np

from qmri.models.diffusion.dki.design import DT_NAMES, KT_NAMES

#: MRtrix3's diffusion-tensor element order, and the dipy-order index of each.
MRTRIX_DT_NAMES = ("xx", "yy", "zz", "xy", "xz", "yz")
MRTRIX_DT = tuple(DT_NAMES.index(k) for k in MRTRIX_DT_NAMES)
#: MRtrix3's kurtosis-tensor element order (``-dkt``), and the dipy-order index of each.
MRTRIX_KT_NAMES = ("xxxx", "yyyy", "zzzz", "xxxy", "xxxz", "xyyy", "xzzz", "yyyz", "yzzz", "xxyy", "xxzz", "yyzz",
                   "xxyz", "xyyz", "xyzz")
MRTRIX_KT = tuple(KT_NAMES.index(k) for k in MRTRIX_KT_NAMES)
#: Tensor outputs and their units.
TENSOR_UNITS = {"DT": "mm2/s", "KT": "", "eigenvalues": "mm2/s", "V1": "", "colour_FA": ""}
#: Signal outputs (``--predicted``) and their units.
SIGNAL_UNITS = {"predicted": "a.u.", "residual": "a.u."}
_AXIS = {"x": 0, "y": 1, "z": 2}


def dt_matrix(dt6) -> np.ndarray:
    """(..., 3, 3) symmetric tensors from (..., 6) elements in dipy order (xx, xy, yy, xz, yz, zz)."""
    dt6 = np.asarray(dt6, dtype=np.float64)
    D = np.empty(dt6.shape[:-1] + (3, 3))
    for k, name in enumerate(DT_NAMES):
        i, j = _AXIS[name[0]], _AXIS[name[1]]
        D[..., i, j] = D[..., j, i] = dt6[..., k]
    return D


def kt_tensor(kt15) -> np.ndarray:
    """(..., 3, 3, 3, 3) fully symmetric tensors from (..., 15) elements in dipy order."""
    kt15 = np.asarray(kt15, dtype=np.float64)
    W = np.empty(kt15.shape[:-1] + (3, 3, 3, 3))
    for k, name in enumerate(KT_NAMES):
        for idx in set(itertools.permutations([_AXIS[c] for c in name])):
            W[(Ellipsis,) + idx] = kt15[..., k]
    return W


def kt_elements(W) -> np.ndarray:
    """(..., 15) elements in dipy order of fully symmetric (..., 3, 3, 3, 3) tensors."""
    return np.stack([W[(Ellipsis,) + tuple(_AXIS[c] for c in name)] for name in KT_NAMES], axis=-1)


def tensor_outputs(beta, frame=None) -> dict[str, np.ndarray]:
    """``DT``, ``KT`` (MRtrix3 order, world frame), ``eigenvalues``, ``V1``, ``colour_FA`` (b-vector frame).

    Parameters
    ----------
    beta : ndarray (n, 22)
        DKI coefficients (:func:`qmri.models.diffusion.dki.design.design_matrix` layout, µm²/ms); NaN
        rows give NaN outputs.
    frame : ndarray (3, 3), optional
        Rotation from the b-vector frame to world coordinates (default identity).

    Returns
    -------
    dict of str to ndarray (n, k)
    """
    beta = np.asarray(beta, dtype=np.float64)
    ok = np.all(np.isfinite(beta[:, :21]), axis=1)
    dt = np.where(ok[:, None], beta[:, :6], 0.0) * 1e-3  # mm²/s
    md = (dt[:, 0] + dt[:, 2] + dt[:, 5]) / 3.0
    with np.errstate(divide="ignore", invalid="ignore"):
        kt = np.where(ok[:, None], beta[:, 6:21], 0.0) * 1e-6 / (md * md)[:, None]
    D = dt_matrix(dt)
    w, V = np.linalg.eigh(D)
    w, v1 = w[:, ::-1], V[:, :, 2]
    v1 = v1 * np.where(v1[:, 2:3] < 0, -1.0, 1.0)  # a fixed sign (z >= 0); the axis is what counts
    ss = np.sum(w * w, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        fa = np.sqrt(0.5 * ((w[:, 0] - w[:, 1]) ** 2 + (w[:, 1] - w[:, 2]) ** 2 + (w[:, 2] - w[:, 0]) ** 2) / ss)
    fa = np.clip(np.where(ss > 0, fa, 0.0), 0.0, 1.0)
    if frame is not None:
        M = np.asarray(frame, dtype=np.float64)
        D = np.einsum("ia,jb,nab->nij", M, M, D)
        W = np.einsum("ia,jb,kc,ld,nabcd->nijkl", M, M, M, M, kt_tensor(kt), optimize=True)
        kt = kt_elements(W)
    dt_world = np.stack([D[:, _AXIS[k[0]], _AXIS[k[1]]] for k in MRTRIX_DT_NAMES], axis=1)
    out = {"DT": dt_world, "KT": kt[:, list(MRTRIX_KT)], "eigenvalues": w, "V1": v1,
           "colour_FA": fa[:, None] * np.abs(v1)}
    for arr in out.values():
        arr[~ok] = np.nan
    return out


def predicted_signal(beta, X, signals) -> dict[str, np.ndarray]:
    """``predicted`` = exp(X β) and ``residual`` = signals − predicted, (n, m) each (a.u.)."""
    with np.errstate(over="ignore", invalid="ignore"):
        pred = np.exp(np.asarray(beta, dtype=np.float64) @ np.asarray(X).T)
    return {"predicted": pred, "residual": np.asarray(signals, dtype=np.float64) - pred}

"""Statistics of a binary outcome model and of test-retest agreement (NumPy and SciPy only).

=====================  ===================================================================================
function               what (source)
=====================  ===================================================================================
:func:`auc`            area under the ROC curve, the Mann-Whitney statistic (ties count one half)
:func:`delong`         AUC, its variance and 95 % CI (DeLong et al., Biometrics 1988;44:837, with the fast
                       structural components of Sun & Xu, IEEE SPL 2014;21:1389); CI on the logit scale
:func:`delong_test`    two correlated AUCs on the same subjects: difference, z, two-sided p (DeLong 1988)
:func:`youden`         the threshold maximising sensitivity + specificity - 1 (Youden 1950), with both
:func:`brier`          mean squared error of the probabilities (Brier 1950)
:func:`calibration`    calibration intercept (slope fixed at 1: calibration-in-the-large) and slope of the
                       logistic recalibration ``logit P(y) = a + b logit(p)`` (Cox 1958; Van Calster et al.,
                       J Clin Epidemiol 2016;74:167)
:func:`net_benefit`    decision curve: ``TP/n - FP/n * t/(1-t)`` per threshold t (Vickers & Elkin, Med Decis
                       Making 2006;26:565), with the treat-all curve
:func:`icc`            ICC(2,1) and ICC(3,1) with 95 % CIs from the F distribution (Shrout & Fleiss 1979;
                       McGraw & Wong, Psychol Methods 1996;1:30), subjects x repeats
:func:`dice`           Dice coefficient of two boolean masks
=====================  ===================================================================================
"""

from __future__ import annotations

import numpy as np


def _binary(y) -> np.ndarray:
    y = np.asarray(y)
    return (y == 1) | (y == True)  # noqa: E712 - bools and 0/1


def _midrank(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, method="average")


def auc(y, score) -> float:
    """Area under the ROC curve of ``score`` for the binary ``y`` (NaN without both classes)."""
    y = _binary(y)
    s = np.asarray(score, dtype=np.float64)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = _midrank(s)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _structural(y, scores: np.ndarray):
    """AUCs and the DeLong covariance of the rows of ``scores`` (m, n)."""
    y = _binary(y)
    pos, neg = scores[:, y], scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    tx = np.array([_midrank(a) for a in pos])
    ty = np.array([_midrank(a) for a in neg])
    tz = np.array([_midrank(a) for a in np.concatenate([pos, neg], axis=1)])
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v01 = (tz[:, :m] - tx) / n
    v10 = 1.0 - (tz[:, m:] - ty) / m
    sx = np.atleast_2d(np.cov(v01))
    sy = np.atleast_2d(np.cov(v10))
    return aucs, sx / m + sy / n


def delong(y, score, level: float = 0.95) -> dict:
    """AUC with its DeLong standard error and CI.

    The CI is computed on the logit of the AUC (delta method) so that it stays inside (0, 1); for an
    AUC of exactly 0 or 1 it is the point itself.

    Returns
    -------
    dict
        ``auc``, ``se``, ``ci_low``, ``ci_high``, ``n_positive``, ``n_negative``.

    Raises
    ------
    ValueError
        Fewer than two subjects in a class.
    """
    from scipy.stats import norm

    y = _binary(y)
    if y.sum() < 2 or (~y).sum() < 2:
        raise ValueError("the AUC's CI needs at least two subjects of each class")
    a, cov = _structural(y, np.asarray(score, dtype=np.float64)[None, :])
    a, var = float(a[0]), float(cov[0, 0])
    se = float(np.sqrt(max(var, 0.0)))
    zq = norm.ppf(0.5 + level / 2)
    if 0 < a < 1 and se > 0:
        lg = np.log(a / (1 - a))
        half = zq * se / (a * (1 - a))
        lo, hi = 1 / (1 + np.exp(-(lg - half))), 1 / (1 + np.exp(-(lg + half)))
    else:
        lo = hi = a
    return {"auc": a, "se": se, "ci_low": float(lo), "ci_high": float(hi), "n_positive": int(y.sum()),
            "n_negative": int((~y).sum())}


def delong_test(y, score_a, score_b) -> dict:
    """DeLong's test of two correlated AUCs (two scores of the same subjects).

    Returns
    -------
    dict
        ``auc_a``, ``auc_b``, ``difference`` (a - b), ``se``, ``z``, ``p`` (two-sided).
    """
    from scipy.stats import norm

    scores = np.vstack([np.asarray(score_a, dtype=np.float64), np.asarray(score_b, dtype=np.float64)])
    aucs, cov = _structural(y, scores)
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    d = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(var, 0.0)))
    z = d / se if se > 0 else (0.0 if d == 0 else float("inf") * np.sign(d))
    return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "difference": d, "se": se, "z": float(z),
            "p": float(2 * norm.sf(abs(z)))}


def youden(y, score) -> dict:
    """Threshold maximising Youden's J = sensitivity + specificity - 1 (a subject is positive when
    its score is >= the threshold). Returns ``threshold``, ``sensitivity``, ``specificity``, ``j``."""
    y = _binary(y)
    s = np.asarray(score, dtype=np.float64)
    best = None
    for t in np.unique(s):
        pred = s >= t
        sens = float(np.mean(pred[y])) if y.any() else float("nan")
        spec = float(np.mean(~pred[~y])) if (~y).any() else float("nan")
        j = sens + spec - 1
        if best is None or j > best["j"]:
            best = {"threshold": float(t), "sensitivity": sens, "specificity": spec, "j": float(j)}
    return best


def brier(y, p) -> float:
    """Mean of ``(p - y)²``."""
    return float(np.mean((np.asarray(p, dtype=np.float64) - _binary(y)) ** 2))


def _logit(p, eps: float = 1e-6) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(p / (1 - p))


def _logistic_fit(x: np.ndarray, y: np.ndarray, offset: np.ndarray, n_iter: int = 100) -> np.ndarray:
    """Unpenalised logistic regression by Newton's method: coefficients of the columns of ``x``."""
    beta = np.zeros(x.shape[1])
    for _ in range(n_iter):
        eta = np.clip(x @ beta + offset, -500, 500)  # separated data: beta grows, exp must not overflow
        mu = 1 / (1 + np.exp(-eta))
        w = np.maximum(mu * (1 - mu), 1e-12)
        grad = x.T @ (y - mu)
        step = np.linalg.lstsq(x.T @ (x * w[:, None]), grad, rcond=None)[0]
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def calibration(y, p) -> dict:
    """Calibration intercept (calibration-in-the-large: ``a`` with the slope fixed at 1, i.e.
    ``logit(p)`` as offset) and slope ``b`` of ``logit P(y = 1) = a + b logit(p)``; ideal 0 and 1.
    Probabilities are clipped to [1e-6, 1 - 1e-6] before the logit."""
    yb = _binary(y).astype(np.float64)
    lp = _logit(p)
    ones = np.ones((lp.size, 1))
    intercept = float(_logistic_fit(ones, yb, lp)[0])
    slope = float(_logistic_fit(np.column_stack([ones[:, 0], lp]), yb, np.zeros_like(lp))[1])
    return {"intercept": intercept, "slope": slope}


def net_benefit(y, p, thresholds) -> dict:
    """Decision curve: net benefit of treating subjects with ``p >= t`` and of treating all, per
    threshold t (treating none is 0)."""
    yb = _binary(y)
    p = np.asarray(p, dtype=np.float64)
    n = yb.size
    model, treat_all = [], []
    prev = yb.mean()
    for t in thresholds:
        w = t / (1 - t)
        pos = p >= t
        model.append(float(np.sum(pos & yb) / n - np.sum(pos & ~yb) / n * w))
        treat_all.append(float(prev - (1 - prev) * w))
    return {"threshold": [float(t) for t in thresholds], "model": model, "treat_all": treat_all}


def icc(data, level: float = 0.95) -> dict:
    """Intraclass correlation of ``data`` (n subjects, k repeats) from the two-way ANOVA.

    Returns
    -------
    dict
        ``icc2_1`` (two-way random, absolute agreement, single measure) with ``icc2_1_ci``, ``icc3_1``
        (two-way mixed, consistency) with ``icc3_1_ci``, and ``n``. NaN when fewer than 3 subjects or
        the data have no variance.
    """
    from scipy.stats import f as fdist

    x = np.asarray(data, dtype=np.float64)
    x = x[np.all(np.isfinite(x), axis=1)]
    n, k = x.shape
    nan = float("nan")
    out = {"n": int(n), "icc2_1": nan, "icc2_1_ci": [nan, nan], "icc3_1": nan, "icc3_1_ci": [nan, nan]}
    if n < 3 or k < 2:
        return out
    grand = x.mean()
    ssr = k * np.sum((x.mean(axis=1) - grand) ** 2)
    ssc = n * np.sum((x.mean(axis=0) - grand) ** 2)
    sst = np.sum((x - grand) ** 2)
    sse = sst - ssr - ssc
    msr, msc = ssr / (n - 1), ssc / (k - 1)
    mse = sse / ((n - 1) * (k - 1))
    if mse <= 1e-12 * msr:  # sums of squares cancelling to rounding: repeats equal
        mse = 0.0
    if msc <= 1e-12 * msr:
        msc = 0.0
    if not (msr + (k - 1) * mse) > 0:
        return out
    alpha = 1 - level
    # ICC(3,1), consistency (Shrout & Fleiss case 3)
    icc3 = (msr - mse) / (msr + (k - 1) * mse)
    f0 = msr / mse if mse > 0 else np.inf
    df1, df2 = n - 1, (n - 1) * (k - 1)
    fl, fu = f0 / fdist.ppf(1 - alpha / 2, df1, df2), f0 * fdist.ppf(1 - alpha / 2, df2, df1)
    ci3 = [(fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1)] if np.isfinite(f0) else [1.0, 1.0]
    # ICC(2,1), absolute agreement (McGraw & Wong case 2A)
    den = msr + (k - 1) * mse + k * (msc - mse) / n
    icc2 = (msr - mse) / den if den > 0 else nan
    if mse > 0 and den > 0:
        a = k * icc2 / (n * (1 - icc2)) if icc2 < 1 else np.inf
        b = 1 + k * icc2 * (n - 1) / (n * (1 - icc2)) if icc2 < 1 else np.inf
        v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1))) \
            if np.isfinite(a) else df2
        fs, fi = fdist.ppf(1 - alpha / 2, n - 1, v), fdist.ppf(1 - alpha / 2, v, n - 1)
        lo = n * (msr - fs * mse) / (fs * (k * msc + (k * n - k - n) * mse) + n * msr)
        hi = n * (fi * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fi * msr)
        ci2 = [float(lo), float(hi)]
    elif mse == 0 and msc == 0:  # every repeat equal: perfect agreement
        ci2 = [1.0, 1.0]
    else:
        ci2 = [nan, nan]
    out.update(icc2_1=float(icc2), icc2_1_ci=ci2, icc3_1=float(icc3), icc3_1_ci=[float(c) for c in ci3])
    return out


def dice(a, b) -> float:
    """``2 |A ∩ B| / (|A| + |B|)`` of two boolean arrays (NaN when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    s = a.sum() + b.sum()
    return float(2 * np.sum(a & b) / s) if s else float("nan")

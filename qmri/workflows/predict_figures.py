"""The figures of ``qmri predict``: ROC curve, calibration plot and decision curve (PNG, atomic)."""

from __future__ import annotations

import numpy as np

from qmri import io
from qmri.outcomestats import net_benefit


def _save(fig, path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _figure(size=(4.6, 4.2)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def roc_points(y, p) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of every threshold (scikit-learn's ``roc_curve``)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(y, dtype=int), np.asarray(p, dtype=float))
    return fpr, tpr


def roc_figure(path, y, p, metrics: dict, oof=None) -> None:
    """ROC of the (repeat-averaged) probabilities, each repeat's ROC faint, the Youden point, the AUC
    and its 95 % CI in the legend."""
    fig, ax = _figure()
    if oof is not None:
        for r in oof:
            fx, tx = roc_points(y, r)
            ax.plot(fx, tx, color="0.75", lw=0.7)
    fx, tx = roc_points(y, p)
    lo, hi = metrics["auc_ci95"]
    ax.plot(fx, tx, color="C0", lw=2, label=f"AUC {metrics['auc']:.3f} (95% CI {lo:.3f}-{hi:.3f})")
    yd = metrics["youden"]
    ax.plot(1 - yd["specificity"], yd["sensitivity"], "o", color="C3",
            label=f"Youden: sens {yd['sensitivity']:.2f}, spec {yd['specificity']:.2f}")
    ax.plot([0, 1], [0, 1], ":", color="0.5")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"ROC (n = {len(y)})" + (f", {len(oof)} repeats in grey" if oof is not None else ""), fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def calibration_figure(path, y, p, metrics: dict, bins: int = 5) -> None:
    """Observed fraction of positives against the mean probability in quantile bins, the ideal line,
    calibration intercept and slope in the legend."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    fig, ax = _figure()
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    mp = [p[which == b].mean() for b in range(len(edges) - 1) if np.any(which == b)]
    oy = [y[which == b].mean() for b in range(len(edges) - 1) if np.any(which == b)]
    c = metrics["calibration"]
    ax.plot([0, 1], [0, 1], ":", color="0.5", label="ideal")
    ax.plot(mp, oy, "o-", color="C0", label=f"intercept {c['intercept']:.2f}, slope {c['slope']:.2f}")
    ax.plot(p, np.where(y > 0, 1.02, -0.02), "|", color="0.4", ms=6)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed fraction positive")
    ax.set_title(f"calibration ({len(mp)} quantile bins; Brier {metrics['brier']:.3f})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    _save(fig, path)


def decision_figure(path, y, p, thresholds) -> None:
    """Net benefit of the model, of treating all and of treating none against the threshold."""
    nb = net_benefit(y, p, thresholds)
    fig, ax = _figure()
    ax.plot(nb["threshold"], nb["model"], color="C0", lw=2, label="model")
    ax.plot(nb["threshold"], nb["treat_all"], color="C1", label="treat all")
    ax.axhline(0.0, color="0.3", lw=1, label="treat none")
    top = max(max(nb["model"]), max(nb["treat_all"]), 0.05)
    ax.set_ylim(-0.1 * top, 1.1 * top)
    ax.set_xlabel("threshold probability")
    ax.set_ylabel("net benefit")
    ax.set_title("decision curve (Vickers & Elkin 2006)", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)

"""Choosing the number of habitats: ``--k auto`` scans k = 2..8 and reports three criteria.

For each k the chosen method is fitted to the data the spatial model sees (spatially denoised voxel
features for ``mrf``, supervoxel means for ``supervoxels``, raw voxel features for ``none``), and
three criteria are computed: Calinski–Harabasz (Caliński & Harabasz, Commun Stat 1974;3:1; higher
is better), the mean silhouette on a random sample (Rousseeuw, J Comput Appl Math 1987;20:53;
higher is better) and the BIC of a full-covariance Gaussian mixture (Schwarz, Ann Stat 1978;6:461;
lower is better).

**Rule**: k is the value with the highest silhouette (ties go to the smaller k). Calinski–Harabasz
and BIC are reported beside it. Why this rule: BIC keeps falling as k grows on real feature
distributions, which are not Gaussian within a habitat (gradients, skewed fit noise), and CH favours
larger k on nearly uniform data; the silhouette measures separation against cohesion directly and
peaks at the true k of the habitat phantom once voxel noise is averaged in space (on raw noisy voxels
no criterion is reliable, which is why the criteria are computed on what the spatial model sees).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qmri.errors import QMRIInputError
from qmri.habitats.clustering import REG_COVAR, fit_mixture, subsample

#: Range of k scanned by ``--k auto``.
K_RANGE = (2, 8)
#: Rows the scan fits (random subset of the pooled samples).
SCAN_SAMPLES = 20_000
#: Rows the silhouette and the BIC mixture are computed on.
SILHOUETTE_SAMPLES = 2_000
BIC_SAMPLES = 5_000
#: Starts of each fit in the scan (the final fit of the chosen k has its own).
SCAN_RESTARTS = 2
RULE = "highest silhouette (ties: smaller k); Calinski-Harabasz and BIC reported"


@dataclass
class KScan:
    """Criteria of each k scanned and the k chosen.

    Attributes
    ----------
    rows : list of dict
        ``{"k", "calinski_harabasz", "silhouette", "bic"}`` per k.
    chosen : int
    rule : str
    """

    rows: list
    chosen: int
    rule: str = RULE

    def table(self) -> str:
        """CSV text, one row per k, with a ``chosen`` column."""
        lines = ["k,calinski_harabasz,silhouette,bic,chosen"]
        for r in self.rows:
            lines.append(f"{r['k']},{r['calinski_harabasz']:.6g},{r['silhouette']:.6g},{r['bic']:.8g},"
                         f"{int(r['k'] == self.chosen)}")
        return "\n".join(lines) + "\n"


def scan_k(samples: np.ndarray, method: str, seed: int, k_range=K_RANGE) -> KScan:
    """Fit k = k_range[0]..k_range[1] classes to ``samples`` (n, F) and choose k by :data:`RULE`.

    Raises
    ------
    QMRIInputError
        Fewer than 3 samples (no k can be judged).
    """
    from sklearn.metrics import calinski_harabasz_score, silhouette_score
    from sklearn.mixture import GaussianMixture

    x = subsample(samples, SCAN_SAMPLES, seed)
    k_hi = min(int(k_range[1]), x.shape[0] - 1)
    if x.shape[0] < 3 or k_hi < k_range[0]:
        raise QMRIInputError(f"{x.shape[0]} samples are too few to choose k (give --k N)")
    xb = subsample(x, BIC_SAMPLES, seed + 1)
    rows = []
    for k in range(int(k_range[0]), k_hi + 1):
        labels = fit_mixture(x, k, method, seed, restarts=SCAN_RESTARTS).loglik(x).argmax(axis=1)
        if np.unique(labels).size > 1:
            ch = float(calinski_harabasz_score(x, labels))
            sil = float(silhouette_score(x, labels, sample_size=min(SILHOUETTE_SAMPLES, x.shape[0]),
                                         random_state=seed))
        else:
            ch, sil = float("nan"), float("nan")
        gm = GaussianMixture(n_components=k, covariance_type="full", reg_covar=REG_COVAR, random_state=seed).fit(xb)
        rows.append({"k": k, "calinski_harabasz": ch, "silhouette": sil, "bic": float(gm.bic(xb))})
    sils = np.array([r["silhouette"] for r in rows])
    if not np.isfinite(sils).any():
        raise QMRIInputError("no k separated the data into more than one class (give --k N)")
    chosen = rows[int(np.nanargmax(sils))]["k"]
    return KScan(rows, int(chosen))

"""Population clustering of normalised features: k-means or a Gaussian mixture (scikit-learn), as a
:class:`Mixture` whose class log-likelihoods feed the spatial model.

``kmeans`` is Lloyd's k-means (k-means++ starts, 4 restarts); its classes are read as spherical
Gaussians with one shared variance (the within-cluster mean square per feature), so that nearest
centroid and highest log-likelihood agree. ``gmm`` is a full-covariance Gaussian mixture fitted by
EM (2 restarts). With the ``mrf`` spatial model the fitted mixture is then refined on the whole
cohort: each round labels every subject with the Markov random field and re-estimates the class
parameters from the pooled posteriors (the EM step of the hidden Markov random field, Zhang et al.,
IEEE TMI 2001;20:45). The refinement matters for k-means: centroids fitted to overlapping noisy
classes are pulled apart, and the spatially regularised posteriors give back the class means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qmri.errors import QMRIInputError
from qmri.habitats import spatial

METHODS = ("kmeans", "gmm")
#: Largest pooled sample (voxels or supervoxels) the initial fit sees; the refinement uses all voxels.
MAX_FIT_SAMPLES = 50_000
#: Regularisation added to the diagonal of Gaussian covariances (normalised units²).
REG_COVAR = 1e-6
#: Floor of the k-means variance (normalised units²): noise-free classes still give finite log-likelihoods.
MIN_VARIANCE = 1e-12
#: Cohort refinement rounds of the ``mrf`` spatial model.
REFINE_ROUNDS = 2
#: Voxels the refinement sees at most (whole subjects drawn at random beyond that).
MAX_REFINE_VOXELS = 200_000


@dataclass
class Mixture:
    """Fitted classes in normalised feature space.

    Attributes
    ----------
    method : {"kmeans", "gmm"}
    means : ndarray (k, F)
    variance : float
        k-means: the shared spherical variance per feature.
    covariances : ndarray (k, F, F) or None
        gmm: full covariances.
    weights : ndarray (k,) or None
        gmm: mixing weights.
    """

    method: str
    means: np.ndarray
    variance: float = 1.0
    covariances: np.ndarray | None = None
    weights: np.ndarray | None = None

    @property
    def k(self) -> int:
        return int(self.means.shape[0])

    def loglik(self, z: np.ndarray) -> np.ndarray:
        """Log-likelihood (n, k) of each row of ``z`` under each class (up to a shared constant)."""
        if self.method == "kmeans":
            d2 = ((z[:, None, :] - self.means[None, :, :]) ** 2).sum(axis=-1)
            return -d2 / (2.0 * self.variance)
        out = np.empty((z.shape[0], self.k))
        for j in range(self.k):
            chol = np.linalg.cholesky(self.covariances[j])
            y = np.linalg.solve(chol, (z - self.means[j]).T)
            out[:, j] = np.log(self.weights[j]) - np.log(np.diag(chol)).sum() - 0.5 * (y * y).sum(axis=0)
        return out

    def update(self, z: np.ndarray, q: np.ndarray) -> "Mixture":
        """Parameters re-estimated from data ``z`` (n, F) and posteriors ``q`` (n, k); a class with
        (almost) no posterior mass keeps its parameters."""
        mass = q.sum(axis=0)
        alive = mass > 1e-6 * max(z.shape[0], 1)
        means = self.means.copy()
        means[alive] = (q.T @ z)[alive] / mass[alive, None]
        if self.method == "kmeans":
            d2 = ((z[:, None, :] - means[None, :, :]) ** 2).sum(axis=-1)
            return Mixture("kmeans", means, variance=max(float((q * d2).sum() / z.size), MIN_VARIANCE))
        covs = self.covariances.copy()
        eye = np.eye(z.shape[1]) * REG_COVAR
        for j in np.flatnonzero(alive):
            r = z - means[j]
            covs[j] = (r.T * q[:, j]) @ r / mass[j] + eye
        weights = np.where(alive, mass, 0.0) + 1e-12
        return Mixture("gmm", means, covariances=covs, weights=weights / weights.sum())

    def permuted(self, order) -> "Mixture":
        """The same classes in the order ``order`` (class ``order[0]`` becomes the first)."""
        order = np.asarray(order)
        return Mixture(self.method, self.means[order], self.variance,
                       None if self.covariances is None else self.covariances[order],
                       None if self.weights is None else self.weights[order])

    def to_dict(self) -> dict:
        d = {"method": self.method, "means": self.means.tolist()}
        if self.method == "kmeans":
            d["variance"] = float(self.variance)
        else:
            d["covariances"] = self.covariances.tolist()
            d["weights"] = self.weights.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Mixture":
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        QMRIInputError
            Unknown method, inconsistent shapes, non-finite values, a variance that is not
            positive, a covariance that is not symmetric positive definite, weights that are not
            positive or do not sum to 1.
        """
        try:
            method = d["method"]
            means = np.asarray(d["means"], dtype=np.float64)
            if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
                raise ValueError("the means must be a k x F table")
            if method == "kmeans":
                mix = cls(method, means, variance=float(d["variance"]))
            elif method == "gmm":
                mix = cls(method, means, covariances=np.asarray(d["covariances"], dtype=np.float64),
                          weights=np.asarray(d["weights"], dtype=np.float64))
                if mix.covariances.shape != (mix.k, means.shape[1], means.shape[1]) or mix.weights.shape != (mix.k,):
                    raise ValueError("covariance or weight shapes do not match the means")
            else:
                raise ValueError(f"unknown method {method!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise QMRIInputError(f"habitat model classes are not readable ({exc})") from None
        if not np.all(np.isfinite(means)):
            raise QMRIInputError("habitat model class means must be finite numbers")
        if method == "kmeans" and not (np.isfinite(mix.variance) and mix.variance > 0):
            raise QMRIInputError(f"habitat model variance must be a positive number, got {mix.variance:g}")
        if method == "gmm":
            w = mix.weights
            if not (np.all(np.isfinite(w)) and np.all(w > 0) and abs(w.sum() - 1.0) < 1e-6):
                raise QMRIInputError("habitat model class weights must be positive and sum to 1")
            for j, cov in enumerate(mix.covariances):
                if not (np.all(np.isfinite(cov)) and np.allclose(cov, cov.T, rtol=1e-9, atol=0.0)):
                    raise QMRIInputError(f"habitat model covariance of class {j + 1} is not a symmetric matrix "
                                         "of finite numbers")
                try:
                    np.linalg.cholesky(cov)
                except np.linalg.LinAlgError:
                    raise QMRIInputError(f"habitat model covariance of class {j + 1} is not positive "
                                         "definite") from None
        return mix


def fit_mixture(samples: np.ndarray, k: int, method: str, seed: int, restarts: int | None = None) -> Mixture:
    """Fit ``k`` classes to ``samples`` (n, F) with scikit-learn (a random subset of at most
    :data:`MAX_FIT_SAMPLES` rows, drawn with ``seed``); ``restarts`` overrides the number of starts
    (default 4 for k-means, 2 for the mixture).

    Raises
    ------
    QMRIInputError
        Unknown method, fewer samples than k.
    """
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture

    if method not in METHODS:
        raise QMRIInputError(f"unknown clustering method {method!r}; choose one of {', '.join(METHODS)}")
    x = subsample(samples, MAX_FIT_SAMPLES, seed)
    if x.shape[0] < k:
        raise QMRIInputError(f"{x.shape[0]} samples to cluster, fewer than k = {k}")
    if method == "kmeans":
        km = KMeans(n_clusters=k, n_init=restarts or 4, random_state=seed).fit(x)
        return Mixture("kmeans", km.cluster_centers_.astype(np.float64),
                       variance=max(float(km.inertia_) / x.size, MIN_VARIANCE))
    gm = GaussianMixture(n_components=k, covariance_type="full", n_init=restarts or 2, reg_covar=REG_COVAR,
                         random_state=seed).fit(x)
    return Mixture("gmm", gm.means_.copy(), covariances=gm.covariances_.copy(), weights=gm.weights_.copy())


def subsample(x: np.ndarray, n_max: int, seed: int) -> np.ndarray:
    """At most ``n_max`` rows of ``x``, drawn without replacement (all rows, in order, if fewer)."""
    if x.shape[0] <= n_max:
        return x
    idx = np.sort(np.random.default_rng(seed).choice(x.shape[0], n_max, replace=False))
    return x[idx]


def refine(mixture: Mixture, zs, graphs, beta: float, seed: int = 0, rounds: int = REFINE_ROUNDS) -> Mixture:
    """Cohort refinement of ``mixture`` under the MRF: ``rounds`` × (label the subjects, re-estimate the
    classes from the pooled posteriors). Cohorts of more than :data:`MAX_REFINE_VOXELS` voxels are
    refined on a random subset of whole subjects (drawn with ``seed``) holding about that many."""
    keep = np.arange(len(zs))
    sizes = np.array([z.shape[0] for z in zs])
    if sizes.sum() > MAX_REFINE_VOXELS:
        keep = np.random.default_rng(seed).permutation(len(zs))
        keep = np.sort(keep[: max(1, int(np.searchsorted(np.cumsum(sizes[keep]), MAX_REFINE_VOXELS)))])
    zs, graphs = [zs[i] for i in keep], [graphs[i] for i in keep]
    pooled = np.concatenate(zs)
    for _ in range(int(rounds)):
        q = np.concatenate([spatial.mean_field(mixture.loglik(z), g, beta) for z, g in zip(zs, graphs)])
        mixture = mixture.update(pooled, q)
    return mixture

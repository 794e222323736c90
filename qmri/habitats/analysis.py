"""Habitat analysis on features already read: fit a cohort model (or take a saved one), label every
subject, compute its statistics.

The default settings are spatially aware and untuned: per-subject z-scores, k-means, a Potts Markov
random field over the 26-neighbourhood (β = 0.5 per nearest neighbour) with two rounds of cohort
refinement, k chosen by the silhouette over k = 2..8, habitats numbered by ascending first feature.
These values (β, the neighbourhood, the refinement rounds, the k rule) were chosen while developing on
the habitat phantom (:mod:`qmri.habitats.phantom`, seed 0, 6,000-voxel tumours) and then held fixed
for other seeds, tumour sizes and cohorts; nothing is tuned per data set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from qmri.errors import QMRIInputError
from qmri.habitats import spatial
from qmri.habitats.choose_k import K_RANGE, scan_k
from qmri.habitats.clustering import METHODS, fit_mixture, refine
from qmri.habitats.features import check_same_features
from qmri.habitats.model import HabitatModel, spatial_context
from qmri.habitats.normalise import NORMALISATIONS, normalise, population_statistics
from qmri.habitats.ordering import habitat_order
from qmri.habitats.statistics import habitat_statistics
from qmri.options import Option, integer, random_seed, resolve


def k_value(text):
    """``--k``: ``auto`` or an integer >= 2."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return "auto"
    k = integer(text)
    if k < 2:
        raise QMRIInputError(f"k must be at least 2 (or auto), got {k}")
    return k


#: Clustering settings, shared by Python keywords and ``qmri habitat`` flags.
OPTIONS = (
    Option("k", f"number of habitats, or auto: scan k = {K_RANGE[0]}..{K_RANGE[1]}, choose by the silhouette "
                "(default auto)", k_value, "auto", metavar="auto|N"),
    Option("method", "kmeans (default) or gmm (full-covariance Gaussian mixture)", str, "kmeans", choices=METHODS),
    Option("normalise", "none, zscore (per subject, default), robust (per subject median/IQR) or population "
                        "(cohort z-score, saved with the model)", str, "zscore", choices=NORMALISATIONS),
    Option("spatial", "mrf (default: Potts Markov random field on the voxel labels), supervoxels (two-level: SLIC "
                      "supervoxels per subject, then population clustering of their means) or none (voxel-wise)",
           str, "mrf", choices=spatial.SPATIAL),
    Option("beta", "MRF coupling per nearest neighbour (default 0.5)", float, 0.5),
    Option("supervoxel_size", "voxels per SLIC supervoxel (default 50)", int, 50),
    Option("compactness", "SLIC compactness on normalised features (default 10)", float, 10.0),
    Option("order_by", "feature whose ascending class mean numbers the habitats (default the first map)", str, None,
           metavar="FEATURE"),
    Option("seed", "random seed of the clustering (default 0)", random_seed, 0),
)


@dataclass
class SubjectResult:
    """One subject's habitats: the map (uint8, its ROI grid), the statistics, the subject."""

    subject: object
    labels: np.ndarray
    stats: dict


@dataclass
class HabitatResult:
    """What :func:`analyse` returns: the model used and each subject's result."""

    model: HabitatModel
    subjects: list = field(default_factory=list)
    fitted: bool = True


def resolve_settings(given: dict) -> dict:
    """Every setting's value (defaults for those not given), checked.

    Raises
    ------
    QMRIInputError
        An unknown setting or a bad value.
    """
    s = resolve(OPTIONS, given, "habitat analysis")
    if not 0 <= s["beta"] < math.inf:
        raise QMRIInputError(f"--beta must be a finite number >= 0, got {s['beta']}")
    if s["supervoxel_size"] < 1 or not 0 < s["compactness"] < math.inf:
        raise QMRIInputError("--supervoxel-size must be >= 1 and --compactness a finite number > 0")
    return s


def fit_model(subjects, settings: dict) -> tuple[HabitatModel, list, list]:
    """Fit a cohort model to ``subjects`` (a list of :class:`~qmri.habitats.features.SubjectFeatures`).

    Returns ``(model, normalised features, spatial contexts)`` (the last two per subject, for labelling).

    Raises
    ------
    QMRIInputError
        Subjects with different features, an ``order_by`` that is not a feature, fewer usable voxels
        than k in a subject, too few samples.
    """
    check_same_features(subjects)
    names, units = subjects[0].names, subjects[0].units
    s = dict(settings)
    s["order_by"] = s["order_by"] or names[0]
    habitat_order(np.zeros((1, len(names))), names, s["order_by"])  # checks the name before any work
    population = population_statistics([x.values for x in subjects]) if s["normalise"] == "population" else None
    zs = [normalise(x.values, s["normalise"], names, population=population, who=x.id) for x in subjects]
    contexts = [spatial_context(s, x, z) for x, z in zip(subjects, zs)]
    if s["spatial"] == "supervoxels":
        samples = np.concatenate([spatial.segment_means(z, c) for z, c in zip(zs, contexts)])
        scan_samples = samples
    else:
        samples = np.concatenate(zs)
        scan_samples = samples if s["spatial"] == "none" else \
            np.concatenate([spatial.denoised(z, c) for z, c in zip(zs, contexts)])
    scan = None
    k = s["k"]
    if k == "auto":
        scan = scan_k(scan_samples, s["method"], s["seed"])
        k = scan.chosen
    for x in subjects:
        if x.values.shape[0] < k:
            raise QMRIInputError(f"subject {x.id}: the ROI has {x.values.shape[0]} usable voxels, fewer than k = {k}")
    mixture = fit_mixture(samples, k, s["method"], s["seed"])
    if s["spatial"] == "mrf":
        mixture = refine(mixture, zs, contexts, s["beta"], s["seed"])
    mixture = mixture.permuted(habitat_order(mixture.means, names, s["order_by"]))
    s["k"] = k
    model = HabitatModel(names, units, s, mixture, population=population,
                         k_selection=None if scan is None else {"rows": scan.rows, "chosen": scan.chosen,
                                                                "rule": scan.rule},
                         training={"subjects": [x.id for x in subjects],
                                   "voxels": int(sum(x.values.shape[0] for x in subjects))})
    return model, zs, contexts


def analyse(subjects, *, model: HabitatModel | None = None, statistics: bool = True, **settings) -> HabitatResult:
    """Habitats of every subject: fit a cohort model (or use ``model``), label, compute statistics.

    Parameters
    ----------
    subjects : list of SubjectFeatures
        Features on each subject's ROI grid (:func:`qmri.habitats.features.load_subject`,
        :func:`qmri.habitats.features.from_arrays`).
    model : HabitatModel, optional
        A saved cohort model to apply (then no setting may be given: the model fixes them).
    statistics : bool
        Compute each subject's habitat statistics (default; False leaves ``stats`` empty, for callers
        that only need the labels).
    **settings
        :data:`OPTIONS` (``k``, ``method``, ``normalise``, ``spatial``, ``beta``...).

    Returns
    -------
    HabitatResult

    Raises
    ------
    QMRIInputError
        Settings given with a model; features that differ between subjects or from the model; an
        empty subject list; fewer usable voxels than k; bad settings.
    """
    from threadpoolctl import threadpool_limits

    subjects = list(subjects)
    if not subjects:
        raise QMRIInputError("no subjects to analyse")
    # the linear algebra here is on tiny matrices (F features): one BLAS/OpenMP thread is as fast and
    # does not collapse when the cores are shared (measured: 4x slower with 2 threads under load)
    with threadpool_limits(limits=1):
        return _analyse(subjects, model, settings, statistics)


def _analyse(subjects, model, settings, statistics=True) -> HabitatResult:
    if model is not None:
        if settings:
            raise QMRIInputError(f"a saved model fixes the settings; drop {', '.join('--' + k.replace('_', '-') for k in settings)}")
        for x in subjects:
            model.check(x.names, x.units, f"subject {x.id}")
        zs = [model.normalised(x) for x in subjects]
        contexts = [None] * len(subjects)
        fitted = False
    else:
        model, zs, contexts = fit_model(subjects, resolve_settings(settings))
        fitted = True
    out = HabitatResult(model, fitted=fitted)
    for x, z, c in zip(subjects, zs, contexts):
        labels = model.label(x, z=z, context=c)
        stats = habitat_statistics(labels, x.values, x.usable, x.names, x.units, model.k, x.voxel_ml) \
            if statistics else {}
        out.subjects.append(SubjectResult(x, labels, stats))
    return out

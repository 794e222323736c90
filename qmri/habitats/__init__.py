"""Habitat analysis: cluster the voxels of a tumour ROI in the joint space of several parameter maps
into sub-regions (habitats) numbered the same way in every subject.

The analysis reads only maps and I/O (:mod:`qmri.io`, :meth:`qmri.maps.ParameterMaps.load`), never the
models or the fitting code; only the habitat phantom (``phantom``) simulates its series with the model
declarations (both checked by the import contracts of ``pyproject.toml``).

================  ==========================================================================================
module            holds
================  ==========================================================================================
``features``      maps (NIfTI or qmri output folders) read onto the ROI's grid, resampling, cohort tables
``normalise``     none / per-subject z-score / per-subject robust / population z-score
``spatial``       the ROI neighbour graph, the Potts Markov random field (default), SLIC supervoxels
``clustering``    k-means and Gaussian mixtures (scikit-learn) as class log-likelihoods; cohort refinement
``choose_k``      ``--k auto``: Calinski-Harabasz, silhouette and BIC over k = 2..8, and the rule
``ordering``      habitat numbering by a declared feature (default the first, ascending)
``statistics``    fractions, volumes (mL), per-habitat feature statistics, components, entropy, adjacency
``model``         :class:`HabitatModel`: the cohort model, its labelling routine, save / load (JSON)
``analysis``      :func:`analyse`: settings, fit, label, statistics on features already read
``files``         :func:`habitats_from_files`: what ``qmri habitat`` does (files to files)
``figures``       the per-subject PNG (overlay on slices, feature-space scatter)
``radiomics``     a subject's habitat features for outcome models (MSI, components, ITH, first-order, GLCM)
``stability``     ``--stability``: feature ICCs and habitat Dice between repeat scans
``phantom``       the habitat phantom (tumours with known sub-regions; repeat scans; an outcome)
================  ==========================================================================================

Example
-------
Three tissues of known diffusion and perfusion in a 12 x 4 x 2 ROI; the habitats are numbered by the
first feature, ascending (``D``), so they are the tissues in that order:

>>> import numpy as np
>>> from qmri.habitats import analyse, from_arrays
>>> rng = np.random.default_rng(0)
>>> tissue = np.repeat([1, 2, 3], 4)[:, None, None] * np.ones((12, 4, 2), int)
>>> D = np.choose(tissue - 1, [0.6e-3, 1.2e-3, 2.0e-3]) + rng.normal(0, 2e-5, tissue.shape)  # mm2/s
>>> ktrans = np.choose(tissue - 1, [0.3, 0.1, 0.05]) + rng.normal(0, 0.005, tissue.shape)  # 1/min
>>> subject = from_arrays("s1", {"D": D, "Ktrans": ktrans}, np.ones(tissue.shape, bool))
>>> result = analyse([subject], k=3)                    # default: zscore, kmeans, mrf
>>> labels = result.subjects[0].labels                  # uint8 map, 1..3 inside the ROI
>>> labels.dtype, np.unique(labels).tolist(), bool((labels == tissue).all())
(dtype('uint8'), [1, 2, 3], True)
"""

from qmri.habitats.analysis import OPTIONS, HabitatResult, analyse
from qmri.habitats.features import from_arrays, load_subject
from qmri.habitats.files import habitats_from_files
from qmri.habitats.model import HabitatModel

__all__ = ["OPTIONS", "HabitatModel", "HabitatResult", "analyse", "from_arrays", "habitats_from_files",
           "load_subject"]

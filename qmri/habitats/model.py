"""The cohort model: what labels a subject, saved as JSON and reused for new subjects.

A :class:`HabitatModel` holds the feature names and units it was fitted on, the settings
(normalisation, method, spatial model and its parameters, label order, seed), the cohort
normalisation statistics (``population`` normalisation), the classes in habitat order and how k was
chosen. :meth:`HabitatModel.label` is the one labelling routine: the cohort run labels its own
subjects with it, so a saved model labels a subject exactly as the run that fitted it did.
Applying a model to maps whose feature names or units differ is refused.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from qmri import __version__
from qmri.errors import QMRIInputError
from qmri.habitats import spatial
from qmri.habitats.clustering import Mixture
from qmri.habitats.features import describe_features
from qmri.habitats.normalise import normalise
from qmri.resultset import ResultSet

#: Format version of the model file.
MODEL_FORMAT = 1


def spatial_context(settings: dict, subject, z: np.ndarray):
    """What the spatial model of ``settings`` needs for ``subject`` (normalised features ``z``): its
    neighbour graph (``mrf``), its supervoxels (``supervoxels``) or None (``none``)."""
    if settings["spatial"] == "mrf":
        return spatial.neighbour_graph(subject.usable, subject.voxel_mm)
    if settings["spatial"] == "supervoxels":
        return spatial.supervoxels(z, subject.usable, subject.voxel_mm, size=settings["supervoxel_size"],
                                   compactness=settings["compactness"])
    return None


def _checked_settings(model: "HabitatModel", path) -> dict:
    """The settings of a model read from ``path``, checked as ``qmri habitat`` checks its flags."""
    from qmri.habitats.analysis import OPTIONS, resolve_settings
    from qmri.habitats.ordering import habitat_order

    names, units, s = model.names, model.units, model.settings
    if not all(isinstance(v, str) for v in names + units) or len(units) != len(names) or len(set(names)) != len(names):
        raise QMRIInputError(f"{path}: Features and Units must be lists of as many names, the features distinct")
    missing = [o.name for o in OPTIONS if o.name not in s]
    if missing:
        raise QMRIInputError(f"{path}: Settings: {missing[0]!r} missing")
    try:
        # as text, the values take the flags' path: converted by the option's type, then checked
        s = resolve_settings({k: v if isinstance(v, str) else repr(v) for k, v in s.items()})
        habitat_order(model.mixture.means, names, s["order_by"])
    except QMRIInputError as exc:
        raise QMRIInputError(f"{path}: Settings: {exc}") from None
    if s["k"] != model.k:
        raise QMRIInputError(f"{path}: Settings: k = {s['k']} but Classes hold {model.k} classes")
    if s["method"] != model.mixture.method:
        raise QMRIInputError(f"{path}: Settings: method {s['method']} but Classes are {model.mixture.method}")
    if s["normalise"] == "population":
        pop = model.population
        try:
            mean, sd = (np.asarray(pop[key], dtype=np.float64) for key in ("mean", "sd"))
            ok = mean.shape == sd.shape == (len(names),) and np.all(np.isfinite(mean)) and np.all(sd > 0)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise QMRIInputError(f"{path}: PopulationStatistics must hold 'mean' and 'sd' (> 0) of each feature "
                                 "(population normalisation)")
    return s


@dataclass
class HabitatModel:
    """A fitted habitat model.

    Attributes
    ----------
    names, units : list of str
        Features (in column order) and their units.
    settings : dict
        ``method``, ``normalise``, ``spatial``, ``beta``, ``supervoxel_size``, ``compactness``,
        ``order_by``, ``seed``.
    mixture : Mixture
        The classes, habitat 1 first.
    population : dict or None
        Cohort ``mean`` and ``sd`` of each feature (``population`` normalisation).
    k_selection : dict or None
        The ``--k auto`` scan (rows, chosen, rule).
    training : dict
        Subjects and voxels the model was fitted on.
    """

    names: list
    units: list
    settings: dict
    mixture: Mixture
    population: dict | None = None
    k_selection: dict | None = None
    training: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return self.mixture.k

    # Use ------------------------------------------------------------------------------------
    def check(self, names, units, where: str = "maps") -> None:
        """Refuse features whose names or units differ from the model's.

        Raises
        ------
        QMRIInputError
            Different names (or order) or units.
        """
        if list(names) != list(self.names) or list(units) != list(self.units):
            raise QMRIInputError(f"{where}: features {describe_features(names, units)} differ from the model's "
                                 f"{describe_features(self.names, self.units)} (names, order and units must match)")

    def normalised(self, subject) -> np.ndarray:
        """The subject's features normalised as the model says."""
        return normalise(subject.values, self.settings["normalise"], self.names, population=self.population,
                         who=subject.id)

    def label(self, subject, *, z: np.ndarray | None = None, context=None) -> np.ndarray:
        """Habitat map of ``subject`` (uint8, shape of its ROI grid): 0 outside the usable ROI voxels,
        1..k inside.

        Parameters
        ----------
        subject : qmri.habitats.features.SubjectFeatures
        z, context : optional
            The normalised features and spatial context, when already computed.

        Raises
        ------
        QMRIInputError
            Feature names or units differ from the model's; fewer usable voxels than k.
        """
        self.check(subject.names, subject.units, f"subject {subject.id}")
        n = subject.values.shape[0]
        if n < self.k:
            raise QMRIInputError(f"subject {subject.id}: the ROI has {n} usable voxels, fewer than k = {self.k}")
        z = self.normalised(subject) if z is None else z
        if context is None:
            context = spatial_context(self.settings, subject, z)
        s = self.settings
        if s["spatial"] == "supervoxels":
            lab = self.mixture.loglik(spatial.segment_means(z, context)).argmax(axis=1)[context]
        elif s["spatial"] == "mrf":
            lab = spatial.mean_field(self.mixture.loglik(z), context, s["beta"]).argmax(axis=1)
        else:
            lab = self.mixture.loglik(z).argmax(axis=1)
        out = np.zeros(subject.usable.shape, dtype=np.uint8)
        out[subject.usable] = lab + 1
        return out

    # Files ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"QmriHabitatModel": MODEL_FORMAT, "QmriVersion": __version__,
                "Created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "Features": list(self.names), "Units": list(self.units), "Settings": dict(self.settings),
                "PopulationStatistics": self.population, "Classes": self.mixture.to_dict(),
                "KSelection": self.k_selection, "Training": self.training,
                "Labels": f"habitat 1..{self.k} in ascending order of the class mean of "
                          f"{self.settings['order_by']}"}

    def save(self, path, *, force: bool = False) -> Path:
        """Write the model as JSON (atomic).

        Raises
        ------
        OutputExistsError
            The file exists and ``force`` is False.
        """
        from qmri import io

        path = Path(path)
        with ResultSet(path.parent, [path.name], force=force) as rs:
            io.write_json(rs.path(path.name), self.to_dict())
        return path

    @classmethod
    def load(cls, path) -> "HabitatModel":
        """Read a model written by :meth:`save`.

        The settings pass the checks of the ``qmri habitat`` flags
        (:func:`qmri.habitats.analysis.resolve_settings`, each value converted from its text as a
        flag's would be), the classes those of :meth:`Mixture.from_dict
        <qmri.habitats.clustering.Mixture.from_dict>`.

        Raises
        ------
        QMRIInputError
            Missing file, not JSON, not a qmri habitat model or of another format version; a
            missing or bad setting (as the flag would be refused), classes that are not a valid
            mixture, features, units or population statistics that do not match the classes (one
            line naming the file).
        """
        path = Path(path)
        if not path.is_file():
            raise QMRIInputError(f"{path}: habitat model file not found")
        from qmri import io

        d = io.read_json(path, "habitat model")
        return cls.from_dict(d, str(path))

    @classmethod
    def from_dict(cls, d, where: str = "habitat model") -> "HabitatModel":
        """The model of a :meth:`to_dict` record (as read from JSON).

        Raises
        ------
        QMRIInputError
            Not a qmri habitat model, another format version, incomplete or inconsistent.
        """
        path = where
        if not isinstance(d, dict) or d.get("QmriHabitatModel") != MODEL_FORMAT:
            raise QMRIInputError(f"{path}: not a qmri habitat model (format {MODEL_FORMAT})")
        try:
            mixture = Mixture.from_dict(d["Classes"])
            model = cls(names=list(d["Features"]), units=list(d["Units"]), settings=dict(d["Settings"]),
                        mixture=mixture, population=d.get("PopulationStatistics"),
                        k_selection=d.get("KSelection"), training=d.get("Training") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise QMRIInputError(f"{path}: habitat model is incomplete ({exc})") from None
        except QMRIInputError as exc:
            raise QMRIInputError(f"{path}: {exc}") from None
        if mixture.means.shape[1] != len(model.names):
            raise QMRIInputError(f"{path}: {mixture.means.shape[1]} feature columns for {len(model.names)} features")
        model.settings = _checked_settings(model, path)
        return model

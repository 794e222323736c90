"""The saved outcome model: a JSON file of numbers and names (no pickle, nothing executable), with
its contract, and the routine that applies it.

Only linear classifiers are saved (``lasso``, ``logistic``): their whole fitted pipeline is data (the
imputation medians, the standardisation means and scales, the columns kept by the variance filter
and the selection, the coefficients and the intercept), so the file is read with :func:`json.loads`
and applied with NumPy; no class is named by the file and no code is loaded from it. Forests,
boosting and kernel SVMs are cross-validated but not saved (storing them as data would need a
format that rebuilds scikit-learn objects, such as ``skops`` with its trusted-type list).

The contract (what a new cohort must match, else the model is refused): the input form
(``habitats``: a cohort of maps labelled by the embedded habitat model; ``table``: a feature table),
the features the pipeline reads with their units, the embedded habitat model (its map names and
units are checked by :meth:`qmri.habitats.model.HabitatModel.check`), the habitat-feature definition
version (:data:`qmri.habitats.radiomics.FEATURES_VERSION`) and the qmri version that wrote it
(major.minor must match).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qmri import __version__, io
from qmri.errors import QMRIInputError
from qmri.habitats.model import HabitatModel
from qmri.habitats.radiomics import FEATURES_VERSION
from qmri.io import json_text
from qmri.resultset import ResultSet

MODEL_FORMAT = 1
SAVED_CLASSIFIERS = ("lasso", "logistic")


def _minor(version: str) -> str:
    return ".".join(str(version).split(".")[:2])


@dataclass
class OutcomeModel:
    """A fitted outcome pipeline as data.

    Attributes
    ----------
    features, units : list of str
        Columns the pipeline reads (in order) and their units (``"1"`` for dimensionless).
    impute, mean, scale : ndarray (F,)
        Median per column (fills NaN), standardisation.
    keep : ndarray of bool (F,)
        Columns kept by the variance filter and the selection.
    coef : ndarray (sum(keep),), intercept : float
        ``P(positive) = 1 / (1 + exp(-(coef · z + intercept)))``.
    contract : dict
        ``Input``, ``Features``, ``Units``, ``HabitatModel`` (dict or None), ``HabitatModelSha256``,
        ``FeaturesVersion``, ``QmriVersion``.
    info : dict
        Classifier, hyper-parameters, outcome labels, cross-validated metrics, threshold.
    """

    features: list
    units: list
    impute: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    keep: np.ndarray
    coef: np.ndarray
    intercept: float
    contract: dict
    info: dict

    # Building ---------------------------------------------------------------------------------
    @classmethod
    def from_pipeline(cls, pipe, features, units, *, classifier: str, habitat_model=None, info=None):
        """From a fitted :func:`qmri.workflows.predict.make_pipeline` pipeline.

        Raises
        ------
        QMRIInputError
            A classifier that is not saved (:data:`SAVED_CLASSIFIERS`) or a harmonised pipeline.
        """
        if classifier not in SAVED_CLASSIFIERS:
            raise QMRIInputError(f"only linear classifiers ({', '.join(SAVED_CLASSIFIERS)}) are saved as data; "
                                 f"--classifier {classifier} is cross-validated but not saved")
        if "harmonise" in pipe.named_steps:
            raise QMRIInputError("a model harmonised with --site is cross-validated but not saved")
        s = pipe.named_steps
        keep = s["variance"].get_support().copy()
        keep[keep] = s["select"].get_support()

        # as it reads back from the file (NumPy values, NaN as null), so its checksum holds on reading
        hm = None if habitat_model is None else json.loads(json_text(habitat_model.to_dict()))
        contract = {"Input": "table" if hm is None else "habitats", "Features": list(features),
                    "Units": [u or "1" for u in units], "HabitatModel": hm,
                    "HabitatModelSha256": None if hm is None else _sha(hm), "FeaturesVersion": FEATURES_VERSION,
                    "QmriVersion": __version__}
        return cls(list(features), [u or "1" for u in units], s["impute"].statistics_.astype(float),
                   s["scale"].mean_.astype(float), s["scale"].scale_.astype(float), keep,
                   s["model"].coef_[0].astype(float), float(s["model"].intercept_[0]), contract, dict(info or {}))

    # Use --------------------------------------------------------------------------------------
    def probability(self, X) -> np.ndarray:
        """``P(positive)`` per row of ``X`` (n, F) in :attr:`features` order (NaN filled with the medians)."""
        X = np.asarray(X, dtype=np.float64)
        X = np.where(np.isfinite(X), X, self.impute[None, :])
        z = (X - self.mean) / self.scale
        eta = z[:, self.keep] @ self.coef + self.intercept
        return 1 / (1 + np.exp(-eta))

    def habitat_model(self):
        """The embedded :class:`~qmri.habitats.model.HabitatModel` (None for a table model)."""
        hm = self.contract.get("HabitatModel")
        return None if hm is None else HabitatModel.from_dict(hm, "embedded habitat model")

    def check_table(self, names, units, where: str) -> None:
        """Refuse a feature table that lacks a column of the contract or has another unit.

        Raises
        ------
        QMRIInputError
        """
        have = dict(zip(names, [u or "1" for u in units]))
        missing = [f for f in self.features if f not in have]
        if missing:
            raise QMRIInputError(f"{where}: lacks the model's feature(s) {', '.join(missing[:5])}"
                                 + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        bad = [f"{f} ({have[f]}, model {u})" for f, u in zip(self.features, self.units)
               if have[f] not in (u, "") and u != "1"]
        bad += [f"{f} ({have[f]}, model {u})" for f, u in zip(self.features, self.units)
                if u == "1" and have[f] not in ("1", "")]
        if bad:
            raise QMRIInputError(f"{where}: feature units differ from the model's: {', '.join(bad[:5])}")

    # Files ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"QmriOutcomeModel": MODEL_FORMAT, "QmriVersion": __version__,
                "Created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "Contract": self.contract,
                "Pipeline": {"Impute": self.impute.tolist(), "Mean": self.mean.tolist(), "Scale": self.scale.tolist(),
                             "Keep": self.keep.astype(int).tolist(), "Coefficients": self.coef.tolist(),
                             "Intercept": self.intercept,
                             "Probability": "1 / (1 + exp(-(Coefficients . z[Keep] + Intercept))), "
                                            "z = (x - Mean) / Scale, NaN in x replaced by Impute"},
                "Info": self.info}

    def save(self, path, *, force: bool = False) -> Path:
        path = Path(path)
        with ResultSet(path.parent, [path.name], force=force) as rs:
            io.write_json(rs.path(path.name), self.to_dict())
        return path

    @classmethod
    def load(cls, path) -> "OutcomeModel":
        """Read a saved model (JSON only; every array checked to be numbers of the right length).

        Raises
        ------
        QMRIInputError
            Missing file, not JSON (a pickle, say), not a qmri outcome model, another format or qmri
            version, another habitat-feature definition, arrays of the wrong type or length.
        """
        path = Path(path)
        if not path.is_file():
            raise QMRIInputError(f"{path}: outcome model file not found")
        try:
            d = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise QMRIInputError(f"{path}: not a qmri outcome model (not JSON: {str(exc).splitlines()[0][:80]})") \
                from None
        if not isinstance(d, dict) or d.get("QmriOutcomeModel") != MODEL_FORMAT:
            raise QMRIInputError(f"{path}: not a qmri outcome model (format {MODEL_FORMAT})")
        try:
            c, p = d["Contract"], d["Pipeline"]
            features, units = [str(f) for f in c["Features"]], [str(u) for u in c["Units"]]
            n = len(features)
            arrays = {k: _numbers(p[k], n, k) for k in ("Impute", "Mean", "Scale", "Keep")}
            keep = arrays["Keep"] != 0
            coef = _numbers(p["Coefficients"], int(keep.sum()), "Coefficients")
            intercept = float(p["Intercept"])
            info = d.get("Info") or {}
            if not isinstance(info, dict) or not isinstance(c, dict) or len(units) != n:
                raise TypeError("Info, Contract or Units malformed")
        except (KeyError, TypeError, ValueError) as exc:
            raise QMRIInputError(f"{path}: outcome model is incomplete or malformed ({exc})") from None
        if c.get("FeaturesVersion") != FEATURES_VERSION:
            raise QMRIInputError(f"{path}: habitat features of definition version {c.get('FeaturesVersion')}, this "
                                 f"qmri computes version {FEATURES_VERSION}; refit the model")
        if _minor(c.get("QmriVersion", "")) != _minor(__version__):
            raise QMRIInputError(f"{path}: written by qmri {c.get('QmriVersion')}, this is qmri {__version__} "
                                 "(major.minor must match); refit the model")
        hm = c.get("HabitatModel")
        if hm is not None and c.get("HabitatModelSha256") != _sha(hm):
            raise QMRIInputError(f"{path}: the embedded habitat model does not match its checksum")
        if not np.all(arrays["Scale"] > 0):
            raise QMRIInputError(f"{path}: Scale must be positive")
        model = cls(features, units, arrays["Impute"], arrays["Mean"], arrays["Scale"], keep, coef, intercept,
                    c, info)
        if hm is not None:
            try:
                model.habitat_model()
            except QMRIInputError as exc:
                raise QMRIInputError(f"{path}: {exc}") from None
        return model


def _numbers(values, n: int, what: str) -> np.ndarray:
    if not isinstance(values, list) or len(values) != n or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{what} must be a list of {n} numbers")
    a = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} must be finite")
    return a


def _sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()

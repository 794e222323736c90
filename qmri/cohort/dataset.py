"""A BIDS dataset as the input of a cohort: its participants (subject and session) and its files,
found by entities.

A dataset (the raw one, or a derivatives folder such as the ROI masks) is indexed once: every file
``sub-<label>/[ses-<label>/]<datatype>/<name>`` whose name is BIDS entities and a suffix
(:func:`qmri.bids.parse_name`). A :class:`Selector` (``suffix = "dwi", acq = "ivim"``) picks, for
one participant, the single file whose subject and session are the participant's and whose other
entities, suffix, datatype and extension are the selector's; a file without a session serves every
session of its subject when no file of that session matches (as BIDS inheritance does for
metadata). No match, or several, is an error naming the selector and the files.

Entity names are the schema's short names (``acq``, ``run``, ``desc``, ``label``...; the BIDS
schema of ``bidsschematools``, see :func:`qmri.bids.schema_entities`); pybids is not needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qmri.bids import parse_name, split_image_name
from qmri.errors import QMRIInputError

#: Selector keys that are not entities.
SPECIAL_KEYS = ("suffix", "datatype", "extension")
#: Extensions a selector matches when it names none (images).
IMAGE_EXTENSIONS = (".nii.gz", ".nii")


@dataclass(frozen=True, order=True)
class Participant:
    """A subject, or one session of a subject (``session`` None when the dataset has no sessions)."""

    subject: str
    session: str | None = None

    @property
    def id(self) -> str:
        """``sub-01`` or ``sub-01_ses-1``: names logs, folders and table rows."""
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session is not None else "")

    def folder(self) -> Path:
        """``sub-01`` or ``sub-01/ses-1``, relative to a dataset's root."""
        base = Path(f"sub-{self.subject}")
        return base / f"ses-{self.session}" if self.session is not None else base


@dataclass(frozen=True)
class BIDSFile:
    """One file of a dataset: its path, entities (``sub`` and ``ses`` included), suffix, datatype
    (its folder) and extension (``.nii.gz``, ``.csv``...)."""

    path: Path
    entities: tuple
    suffix: str
    datatype: str
    extension: str

    def get(self, key: str):
        """An entity's value, or the suffix, datatype or extension; None when absent."""
        if key in SPECIAL_KEYS:
            return getattr(self, key)
        return dict(self.entities).get(key)


def index(root) -> list[BIDSFile]:
    """Every BIDS-named file in the datatype folders of ``root`` (``sub-*/[ses-*/]<datatype>/``).

    Raises
    ------
    QMRIInputError
        ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise QMRIInputError(f"{root}: dataset folder not found")
    out = []
    for sub in sorted(root.glob("sub-*")):
        if not sub.is_dir():
            continue
        # datatype folders of the subject (files without a session) and of each session
        levels = [sub] + [p for p in sorted(sub.glob("ses-*")) if p.is_dir()]
        for level in levels:
            for folder in sorted(p for p in level.iterdir() if p.is_dir() and not p.name.startswith((".", "ses-"))):
                for path in sorted(folder.iterdir()):
                    if not path.is_file() or path.name.startswith("."):
                        continue
                    stem, ext = split_image_name(path)
                    entities, suffix = parse_name(stem)
                    if entities.get("sub") != sub.name[4:]:
                        continue
                    out.append(BIDSFile(path, tuple(sorted(entities.items())), suffix, folder.name, ext))
    return out


def participants(root, labels=None) -> list[Participant]:
    """The participants of a raw dataset: every ``sub-*`` folder, split by its ``ses-*`` folders.

    Parameters
    ----------
    root : path
    labels : list of str, optional
        Subjects to keep (``01`` or ``sub-01``, as BIDS Apps take ``--participant-label``).

    Raises
    ------
    QMRIInputError
        No subject folder; a label that is not a subject of the dataset.
    """
    root = Path(root)
    if not root.is_dir():
        raise QMRIInputError(f"{root}: BIDS dataset folder not found")
    subjects = sorted(p.name[4:] for p in root.glob("sub-*") if p.is_dir())
    if not subjects:
        raise QMRIInputError(f"{root}: no sub-<label> folder (is this a BIDS dataset?)")
    if labels:
        wanted = [str(s)[4:] if str(s).startswith("sub-") else str(s) for s in labels]
        missing = [s for s in wanted if s not in subjects]
        if missing:
            raise QMRIInputError(f"--participant-label {missing[0]}: no folder sub-{missing[0]} in {root} (there are "
                                 f"{', '.join(subjects[:10])}{'...' if len(subjects) > 10 else ''})")
        subjects = [s for s in subjects if s in set(wanted)]
    out = []
    for s in subjects:
        sessions = sorted(p.name[4:] for p in (root / f"sub-{s}").glob("ses-*") if p.is_dir())
        out += [Participant(s, ses) for ses in sessions] if sessions else [Participant(s)]
    return out


@dataclass(frozen=True)
class Selector:
    """Which file of a dataset, per participant: required entities and their values.

    Attributes
    ----------
    criteria : tuple of (key, tuple of str)
        Entity (short name), ``suffix``, ``datatype`` or ``extension`` with the accepted values.
    dataset : str or None
        The dataset searched: None for the raw dataset, else a folder (absolute, or relative to the
        raw dataset, e.g. ``derivatives/masks``).
    where : str
        Where the selector was declared (``steps.toml: [fit.ivim] series``), for messages.
    """

    criteria: tuple
    dataset: str | None = None
    where: str = ""

    def root(self, bids_dir) -> Path:
        """The folder searched."""
        if self.dataset is None:
            return Path(bids_dir)
        d = Path(self.dataset).expanduser()
        return d if d.is_absolute() else Path(bids_dir) / d

    def describe(self) -> str:
        text = ", ".join(f"{k}={'|'.join(v)}" for k, v in self.criteria)
        return text + (f" in {self.dataset}" if self.dataset else "")

    def as_dict(self) -> dict:
        """JSON-ready form (for hashing and records)."""
        return {"dataset": self.dataset, **{k: list(v) for k, v in self.criteria}}

    def matches(self, f: BIDSFile) -> bool:
        if not any(k == "extension" for k, _ in self.criteria) and f.extension not in IMAGE_EXTENSIONS:
            return False
        return all(f.get(k) in values for k, values in self.criteria)

    def find(self, files, participant: Participant) -> Path:
        """The one file of ``files`` (an :func:`index`) selected for ``participant``.

        Raises
        ------
        QMRIInputError
            No file, or more than one (the message names the selector, the participant and the files).
        """
        mine = [f for f in files if f.get("sub") == participant.subject and self.matches(f)]
        found = [f for f in mine if f.get("ses") == participant.session]
        if not found and participant.session is not None:
            found = [f for f in mine if f.get("ses") is None]
        if not found:
            raise QMRIInputError(f"{self.where}: no file {self.describe()} for {participant.id}")
        if len(found) > 1:
            names = ", ".join(f.path.name for f in found[:4])
            raise QMRIInputError(f"{self.where}: {len(found)} files {self.describe()} for {participant.id} ({names}); "
                                 "add an entity (run, acq, desc...) to select one")
        return found[0].path


class Datasets:
    """Indexes of the datasets selectors search, each built once (raw dataset at ``bids_dir``)."""

    def __init__(self, bids_dir):
        self.bids_dir = Path(bids_dir)
        self._indexes: dict[Path, list] = {}

    def find(self, selector: Selector, participant: Participant) -> Path:
        """:meth:`Selector.find` in the selector's dataset.

        Raises
        ------
        QMRIInputError
            The dataset folder is missing; no or several matching files.
        """
        root = selector.root(self.bids_dir)
        if root not in self._indexes:
            if not root.is_dir():
                raise QMRIInputError(f"{selector.where}: dataset folder {root} not found")
            self._indexes[root] = index(root)
        return selector.find(self._indexes[root], participant)

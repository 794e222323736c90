"""The OSIPI reference data shipped with qmri, and readers of their files.

The files under ``qmri/validation/data/osipi/`` are unmodified copies of data files of two OSIPI
code collections (Apache-2.0; sources, commits and licence in ``data/osipi/NOTICE`` and each
collection's ``SOURCE.txt`` and ``LICENSE``), kept at their paths relative to the root of their
repositories:

* ``osipi_ivim/tests/IVIMmodels/unit_tests/generic*.json``: TF2.4 IVIM test signals (JSON);
* ``osipi_dce/test/<suite>/data/*.csv``: TF2.3 DCE test cases, one per row, array columns written as
  space-separated numbers in one field; the population AIFs one time point per row, grouped by
  ``label``.
"""

from __future__ import annotations

import csv
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

#: Root of the shipped OSIPI reference data.
OSIPI = Path(__file__).resolve().parent / "data" / "osipi"


class MissingReferenceData(FileNotFoundError):
    """A reference file that should ship with qmri is absent (a broken installation or checkout)."""


def path(*parts) -> Path:
    """Path of a shipped OSIPI file (``parts`` relative to :data:`OSIPI`); not checked."""
    return OSIPI.joinpath(*parts)


def existing(*parts) -> Path:
    """Path of a shipped OSIPI file.

    Raises
    ------
    MissingReferenceData
        The file is absent (message naming it).
    """
    p = path(*parts)
    if not p.exists():
        raise MissingReferenceData(f"OSIPI reference data missing: {p} (shipped in qmri/validation/data/osipi; "
                                   "see its NOTICE)")
    return p


def read_json(*parts):
    """The parsed JSON file ``parts`` (:func:`existing` checks it)."""
    return json.loads(existing(*parts).read_text())


def _value(text):
    fields = text.split()
    if len(fields) == 1:
        try:
            return float(fields[0])
        except ValueError:
            return text.strip()
    try:
        return np.array([float(f) for f in fields])
    except ValueError:
        return text.strip()


def read_rows(*parts) -> list[dict]:
    """Rows of an OSIPI case file: ``{column: value}`` with stripped column names, ``label`` as text,
    numeric fields as floats and space-separated fields as float arrays (:func:`existing` checks it)."""
    csv.field_size_limit(1 << 30)  # array columns are long fields
    rows = []
    with open(existing(*parts), newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            case = {k.strip(): _value(v) for k, v in row.items()}
            case["label"] = row[next(k for k in row if k.strip() == "label")].strip()
            rows.append(case)
    return rows


def read_curves(*parts) -> list[dict]:
    """Curves of a long-format OSIPI file (columns label, time, Cb[, delay]), one per label:
    ``{"label", "time" (array), "Cb" (array), "delay" (float, 0 if absent)}``, in file order."""
    groups: OrderedDict[str, list] = OrderedDict()
    with open(existing(*parts), newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            groups.setdefault(row["label"], []).append(
                (float(row["time"]), float(row["Cb"]), float(row.get("delay") or 0.0)))
    out = []
    for label, rows in groups.items():
        arr = np.array(rows)
        out.append({"label": label, "time": arr[:, 0], "Cb": arr[:, 1], "delay": float(arr[0, 2])})
    return out

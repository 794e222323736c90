"""Read the OSIPI DCE code-collection CSV files into pytest cases (one case per row or label).

The files (``tests/data/osipi/osipi_dce/test/...``) hold one test case per row, with array
columns written as space-separated numbers inside one field, or, for the population AIFs, one
time point per row grouped by ``label``. When a file is absent, its cases collapse into one case
named after it, which fails in ``external(...)`` naming the missing file.
"""

from __future__ import annotations

import csv
from collections import OrderedDict

import numpy as np
import pytest
from conftest import EXTERNAL

def _path(*parts):
    return EXTERNAL.joinpath(*parts)


def _missing(*parts):
    return [pytest.param(None, id=f"missing-{parts[-1]}")]


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


def row_cases(*parts, marks=None):
    """One ``pytest.param(dict)`` per CSV row, id = the row's label (``parts`` as for ``external``).

    Column names are stripped; numeric fields become floats, space-separated fields arrays.
    ``marks`` maps a label to extra marks (e.g. an xfail with the measured value).
    """
    p = _path(*parts)
    if not p.exists():
        return _missing(*parts)
    cases = []
    with open(p, newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            case = {k.strip(): _value(v) for k, v in row.items()}
            label = str(case["label"])
            cases.append(pytest.param(case, id=label, marks=(marks or {}).get(label, ())))
    return cases


def curve_cases(*parts, marks=None):
    """One ``pytest.param(dict)`` per label of a long-format curve file (label, time, Cb[, delay]).

    Each case holds ``label``, ``time`` and ``Cb`` arrays, and ``delay`` (float, 0 if absent).
    """
    p = _path(*parts)
    if not p.exists():
        return _missing(*parts)
    groups: OrderedDict[str, list] = OrderedDict()
    with open(p, newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            groups.setdefault(row["label"], []).append(
                (float(row["time"]), float(row["Cb"]), float(row.get("delay") or 0.0)))
    cases = []
    for label, rows in groups.items():
        arr = np.array(rows)
        case = {"label": label, "time": arr[:, 0], "Cb": arr[:, 1], "delay": float(arr[0, 2])}
        cases.append(pytest.param(case, id=label, marks=(marks or {}).get(label, ())))
    return cases


def within(measured, reference, a_tol, r_tol):
    """OSIPI pass criterion ``|meas - ref| <= a_tol + r_tol·|ref|`` element-wise (NaN fails)."""
    measured = np.asarray(measured, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    return np.abs(measured - reference) <= a_tol + r_tol * np.abs(reference)


def assert_within(measured, reference, a_tol, r_tol, what=""):
    """Assert the OSIPI criterion, reporting the worst point when it fails."""
    measured = np.atleast_1d(np.asarray(measured, dtype=np.float64))
    reference = np.atleast_1d(np.asarray(reference, dtype=np.float64))
    ok = within(measured, reference, a_tol, r_tol)
    if not ok.all():
        excess = np.where(np.isfinite(measured), np.abs(measured - reference) - (a_tol + r_tol * np.abs(reference)), np.inf)
        i = int(np.argmax(excess))
        raise AssertionError(
            f"{what}: {int((~ok).sum())}/{ok.size} points outside |meas-ref| <= {a_tol:g} + {r_tol:g}|ref|; "
            f"worst at index {i}: measured {measured[i]:.6g}, reference {reference[i]:.6g}")

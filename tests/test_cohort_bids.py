"""The example dataset of ``qmri phantom cohort`` is valid BIDS: the official validator (when
``bids-validator`` is on PATH) reports no error; without it, every file name matches the BIDS
schema shipped in ``bidsschematools`` and every diffusion series has its ``.bval`` and ``.bvec``."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from qmri.cohort.example import IGNORED, write_example_dataset


@pytest.fixture(scope="module", params=[0, 2], ids=["no-sessions", "sessions"])
def example(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("bids") / "bids"
    write_example_dataset(root, subjects=2, sessions=request.param, voxels=200)
    return root


def test_every_file_name_is_bids_or_a_dce_file_listed_in_bidsignore(example):
    from bidsschematools import validator

    result = validator.validate_bids(str(example))
    assert result["path_tracking"] == [], "files that match no BIDS rule"
    checked = {p.rsplit("/", 1)[-1] for p in result["path_listing"]}
    skipped = sorted(p.name for p in example.rglob("*") if p.is_file() and "derivatives" not in p.parts
                     and not p.name.startswith(".") and p.name not in checked)
    # the only files the validator is told to skip are the DCE series and their sidecars (unspecified in BIDS)
    assert skipped and all(p.endswith(("_dce.nii.gz", "_dce.json")) for p in skipped), skipped
    assert (example / ".bidsignore").read_text().split() == list(IGNORED)


def test_every_diffusion_series_has_bval_and_unit_bvec(example):
    series = sorted(example.glob("sub-*/**/dwi/*_dwi.nii.gz"))
    assert series
    for s in series:
        stem = s.name[: -len(".nii.gz")]
        b = np.loadtxt(s.with_name(stem + ".bval"))
        g = np.loadtxt(s.with_name(stem + ".bvec"))
        assert g.shape == (3, b.size)
        norms = np.linalg.norm(g, axis=0)
        np.testing.assert_allclose(norms[b > 0], 1.0)
        np.testing.assert_allclose(norms[b == 0], 0.0)


@pytest.mark.skipif(shutil.which("bids-validator") is None, reason="bids-validator (npm) not on PATH")
def test_official_bids_validator_reports_no_error(example):
    run = subprocess.run(["bids-validator", str(example), "--json"], capture_output=True, text=True, timeout=600)
    report = json.loads(run.stdout)
    errors = [(e["key"], [f["file"]["relativePath"] for f in e.get("files", []) if f.get("file")])
              for e in report["issues"]["errors"]]
    assert errors == [] and run.returncode == 0, errors

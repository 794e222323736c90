"""BIDS-derivative outputs: names checked against the BIDS schema's entity rules, dataset_description.json,
sidecar keys, and ParameterMaps.load reading both layouts back."""

import json
import re
import shutil

import nibabel as nib
import numpy as np
import pytest

from qmri.cli.main import main
from qmri.maps import ParameterMaps
from qmri.models import VFA

schema = pytest.importorskip("bidsschematools.schema").load_schema()
#: Entities proposed by BEP016 (diffusion derivatives), not in the schema yet.
BEP016 = {"model", "param"}


def _entity_rules():
    order = [schema.objects.entities[k].name for k in schema.rules.entities]
    patterns = {schema.objects.entities[k].name: schema.objects.formats[schema.objects.entities[k].format].pattern
                for k in schema.rules.entities}
    return order, patterns


def check_name(name: str):
    """Assert ``name`` follows the schema's entity rules: known entities (or BEP016's model/param, placed
    before desc), in the schema's order, values of their format, a suffix, a known extension."""
    order, patterns = _entity_rules()
    stem, ext = re.match(r"^(.*?)(\.nii\.gz|\.json|\.png|\.csv)$", name).groups()
    parts = stem.split("_")
    keys = [p.split("-", 1)[0] for p in parts[:-1]]
    assert re.fullmatch(r"[a-zA-Z0-9]+", parts[-1]), name
    rank = {k: i for i, k in enumerate(order)}
    rank.update({"model": rank["desc"] - 0.6, "param": rank["desc"] - 0.5})
    assert keys[0] == "sub", name
    assert [rank[k] for k in keys] == sorted(rank[k] for k in keys), f"{name}: entities out of order"
    for p in parts[:-1]:
        k, v = p.split("-", 1)
        assert k in patterns or k in BEP016, f"{name}: unknown entity {k}"
        assert re.fullmatch(patterns.get(k, schema.objects.formats.label.pattern), v), f"{name}: bad value {p}"
    return keys, parts[-1]


@pytest.fixture(scope="module")
def bids_fit(tmp_path_factory):
    """An IVIM phantom as a BIDS dataset, fitted into derivatives/qmri without --bids (automatic)."""
    d = tmp_path_factory.mktemp("bids")
    assert main(["phantom", "ivim", "--out-dir", str(d / "ph"), "--block", "2", "2", "1"]) == 0
    dwi = d / "ds" / "sub-01" / "ses-1" / "dwi"
    dwi.mkdir(parents=True)
    (d / "ds" / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.11.0"}')
    shutil.copy(d / "ph" / "ivim.nii.gz", dwi / "sub-01_ses-1_acq-b13_dwi.nii.gz")
    shutil.copy(d / "ph" / "ivim.bval", dwi / "sub-01_ses-1_acq-b13_dwi.bval")
    deriv = d / "ds" / "derivatives" / "qmri"
    assert main(["ivim", str(dwi / "sub-01_ses-1_acq-b13_dwi.nii.gz"), "--out-dir", str(deriv), "--se", "--plot",
                 "--quiet"]) == 0
    assert main(["ivim", str(d / "ph" / "ivim.nii.gz"), "--out-dir", str(d / "plain"), "--se", "--quiet"]) == 0
    return d, deriv


def test_names_follow_schema_and_bep016(bids_fit):
    _, deriv = bids_fit
    folder = deriv / "sub-01" / "ses-1" / "dwi"
    names = sorted(p.name for p in folder.iterdir())
    assert "sub-01_ses-1_acq-b13_model-ivim_param-D_dwimap.nii.gz" in names
    assert "sub-01_ses-1_acq-b13_model-ivim_param-D_desc-se_dwimap.json" in names
    assert "sub-01_ses-1_acq-b13_model-ivim_param-niter_dwimap.nii.gz" in names
    assert "sub-01_ses-1_acq-b13_model-ivim_maps.png" in names
    for name in names:
        keys, suffix = check_name(name)
        if suffix == "dwimap":
            assert {"model", "param"} <= set(keys)


def test_dataset_description_and_sidecars(bids_fit):
    d, deriv = bids_fit
    desc = json.loads((deriv / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "qmri" and desc["GeneratedBy"][0]["Version"]
    assert desc["BIDSVersion"] == str(schema.bids_version)
    raw = (deriv / desc["DatasetLinks"]["raw"]).resolve()
    assert raw == (d / "ds").resolve()
    side = json.loads((deriv / "sub-01/ses-1/dwi/sub-01_ses-1_acq-b13_model-ivim_param-D_dwimap.json").read_text())
    assert side["Units"] == "mm^2/s"
    assert side["Sources"][0] == "bids:raw:sub-01/ses-1/dwi/sub-01_ses-1_acq-b13_dwi.nii.gz"
    assert (raw / side["Sources"][0].split(":", 2)[2]).is_file()
    assert side["EstimationAlgorithm"].startswith("lsq: ") and "Le Bihan" in side["EstimationReference"]
    f = json.loads((deriv / "sub-01/ses-1/dwi/sub-01_ses-1_acq-b13_model-ivim_param-f_dwimap.json").read_text())
    assert f["Units"] == "1"


def test_load_reads_both_layouts(bids_fit):
    d, deriv = bids_fit
    bids = ParameterMaps.load(deriv / "sub-01" / "ses-1" / "dwi")
    plain = ParameterMaps.load(d / "plain")
    assert set(bids) == set(plain) and "D_se" in bids
    for name in plain:
        np.testing.assert_array_equal(bids[name], plain[name], err_msg=name)
    assert bids.provenance["method"] == plain.provenance["method"] == "lsq"
    assert bids.units["D"] == "mm^2/s" and plain.units["D"] == "mm2/s"
    # a prefix selects among several fits of one folder
    again = ParameterMaps.load(deriv / "sub-01" / "ses-1" / "dwi", prefix="sub-01_ses-1_acq-b13_model-ivim")
    np.testing.assert_array_equal(again["D"], bids["D"])


def test_vfa_uses_ratified_qmri_suffixes(tmp_path):
    anat = tmp_path / "ds" / "sub-02" / "anat"
    anat.mkdir(parents=True)
    data = VFA([3.0, 15.0], 0.01).signal(dict(M0=1000.0, T1=np.full((2, 2, 1), 1.2)))
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), anat / "sub-02_flip-1_VFA.nii.gz")
    (anat / "sub-02_flip-1_VFA.json").write_text('{"FlipAngle": [3, 15], "RepetitionTimeExcitation": 0.01}')
    out = tmp_path / "out"  # not under derivatives/: BIDS names only with --bids
    assert main(["t1", str(anat / "sub-02_flip-1_VFA.nii.gz"), "--out-dir", str(out), "--bids", "--quiet"]) == 0
    names = sorted(p.name for p in (out / "sub-02" / "anat").iterdir())
    assert "sub-02_T1map.nii.gz" in names and "sub-02_M0map.nii.gz" in names
    assert "sub-02_model-vfa_param-r2_vfamap.nii.gz" in names
    parametric = schema.rules.files.deriv.imaging.anat_parametric_volumetric
    for name in ("sub-02_T1map.nii.gz", "sub-02_M0map.nii.gz"):
        keys, suffix = check_name(name)
        assert suffix in parametric.suffixes
        allowed = {schema.objects.entities[k].name for k in parametric.entities}
        assert set(keys) <= allowed
    side = json.loads((out / "sub-02" / "anat" / "sub-02_T1map.json").read_text())
    assert side["Units"] == "s" == schema.objects.suffixes.T1map.unit
    assert side["Sources"][0] == (anat / "sub-02_flip-1_VFA.nii.gz").resolve().as_uri()  # no BIDS dataset around
    assert ParameterMaps.load(out / "sub-02" / "anat")["T1"][0, 0, 0] == pytest.approx(1.2, rel=1e-4)


def test_bids_refusals(bids_fit, tmp_path, capsys):
    d, _ = bids_fit
    assert main(["ivim", str(d / "ph" / "ivim.nii.gz"), "--out-dir", str(tmp_path / "o"), "--bids"]) == 2
    assert "BIDS outputs need a BIDS-named series" in capsys.readouterr().err
    series = d / "ds" / "sub-01" / "ses-1" / "dwi" / "sub-01_ses-1_acq-b13_dwi.nii.gz"
    assert main(["ivim", str(series), "--out-dir", str(tmp_path / "o"), "--bids", "--prefix", "x_"]) == 2
    assert "--prefix cannot be combined" in capsys.readouterr().err
    # --no-bids keeps qmri's own names even under derivatives/
    out = d / "ds" / "derivatives" / "plain"
    assert main(["ivim", str(series), "--out-dir", str(out), "--no-bids", "--quiet"]) == 0
    assert (out / "D.nii.gz").is_file() and not (out / "dataset_description.json").exists()

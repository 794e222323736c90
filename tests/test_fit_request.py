"""One fit request: checked once (:meth:`Model.request`), run by ``Model.fit``, named and written from it.

The outputs a file fit plans are the ones it writes, with the same kinds; the inputs' facts and the
geometry go into the request instead of being patched onto the maps afterwards; DKI's b-vector frame
is a setting of the model, not an attribute set on it.
"""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from qmri.cli.main import main
from qmri.errors import QMRIInputError
from qmri.maps import ParameterMaps
from qmri.models import DKI, IVIM
from qmri.models.diffusion.acquisition import fsl_bvec_frame
from qmri.models.request import FitRequest
from qmri.workflows.job import plan_fit, run_fit

B = np.array([0, 10, 20, 50, 100, 200, 400, 800, 1000.0])


@pytest.fixture(scope="module")
def dki_series(tmp_path_factory):
    d = tmp_path_factory.mktemp("request")
    assert main(["phantom", "dki", "--out-dir", str(d / "ph"), "--snr", "inf", "--block", "2", "2", "1"]) == 0
    c, s = np.cos(0.4), np.sin(0.4)  # an oblique affine: the b-vector frame is not the identity
    affine = np.array([[2 * c, -2 * s, 0, 10], [2 * s, 2 * c, 0, -5], [0, 0, 3, 1], [0, 0, 0, 1.0]])
    img = nib.load(d / "ph" / "dki.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32), affine), d / "dwi.nii.gz")
    for ext in ("bval", "bvec"):
        shutil.copy(d / "ph" / f"dki.{ext}", d / f"dwi.{ext}")
    return d, affine


def test_request_resolves_the_options_once_and_names_every_map_with_its_kind():
    model = IVIM(B)
    req = model.request("lsq", compute_se=True, crlb=True)
    assert isinstance(req, FitRequest) and req.method.name == "lsq" and req.wants_crlb
    assert req.options["compute_se"] is True and "crlb" not in req.options  # the CRLB options kept apart
    assert req.outputs["D"] == "parameter" and req.outputs["D_se"] == "standard_error"
    assert req.outputs["D_crlb"] == "crlb" and req.outputs["status"] == "quality"
    assert list(req.outputs) == model.output_names("lsq", compute_se=True, crlb=True)
    with pytest.raises(QMRIInputError, match="does not use option 'tensors'"):
        model.request("lsq", tensors=True)


def test_fit_runs_a_request_with_its_inputs_and_geometry():
    model = IVIM(B)
    data = model.predict({"S0": 1000.0, "f": 0.1, "D": 1e-3, "Dstar": 0.02}) * np.ones((2, 3, 1, 1))
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    req = model.request("lsq", inputs={"bval_file": "x.bval"}, affine=affine)
    maps = model.fit(data, request=req)
    assert maps.provenance["bval_file"] == "x.bval" and maps.provenance["method"] == "lsq"
    np.testing.assert_array_equal(maps.affine, affine)
    assert maps.kinds == {name: kind for name, kind in req.outputs.items()}
    direct = model.fit(data, method="lsq")
    np.testing.assert_array_equal(direct["D"], maps["D"])
    with pytest.raises(TypeError, match="either request= or a method"):
        model.fit(data, method="lsq", request=req)
    with pytest.raises(ValueError, match="another model's"):
        IVIM(B).fit(data, request=req)


def test_a_file_fit_writes_the_maps_it_planned_with_the_kinds_it_planned(dki_series, tmp_path):
    d, _ = dki_series
    plan = plan_fit(DKI, d / "dwi.nii.gz", out_dir=tmp_path / "fit", method_options={"tensors": True})
    assert plan.maps["DT"][0] == "vector" and plan.maps["KT"][0] == "vector"  # planned as what they are
    outcome = run_fit(plan)
    assert sorted(map(str, outcome.written)) == sorted(map(str, plan.outputs))
    for name, (kind, nii) in plan.maps.items():
        side = json.loads(nii.with_name(nii.name.replace(".nii.gz", ".json")).read_text())
        assert side["Kind"] == kind, name
    loaded = ParameterMaps.load(tmp_path / "fit")
    assert loaded.kinds["DT"] == "vector" and loaded.units["DT"] == "mm2/s"


def test_dki_takes_the_bvec_frame_as_a_setting_and_keeps_it(dki_series, tmp_path):
    d, affine = dki_series
    plan = plan_fit(DKI, d / "dwi.nii.gz", out_dir=tmp_path / "fit", method_options={"tensors": True})
    model = plan.job.model
    np.testing.assert_allclose(model.bvec_frame, fsl_bvec_frame(affine))
    np.testing.assert_allclose(model.settings()["bvec_frame"], fsl_bvec_frame(affine))
    maps = run_fit(plan).maps
    assert maps.provenance["tensor_layout"]["frame"].startswith("world")
    rebuilt = DKI.from_provenance(maps.provenance)
    np.testing.assert_allclose(rebuilt.bvec_frame, fsl_bvec_frame(affine))
    b, g = np.loadtxt(d / "dwi.bval"), np.loadtxt(d / "dwi.bvec").T
    assert DKI(b, g).bvec_frame is None
    with pytest.raises(QMRIInputError, match="bvec_frame is not a rotation"):
        DKI(b, g, bvec_frame=2 * np.eye(3))
    with pytest.raises(QMRIInputError, match="bvec_frame must be a finite 3 x 3"):
        DKI(b, g, bvec_frame=np.eye(2))


def test_each_workflow_declares_its_bids_names():
    from qmri.naming import DATATYPES
    from qmri.workflows import NAMES, workflow

    for name in NAMES:
        wf = workflow(name)
        assert wf.bids_suffix.endswith("map") and wf.bids_datatype in DATATYPES, name
    assert (workflow("diffusion").bids_suffix, workflow("dce").bids_datatype) == ("dwimap", "perf")


def test_every_model_is_found_by_name_without_a_list_of_exceptions():
    import qmri.models
    from qmri.models.model import MODEL_IDS, model_class

    assert qmri.models.TraceDKI is model_class("tracedki") is model_class("TraceDKI")
    assert {cls.__name__ for cls in MODEL_IDS.values()} >= {"IVIM", "DKI", "TraceDKI", "VFA", "DCE"}
    with pytest.raises(AttributeError):
        qmri.models.NotAModel  # noqa: B018


def test_every_least_squares_fit_is_called_lsq_and_the_former_names_still_work(dki_series, tmp_path):
    from qmri.models import VFA
    from qmri.models.model import COMMANDS

    for cls in COMMANDS.values():  # the LM engine has one name wherever it fits the declared signal
        assert not {"nonlinear", "nls"} & set(cls.methods), cls.__name__
    model = VFA([2, 5, 10, 15], tr=0.005)
    sig = model.predict({"M0": 1000.0, "T1": 1.2})[None]
    old, new = model.fit(sig, method="nonlinear"), model.fit(sig)
    assert new.provenance["method"] == old.provenance["method"] == "lsq"
    np.testing.assert_array_equal(old["T1"], new["T1"])
    d, _ = dki_series
    assert main(["dki", str(d / "dwi.nii.gz"), "--method", "nls", "--out-dir", str(tmp_path / "nls"), "--quiet"]) == 0
    assert ParameterMaps.load(tmp_path / "nls").provenance["method"] == "lsq"
    with pytest.raises(QMRIInputError, match="unknown method 'nonlinear' for IVIM"):
        IVIM(B).method("nonlinear")


def test_both_naming_policies_live_in_one_module_and_answer_the_same_questions():
    import inspect

    import qmri.bids
    import qmri.maps
    from qmri import naming

    questions = ("folder", "map_file", "extra_file", "sources", "sidecar")
    for policy in (naming.PrefixNaming, naming.BIDSNaming):
        assert policy.__module__ == "qmri.naming"
        assert all(callable(getattr(policy, q)) for q in questions), policy.__name__
    assert [list(inspect.signature(getattr(naming.PrefixNaming, q)).parameters) for q in questions] == \
        [list(inspect.signature(getattr(naming.BIDSNaming, q)).parameters) for q in questions]
    assert not hasattr(qmri.maps, "PrefixNaming") and not hasattr(qmri.bids, "BIDSNaming")

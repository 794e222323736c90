"""Malformed and hostile input files end in one line naming the file and exit code 2, never a traceback:
truncated or lying NIfTI headers (every image a command reads), deeply nested JSON and TOML, tampered
network weights, habitat models with bad values."""

import gzip
import struct
import warnings

import nibabel as nib
import numpy as np
import pytest

from qmri import io
from qmri.cli.main import main
from qmri.errors import QMRIInputError

B = np.array([0.0, 10, 50, 100, 400, 800])


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(code, err, *names):
    assert code == 2, err
    assert err.startswith("qmri: error:") and "Traceback" not in err, err
    line = [ln for ln in err.splitlines() if ln.startswith("qmri: error:")]
    assert len(line) == 1, err
    for name in names:
        assert str(name) in line[0], err
    return line[0]


def _save(path, data, *, lie=None):
    """Save ``data`` as NIfTI at ``path``; ``lie``: a shape written into the header instead (data unchanged)."""
    img = nib.Nifti1Image(data, np.eye(4))
    raw = img.to_bytes()
    if lie is not None:
        img.header.set_data_shape(lie)
        raw = img.header.binaryblock + raw[348:]
    path.write_bytes(gzip.compress(raw) if str(path).endswith(".gz") else raw)


def _truncate(path, nbytes=10):
    """Drop the last ``nbytes`` bytes of the image data (of the decompressed content for ``.gz``)."""
    if str(path).endswith(".gz"):
        path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-nbytes]))
    else:
        path.write_bytes(path.read_bytes()[:-nbytes])


@pytest.fixture
def dwi(tmp_path):
    rng = np.random.default_rng(0)
    data = (1000 * np.exp(-B * 1e-3) * np.ones((3, 3, 2, 1)) * rng.uniform(0.9, 1.1, (3, 3, 2, 1))).astype(np.float32)
    _save(tmp_path / "s.nii", data)
    (tmp_path / "s.bval").write_text(" ".join(f"{b:g}" for b in B) + "\n")
    return tmp_path


# ---------------------------------------------------------------------------------------------
# Images: every read checked against the header's claim before anything is allocated
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_truncated_series_is_one_line(dwi, capsys, ext):
    series = dwi / f"t{ext}"
    _save(series, np.asanyarray(nib.load(dwi / "s.nii").dataobj))
    _truncate(series)
    code, _, err = _run(["adc", series, "--bval", dwi / "s.bval", "--out-dir", dwi / "o"], capsys)
    line = _one_line_error(code, err, series)
    assert "truncated" in line
    assert not (dwi / "o").exists()


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_header_claiming_32767_cubed_voxels_is_refused_before_allocating(dwi, capsys, monkeypatch, ext):
    series = dwi / f"lie{ext}"
    _save(series, np.asanyarray(nib.load(dwi / "s.nii").dataobj), lie=(32767, 32767, 32767, 6))
    allocated = []
    real_empty = np.empty
    monkeypatch.setattr(np, "empty", lambda shape, *a, **k: allocated.append(shape) or real_empty(shape, *a, **k))
    code, _, err = _run(["adc", series, "--bval", dwi / "s.bval", "--out-dir", dwi / "o"], capsys)
    line = _one_line_error(code, err, series)
    assert "header asks for" in line and "32767" in line
    assert not any(np.prod(s, dtype=float) > 1e9 for s in allocated)


def test_large_gzip_path_refuses_a_lying_header_without_allocating_its_claim(tmp_path, monkeypatch):
    """Files above GZIP_WHOLE are decompressed into an array of the header's size: that size is first
    checked against what a gzip file of this size can hold."""
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\0" * 1000))
    monkeypatch.setattr(io, "GZIP_WHOLE", 0)
    with pytest.raises(QMRIInputError, match="more than a compressed file of"):
        io.read_gzip(path, 352, 32767 ** 3 * 24)


def test_image_without_voxels_is_refused(dwi, capsys):
    series = dwi / "zero.nii"
    raw = bytearray(nib.Nifti1Image(np.zeros((2, 2, 2, 6), np.float32), np.eye(4)).to_bytes())
    struct.pack_into("<8h", raw, 40, 4, 2, 0, 2, 6, 1, 1, 1)  # dim[2] = 0
    series.write_bytes(bytes(raw))
    code, _, err = _run(["adc", series, "--bval", dwi / "s.bval", "--out-dir", dwi / "o"], capsys)
    assert "no voxels" in _one_line_error(code, err, series)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_truncated_mask_is_one_line(dwi, capsys, ext):
    mask = dwi / f"m{ext}"
    _save(mask, np.ones((3, 3, 2), np.uint8))
    _truncate(mask, 5)
    code, _, err = _run(["adc", dwi / "s.nii", "--bval", dwi / "s.bval", "--mask", mask, "--out-dir", dwi / "o"],
                        capsys)
    _one_line_error(code, err, mask)
    assert not (dwi / "o").exists()


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_truncated_b1_map_is_one_line(tmp_path, capsys, ext):
    from qmri.models import VFA

    fa = [2.0, 5.0, 10.0, 15.0]
    data = VFA(fa, 0.005).signal(dict(M0=2000.0, T1=np.full((3, 2, 2), 1.0)))
    _save(tmp_path / "vfa.nii.gz", data.astype(np.float32))
    b1 = tmp_path / f"b1{ext}"
    _save(b1, np.ones((3, 2, 2), np.float32))
    _truncate(b1)
    code, _, err = _run(["t1", tmp_path / "vfa.nii.gz", "--fa", "2,5,10,15", "--tr", "0.005", "--b1", b1,
                         "--out-dir", tmp_path / "o"], capsys)
    _one_line_error(code, err, b1)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_truncated_aif_roi_mask_is_one_line(tmp_path, capsys, ext):
    t = np.arange(20) * 2.0
    conc = np.zeros((2, 2, 1, t.size), np.float32)
    conc[..., 5:] = 1.0
    _save(tmp_path / "c.nii.gz", conc)
    art = tmp_path / f"art{ext}"
    _save(art, np.ones((2, 2, 1), np.uint8))
    _truncate(art, 2)
    code, _, err = _run(["dce", tmp_path / "c.nii.gz", "--tr-frame", "2", "--aif", f"roi:{art}",
                         "--input", "concentration", "--out-dir", tmp_path / "o"], capsys)
    _one_line_error(code, err, art)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_truncated_label_image_is_one_line(tmp_path, capsys, ext):
    io.write_map(tmp_path / "D.nii.gz", np.ones((3, 3, 2)))
    labels = tmp_path / f"lab{ext}"
    _save(labels, np.ones((3, 3, 2), np.int16))
    _truncate(labels)
    code, _, err = _run(["stats", tmp_path / "D.nii.gz", "--labels", labels, "--out", tmp_path / "t.csv"], capsys)
    _one_line_error(code, err, labels)
    assert not (tmp_path / "t.csv").exists()


def test_map_beyond_float32_range_is_written_without_overflow(tmp_path):
    """A series on a scale of 1e40 (an int16 series with scl_slope 1e38) gives an S0 map beyond float32:
    it is written as float64, with no NumPy overflow warning and no infinite value."""
    values = np.array([1e40, 2.0, np.nan, -3e300]).reshape(1, 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        io.write_map(tmp_path / "S0.nii.gz", values)
        io.write_map(tmp_path / "D.nii.gz", np.array([1e-3, np.inf]).reshape(1, 1, 2))
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "S0.nii.gz").dataobj), values)
    assert nib.load(tmp_path / "D.nii.gz").get_data_dtype() == np.float32


# ---------------------------------------------------------------------------------------------
# Nested JSON and TOML
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [200, 100_000])
def test_deeply_nested_sidecar_is_one_line(tmp_path, capsys, depth):
    from qmri.models import VFA

    data = VFA([2.0, 5.0, 10.0, 15.0], 0.005).signal(dict(M0=2000.0, T1=np.full((3, 2, 2), 1.0)))
    _save(tmp_path / "vfa.nii.gz", data.astype(np.float32))
    side = tmp_path / "vfa.json"
    side.write_text('{"FlipAngle": ' + "[" * depth + "]" * depth + "}")
    code, _, err = _run(["t1", tmp_path / "vfa.nii.gz", "--out-dir", tmp_path / "o"], capsys)
    assert "nested deeper than" in _one_line_error(code, err, side)


def test_deeply_nested_cohort_config_is_one_line(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('[fit.a]\nmodel = "adc"\nseries = "x"\nbounds = ' + "[" * 100_000 + "]" * 100_000 + "\n")
    code, _, err = _run(["cohort", "--config", config, tmp_path, tmp_path / "out", "participant"], capsys)
    assert "nested deeper than" in _one_line_error(code, err, config)


def test_read_json_names_the_file_for_every_kind_of_bad_content(tmp_path):
    cases = {"deep.json": "[" * 100_000 + "]" * 100_000, "binary.json": b"\xff\xfe\x00",
             "bad.json": "{'a': 1}", "mid.json": "[" * 65 + "]" * 65}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(QMRIInputError, match=name):
            io.read_json(path)
    (tmp_path / "ok.json").write_text("[" * 64 + "]" * 64)
    io.read_json(tmp_path / "ok.json")


# ---------------------------------------------------------------------------------------------
# Weights files that load with weights_only=True but do not follow the format
# ---------------------------------------------------------------------------------------------
def _adc_weights():
    import torch

    from qmri.fitting.net.weights import builtin_paths

    path = next(p for p in builtin_paths() if p.name == "adc.pt")
    return torch.load(path, map_location="cpu", weights_only=True)


def _tamper(name):
    import torch

    d = _adc_weights()
    net = d["networks"][0]
    edits = {
        "no networks": lambda: d.pop("networks"),
        "no contract": lambda: d.pop("contract"),
        "no bounds": lambda: d["contract"].pop("bounds"),
        "bounds of one parameter missing": lambda: d["contract"]["bounds"].pop("ADC"),
        "no kind": lambda: d["architecture"].pop("kind"),
        "unknown kind": lambda: d["architecture"].update(kind="os.system"),
        "no lower": lambda: net.pop("lower"),
        "empty network list": lambda: d.update(networks=[]),
        "transposed weight": lambda: net.update({"body.first.weight": net["body.first.weight"].T.contiguous()}),
        "huge architecture": lambda: d["architecture"].update(width=10 ** 9),
        "width as text": lambda: d["architecture"].update(width="16"),
        "NaN weight": lambda: net["body.first.weight"].fill_(float("nan")),
        "zero input scale": lambda: net["in_scale"].zero_(),
        "extra tensor": lambda: net.update(evil=torch.zeros(1)),
        "histories not a list": lambda: d.update(histories="x"),
        "parameters not a list": lambda: d["contract"].update(parameters=3),
        "deep architecture": lambda: d["architecture"].update(depth=10 ** 7),
    }
    edits[name]()
    return d


TAMPERED = ["no networks", "no contract", "no bounds", "bounds of one parameter missing", "no kind", "unknown kind",
            "no lower", "empty network list", "transposed weight", "huge architecture", "width as text", "NaN weight",
            "zero input scale", "extra tensor", "histories not a list", "parameters not a list", "deep architecture"]


@pytest.mark.parametrize("name", TAMPERED)
def test_tampered_weights_file_is_refused_naming_the_field(tmp_path, name):
    import torch

    from qmri.fitting.net.weights import Trained

    path = tmp_path / "w.pt"
    torch.save(_tamper(name), path)
    with pytest.raises(QMRIInputError) as info:
        Trained.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:") and "\n" not in message, message


def test_tampered_weights_file_from_the_command_line(dwi, capsys):
    import torch

    path = dwi / "w.pt"
    torch.save(_tamper("transposed weight"), path)
    code, _, err = _run(["adc", dwi / "s.nii", "--bval", dwi / "s.bval", "--method", "dnn", "--weights", path,
                         "--out-dir", dwi / "o"], capsys)
    assert "body.first.weight" in _one_line_error(code, err, path)
    assert not (dwi / "o").exists()


def test_non_finite_network_outputs_are_failed_voxels(monkeypatch):
    """Networks whose outputs are NaN or inf (for some voxels) give failed voxels with NaN, never
    'converged' NaN estimates."""
    from qmri.fitting.net import training
    from qmri.fitting.net.weights import builtin
    from qmri.models import ADC

    model = ADC([0.0, 50, 100, 200, 400, 600, 800, 1000])
    trained = builtin(model)
    real = training.predict

    def broken(networks, inputs, device="cpu", **kw):
        out = real(networks, inputs, device, **kw)
        out[:, 0, :] = np.nan
        out[1:, 1, 1] = np.inf
        return out

    monkeypatch.setattr(training, "predict", broken)
    b = np.asarray(model.network.protocol()["b-values (s/mm2)"])
    Y = 1000 * np.exp(-np.outer([1e-3, 2e-3, 1.5e-3], b))
    res = trained.estimate(model, Y, None)
    assert list(res.status[:2]) == [2, 2] and res.status[2] == 0
    assert np.all(np.isnan(res.params["ADC"][:2])) and np.isfinite(res.params["ADC"][2])


# ---------------------------------------------------------------------------------------------
# Habitat models: loaded through the checks of the qmri habitat flags
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def habitat_model(tmp_path_factory):
    """A gmm habitat model (spatial none) saved by qmri habitat, and the maps it was fitted on."""
    import json

    d = tmp_path_factory.mktemp("habitat")
    rng = np.random.default_rng(0)
    roi = np.zeros((8, 8, 3))
    roi[1:7, 1:7] = 1
    paths = {}
    for name, data in (("D", rng.random((8, 8, 3))), ("f", rng.random((8, 8, 3))), ("roi", roi)):
        paths[name] = d / f"{name}.nii.gz"
        io.write_map(paths[name], data)
    argv = ["habitat", "--maps", paths["D"], paths["f"], "--mask", paths["roi"], "--k", "2", "--method", "gmm",
            "--spatial", "none", "--normalise", "population", "--out-dir", d / "fit", "--save-model",
            d / "model.json", "--quiet"]
    assert main([str(a) for a in argv]) == 0
    return paths, json.loads((d / "model.json").read_text())


BAD_MODELS = {
    "beta text": (lambda m: m["Settings"].update(beta="abc"), "--beta"),
    "beta NaN": (lambda m: m["Settings"].update(beta=float("nan")), "--beta"),
    "beta true": (lambda m: m["Settings"].update(beta=True), "--beta"),
    "beta list": (lambda m: m["Settings"].update(beta=[1]), "--beta"),
    "unknown spatial": (lambda m: m["Settings"].update(spatial="crf"), "--spatial"),
    "unknown order_by": (lambda m: m["Settings"].update(order_by="Ktrans"), "--order-by"),
    "supervoxel size 0": (lambda m: m["Settings"].update(supervoxel_size=0), "--supervoxel-size"),
    "missing setting": (lambda m: m["Settings"].pop("normalise"), "'normalise' missing"),
    "unknown setting": (lambda m: m["Settings"].update(evil=1), "'evil'"),
    "k differs": (lambda m: m["Settings"].update(k=3), "Classes hold 2"),
    "NaN class mean": (lambda m: m["Classes"]["means"][0].__setitem__(0, float("nan")), "means must be finite"),
    "not positive definite": (lambda m: m["Classes"]["covariances"].__setitem__(0, [[1.0, 2.0], [2.0, 1.0]]),
                              "not positive definite"),
    "asymmetric covariance": (lambda m: m["Classes"]["covariances"].__setitem__(0, [[1.0, 0.5], [0.0, 1.0]]),
                              "not a symmetric"),
    "negative weight": (lambda m: m["Classes"].update(weights=[1.5, -0.5]), "weights must be positive"),
    "means not a table": (lambda m: m["Classes"].update(means=[1.0, 2.0]), "k x F table"),
    "population sd 0": (lambda m: m["PopulationStatistics"].update(sd=[0.0, 1.0]), "PopulationStatistics"),
    "no population": (lambda m: m.update(PopulationStatistics=None), "PopulationStatistics"),
    "units not names": (lambda m: m.update(Units=[1, 2]), "Features and Units"),
}


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_bad_habitat_model_is_refused_as_the_flag_would_be(habitat_model, tmp_path, capsys, case):
    import copy
    import json

    paths, saved = habitat_model
    edit, expect = BAD_MODELS[case]
    model = copy.deepcopy(saved)
    edit(model)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(model))
    code, _, err = _run(["habitat", "--maps", paths["D"], paths["f"], "--mask", paths["roi"], "--model", path,
                         "--out-dir", tmp_path / "o"], capsys)
    assert expect in _one_line_error(code, err, path)
    assert not (tmp_path / "o").exists()


def test_bad_kmeans_variance_is_refused(habitat_model, tmp_path, capsys):
    import json

    from qmri.habitats.model import HabitatModel

    _, saved = habitat_model
    for variance in (-1.0, 0.0, float("nan")):
        model = dict(saved, Classes={"method": "kmeans", "means": saved["Classes"]["means"], "variance": variance},
                     Settings=dict(saved["Settings"], method="kmeans"))
        path = tmp_path / "m.json"
        path.write_text(json.dumps(model))
        with pytest.raises(QMRIInputError, match="variance must be a positive number"):
            HabitatModel.load(path)


def test_saved_habitat_model_labels_as_before(habitat_model, tmp_path, capsys):
    """The checks accept what qmri habitat writes: the model labels its own maps as the fit did."""
    paths, _ = habitat_model
    model = paths["D"].parent / "model.json"
    code, _, err = _run(["habitat", "--maps", paths["D"], paths["f"], "--mask", paths["roi"], "--model", model,
                         "--out-dir", tmp_path / "o", "--quiet"], capsys)
    assert code == 0, err
    fitted = np.asarray(nib.load(paths["D"].parent / "fit" / "habitats.nii.gz").dataobj)
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "o" / "habitats.nii.gz").dataobj), fitted)


@pytest.mark.parametrize("datatype", [128, 32, 2304])  # RGB24, complex64, RGBA32
def test_image_of_other_than_real_numbers_is_refused(dwi, capsys, datatype):
    mask = dwi / "m.nii"
    _save(mask, np.ones((3, 3, 2), np.uint8))
    raw = bytearray(mask.read_bytes())
    struct.pack_into("<hh", raw, 70, datatype, {128: 24, 32: 64, 2304: 32}[datatype])
    mask.write_bytes(bytes(raw))
    code, _, err = _run(["adc", dwi / "s.nii", "--bval", dwi / "s.bval", "--mask", mask, "--out-dir", dwi / "o"],
                        capsys)
    assert "is not real numbers" in _one_line_error(code, err, mask)


@pytest.mark.parametrize("argv", [["phantom", "adc", "--block", "1", "1", "1"], ["phantom", "habitat"]])
@pytest.mark.parametrize("seed", ["-1", str(2 ** 32)])
def test_phantom_seed_out_of_range_is_one_line(tmp_path, capsys, argv, seed):
    with pytest.raises(SystemExit) as info:
        main(argv + ["--out-dir", str(tmp_path / "o"), "--seed", seed])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("qmri: error: argument --seed") and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_seed_options_refuse_negative_seeds(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in ("D", "f", "roi"):
        io.write_map(tmp_path / f"{name}.nii.gz", rng.random((4, 4, 2)) if name != "roi" else np.ones((4, 4, 2)))
    code, _, err = _run(["habitat", "--maps", tmp_path / "D.nii.gz", tmp_path / "f.nii.gz", "--mask",
                         tmp_path / "roi.nii.gz", "--k", "2", "--seed", "-1", "--out-dir", tmp_path / "o"], capsys)
    assert "--seed: a seed is an integer from 0 to 4294967295, got -1" in _one_line_error(code, err)
    (tmp_path / "t.bval").write_text("0 100 400 800\n")
    code, _, err = _run(["train", "adc", "--bval", tmp_path / "t.bval", "--seed", "-3", "--out", tmp_path / "w.pt"],
                        capsys)
    assert "--seed: a seed is an integer" in _one_line_error(code, err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "w.pt").exists()


@pytest.mark.parametrize("extra, expect", [(["--n-signals", "-1"], "--n-signals must be at least 2"),
                                           (["--n-signals", "1"], "--n-signals must be at least 2"),
                                           (["--epochs", "0"], "--epochs must be at least 1"),
                                           (["--data-consistency", "nan"], "--data-consistency: expected a finite number"),
                                           (["--data-consistency", "-1"], "--data-consistency must be a finite number >= 0")])
def test_training_sizes_are_checked(tmp_path, capsys, extra, expect):
    (tmp_path / "t.bval").write_text("0 100 400 800\n")
    code, _, err = _run(["train", "adc", "--bval", tmp_path / "t.bval", "--n-signals", "64", "--epochs", "1",
                         "--device", "cpu", *extra, "--out", tmp_path / "w.pt"], capsys)
    assert expect in _one_line_error(code, err)
    assert not (tmp_path / "w.pt").exists()


@pytest.mark.parametrize("option", ["--epochs", "--ensemble"])
def test_self_supervised_zero_epochs_or_networks_is_refused_not_replaced(dwi, capsys, option):
    code, _, err = _run(["adc", dwi / "s.nii", "--bval", dwi / "s.bval", "--method", "dnn", option, "0",
                         "--device", "cpu", "--out-dir", dwi / "o"], capsys)
    assert f"{option} must be at least 1, got 0" in _one_line_error(code, err)
    assert not (dwi / "o").exists()


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_plot_fit_of_a_truncated_series_is_one_line(dwi, capsys, ext):
    assert _run(["adc", dwi / "s.nii", "--bval", dwi / "s.bval", "--out-dir", dwi / "maps", "--quiet"], capsys)[0] == 0
    series = dwi / f"t{ext}"
    _save(series, np.asanyarray(nib.load(dwi / "s.nii").dataobj))
    _truncate(series)
    code, _, err = _run(["plot-fit", series, "--maps", dwi / "maps", "--voxel", "0,0,0", "--out", dwi / "p.png"],
                        capsys)
    assert "truncated" in _one_line_error(code, err, series)
    assert not (dwi / "p.png").exists()

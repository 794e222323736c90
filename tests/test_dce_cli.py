"""``qmri dce`` and ``qmri phantom dce`` end to end on a tiny phantom, and every bad-input case."""

import json

import nibabel as nib
import numpy as np
import pytest

from qmri.cli.main import main
from qmri.errors import QMRIInputError
from qmri.io import write_map
from qmri.models.dce.aif import parker


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """Noise-free tiny phantom written by ``qmri phantom dce`` (2x2 voxels per patch, vp 0/0.02/0.05)."""
    out = tmp_path_factory.mktemp("ph")
    assert main(["phantom", "dce", "--out-dir", str(out), "--snr", "inf", "--block", "2", "2", "1"]) == 0
    return out


def _truth(ph, name):
    return np.asarray(nib.load(ph / f"truth_{name}.nii.gz").dataobj)


def _signal_args(ph, out, *extra):
    return ["dce", str(ph / "dce.nii.gz"), "--time", str(ph / "times.txt"), "--aif", str(ph / "aif.csv"),
            "--t10", "1.0", "--fa", "30", "--tr", "0.005", "--r1", "4.5", "--baseline", "10",
            "--mask", str(ph / "mask.nii.gz"), "--out-dir", str(out), "--quiet", *extra]


def _map(out, name):
    return np.asarray(nib.load(out / f"{name}.nii.gz").dataobj, dtype=np.float64)


def test_phantom_files(phantom):
    for f in ("dce.nii.gz", "dce_conc.nii.gz", "times.txt", "aif.csv", "mask.nii.gz", "truth_Ktrans.nii.gz",
              "truth_ve.nii.gz", "truth_vp.nii.gz", "truth_kep.nii.gz", "dce.json"):
        assert (phantom / f).exists(), f
    t = np.loadtxt(phantom / "times.txt")
    assert nib.load(phantom / "dce.nii.gz").shape[3] == t.size
    meta = json.loads((phantom / "dce.json").read_text())
    assert "concentration" not in meta["acquisition"]


def test_signal_input_recovers_truth(phantom, tmp_path):
    out = tmp_path / "fit"
    assert main(_signal_args(phantom, out, "--model", "etm", "--plot")) == 0
    mask = _truth(phantom, "Ktrans") > 0
    for name in ("Ktrans", "ve", "vp", "kep"):
        np.testing.assert_allclose(_map(out, name)[mask], _truth(phantom, name)[mask], rtol=1e-3, atol=1e-4)
    side = json.loads((out / "Ktrans.json").read_text())
    assert side["Units"] == "1/min" and side["PkModel"] == "etm"
    assert json.loads((out / "ve.json").read_text())["Units"] == ""
    assert (out / "maps.png").stat().st_size > 0 and (out / "curves.png").stat().st_size > 0
    assert (out / "aif.csv").read_text().startswith("time_s,cp_mM")
    assert np.all(_map(out, "status")[mask] == 0)
    assert np.all(np.isnan(_map(out, "Ktrans")[~mask]))


def test_concentration_input_population_aif_and_uniform_frames(phantom, tmp_path):
    out = tmp_path / "fit"
    args = ["dce", str(phantom / "dce_conc.nii.gz"), "--tr-frame", "2", "--aif", "parker", "--aif-delay", "20",
            "--input", "concentration", "--model", "etm", "--mask", str(phantom / "mask.nii.gz"),
            "--out-dir", str(out), "--quiet"]
    assert main(args) == 0
    mask = _truth(phantom, "Ktrans") > 0
    np.testing.assert_allclose(_map(out, "Ktrans")[mask], _truth(phantom, "Ktrans")[mask], rtol=1e-3)


def test_t1_map_same_as_scalar(phantom, tmp_path):
    ref = nib.load(phantom / "mask.nii.gz")
    t1 = tmp_path / "t1.nii.gz"
    write_map(t1, np.ones(ref.shape), affine=ref.affine)
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(_signal_args(phantom, a)) == 0
    args = _signal_args(phantom, b)
    i = args.index("--t10")
    args[i:i + 2] = ["--t1", str(t1)]
    assert main(args) == 0
    np.testing.assert_allclose(_map(a, "Ktrans"), _map(b, "Ktrans"), equal_nan=True)


def test_roi_aif_and_fitted_delay(tmp_path):
    # 3 tissue voxels + 1 arterial voxel (whole blood) in a 2x2x1 concentration image
    t = np.arange(0, 300, 2.0)
    hct = 0.42
    cp = parker(t, hct=hct, delay=20)
    from qmri.models.dce import DCE

    tissue = DCE(t, parker(t, hct=hct, delay=24), "tofts").concentration(
        {"Ktrans": np.array([0.1, 0.2, 0.3]), "ve": np.array([0.2, 0.3, 0.4])})
    conc = np.zeros((2, 2, 1, t.size))
    conc[0, 0, 0], conc[0, 1, 0], conc[1, 0, 0] = tissue
    conc[1, 1, 0] = cp * (1 - hct)
    img, art, tissue_mask = tmp_path / "c.nii.gz", tmp_path / "art.nii.gz", tmp_path / "m.nii.gz"
    write_map(img, conc)
    write_map(art, (np.arange(4).reshape(2, 2, 1) == 3).astype(float))
    write_map(tissue_mask, (np.arange(4).reshape(2, 2, 1) < 3).astype(float))
    out = tmp_path / "fit"
    assert main(["dce", str(img), "--tr-frame", "2", "--aif", f"roi:{art}", "--hct", str(hct),
                 "--input", "concentration", "--fit-delay", "--mask", str(tissue_mask),
                 "--out-dir", str(out), "--quiet"]) == 0
    np.testing.assert_allclose(_map(out, "delay")[[0, 0, 1], [0, 1, 0], 0], 4.0, atol=0.05)
    np.testing.assert_allclose(_map(out, "Ktrans")[[0, 0, 1], [0, 1, 0], 0], [0.1, 0.2, 0.3], rtol=2e-3)


def test_refuses_to_overwrite_without_force(phantom, tmp_path, capsys):
    out = tmp_path / "fit"
    assert main(_signal_args(phantom, out, "--method", "linear")) == 0
    assert main(_signal_args(phantom, out, "--method", "linear")) == 2
    assert "--force" in capsys.readouterr().err
    assert main(_signal_args(phantom, out, "--method", "linear", "--force")) == 0


def _expect_error(argv, capsys, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("qmri: error:") and "Traceback" not in err
    for f in fragments:
        assert f in err, err


def test_frame_count_differs_from_time_list(phantom, tmp_path, capsys):
    times = tmp_path / "t.txt"
    times.write_text("0 2 4\n6 8\n")
    args = _signal_args(phantom, tmp_path / "o")
    args[args.index("--time") + 1] = str(times)
    _expect_error(args, capsys, "5 frame times", "150 frames")


def test_non_monotonic_times(phantom, tmp_path, capsys):
    t = np.loadtxt(phantom / "times.txt")
    t[7], t[8] = t[8], t[7]
    times = tmp_path / "t.txt"
    times.write_text(" ".join(f"{v:g}" for v in t))
    args = _signal_args(phantom, tmp_path / "o")
    args[args.index("--time") + 1] = str(times)
    _expect_error(args, capsys, "strictly increasing")


def test_frame_times_in_ms_are_refused_before_any_aif_is_built(phantom, tmp_path, capsys):
    # A series spanning years (times in ms read as s) once built a population AIF of 1e8 samples.
    t = np.loadtxt(phantom / "times.txt") * 1e6
    times = tmp_path / "t.txt"
    times.write_text(" ".join(f"{v:g}" for v in t))
    args = _signal_args(phantom, tmp_path / "o")
    args[args.index("--time") + 1] = str(times)
    _expect_error(args, capsys, "t.txt: the frames span", "divide them by 1000")
    assert not (tmp_path / "o").exists()


def test_a_population_aif_grid_beyond_its_limit_is_refused():
    from qmri.models.dce.aif import MAX_POPULATION_SAMPLES, population_samples

    t = np.array([0.0, 1e-6, 600.0])  # a tenth of the 1 us gap: 6e9 samples
    with pytest.raises(QMRIInputError, match=f"at most {MAX_POPULATION_SAMPLES}"):
        population_samples("parker", t)


def test_t1_map_wrong_shape(phantom, tmp_path, capsys):
    t1 = tmp_path / "t1.nii.gz"
    write_map(t1, np.ones((3, 3, 1)))
    args = _signal_args(phantom, tmp_path / "o")
    i = args.index("--t10")
    args[i:i + 2] = ["--t1", str(t1)]
    _expect_error(args, capsys, "T1 map shape")


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_zero_or_negative_t1(phantom, tmp_path, capsys, value):
    args = _signal_args(phantom, tmp_path / "o")
    args[args.index("--t10") + 1] = str(value)
    _expect_error(args, capsys, "--t10 must be a positive T1")


def test_t1_map_with_failed_voxels_fails_those_voxels_only(phantom, tmp_path, capsys):
    """A T1 map from ``qmri t1`` has NaN where its own fit failed: those voxels (and zero or negative
    ones) become failed DCE voxels, counted in a warning naming the file; the others are fitted as
    with a clean map."""
    ref = nib.load(phantom / "mask.nii.gz")
    inside = np.argwhere(np.asarray(ref.dataobj) > 0)
    t1 = np.ones(ref.shape)
    bad = [tuple(v) for v in inside[:3]]
    for v, value in zip(bad, (np.nan, 0.0, -1.0)):
        t1[v] = value
    path = tmp_path / "t1.nii.gz"
    write_map(path, t1, affine=ref.affine)
    clean = tmp_path / "clean.nii.gz"
    write_map(clean, np.ones(ref.shape), affine=ref.affine)
    runs = {}
    for name, t1_path in (("o", path), ("c", clean)):
        args = _signal_args(phantom, tmp_path / name)
        i = args.index("--t10")
        args[i:i + 2] = ["--t1", str(t1_path)]
        args.remove("--quiet")
        code = main(args)
        runs[name] = capsys.readouterr()
        assert code == 0, runs[name].err
    n = len(inside)
    assert f"{path}: 3 of the {n} fitted voxels have no usable T1" in runs["o"].err
    assert f"failed {100 * 3 / n:.1f}%" in runs["o"].out and "no usable T1" not in runs["c"].err
    status, ktrans = _map(tmp_path / "o", "status"), _map(tmp_path / "o", "Ktrans")
    for v in bad:
        assert status[v] == 2 and np.isnan(ktrans[v])
    good = np.asarray(ref.dataobj) > 0
    for v in bad:
        good[v] = False
    np.testing.assert_array_equal(ktrans[good], _map(tmp_path / "c", "Ktrans")[good])


def test_aif_shorter_than_series(phantom, tmp_path, capsys):
    aif = tmp_path / "aif.csv"
    aif.write_text("time_s,cp_mM\n0,0\n100,1\n200,0.5\n")
    args = _signal_args(phantom, tmp_path / "o")
    args[args.index("--aif") + 1] = str(aif)
    _expect_error(args, capsys, "shorter than the series")


def test_signal_input_needs_acquisition(phantom, tmp_path, capsys):
    args = _signal_args(phantom, tmp_path / "o")
    i = args.index("--fa")
    del args[i:i + 2]
    _expect_error(args, capsys, "--fa")
    args = _signal_args(phantom, tmp_path / "o")
    i = args.index("--t10")
    del args[i:i + 2]
    _expect_error(args, capsys, "--t1 T1.nii.gz or --t10")


def test_unknown_aif(phantom, tmp_path, capsys):
    args = _signal_args(phantom, tmp_path / "o")
    args[args.index("--aif") + 1] = "weinmann"
    _expect_error(args, capsys, "not a population AIF")


def test_blood_aif_file_is_converted(phantom, tmp_path):
    t = np.loadtxt(phantom / "aif.csv", delimiter=",", skiprows=1)[:, 0]  # the phantom AIF's own grid
    cb = parker(t, hct=0.0, delay=20)
    aif = tmp_path / "blood.csv"
    aif.write_text("".join(f"{a:g},{b:.10g}\n" for a, b in zip(t, cb)))
    out = tmp_path / "fit"
    args = _signal_args(phantom, out, "--aif-blood", "--hct", "0.42", "--model", "etm")
    args[args.index("--aif") + 1] = str(aif)
    assert main(args) == 0
    mask = _truth(phantom, "Ktrans") > 0
    np.testing.assert_allclose(_map(out, "Ktrans")[mask], _truth(phantom, "Ktrans")[mask], rtol=1e-3)


@pytest.mark.slow
def test_demo_part(tmp_path):
    from qmri.models import DCE
    from qmri.workflows.demo import demo_part

    table = demo_part(DCE, tmp_path)
    assert "tofts" in table and "etm" in table
    assert (tmp_path / "etm" / "Ktrans.nii.gz").exists() and (tmp_path / "phantom" / "dce_conc.nii.gz").exists()


def test_python_pipeline_equals_the_command_line(phantom, tmp_path):
    """qmri.workflows.fit_dce on arrays gives what ``qmri dce`` gives on the files, with the same defaults."""
    from qmri.workflows import fit_dce

    out = tmp_path / "fit"
    assert main(_signal_args(phantom, out, "--model", "etm")) == 0
    signal = np.asarray(nib.load(phantom / "dce.nii.gz").dataobj, dtype=np.float64)
    t = np.loadtxt(phantom / "times.txt")
    mask = _truth(phantom, "Ktrans") > 0
    maps = fit_dce(signal, t, phantom / "aif.csv", model="etm", t10=1.0, fa=30, tr=0.005, r1=4.5, baseline=10,
                   mask=mask)
    for name in ("Ktrans", "ve", "vp", "kep"):
        np.testing.assert_allclose(maps[name], _map(out, name), rtol=1e-6, equal_nan=True)
    assert maps.provenance["aif"] == str(phantom / "aif.csv") and maps.provenance["baseline_frames"] == 10
    # a measured curve given as arrays, and a population AIF by name
    cp = np.loadtxt(phantom / "aif.csv", delimiter=",", skiprows=1)
    same = fit_dce(signal, t, (cp[:, 0], cp[:, 1]), model="etm", t10=1.0, fa=30, tr=0.005, baseline=10, mask=mask)
    np.testing.assert_allclose(same["Ktrans"], maps["Ktrans"], rtol=1e-9, equal_nan=True)
    with pytest.raises(QMRIInputError, match="--fa"):
        fit_dce(signal, t, "parker", t10=1.0, tr=0.005, baseline=10)

"""Habitat analysis: recovery of the phantom's sub-regions from maps fitted by qmri, label meaning,
k selection, cohort models, resampling, statistics and every bad-input case (exit 2, nothing written)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from qmri.cli.main import main
from qmri.habitats import analyse, from_arrays, load_subject
from qmri.habitats.features import MapSource, resample_to_grid
from qmri.habitats.phantom import write_habitat_phantom
from qmri.habitats.statistics import adjacency, entropy_bits, habitat_statistics
from qmri.workflows.habitat_demo import fit_subject

N_SUBJECTS = 3
#: True sub-region numbers in ascending order of D (phantoms/habitat.json): hypercellular, stroma, core.
TRUE_ORDER = [1, 2, 3]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """The phantom at its default noise, its IVIM and DCE series fitted by qmri (maps on two grids),
    and a cohort table pointing at the fitted map folders."""
    d = tmp_path_factory.mktemp("habitat")
    subs = write_habitat_phantom(d / "phantom", subjects=N_SUBJECTS, seed=3)
    lines = ["id,mask,D,f,Ktrans"]
    for s in subs:
        ivim, dce = fit_subject(s, d / "fit" / s.id)
        lines.append(f"{s.id},phantom/{s.id}/roi.nii.gz,fit/{s.id}/ivim,fit/{s.id}/ivim,fit/{s.id}/dce")
    (d / "cohort.csv").write_text("\n".join(lines) + "\n")
    return d, subs


def _subject(d, s):
    return load_subject(s.id, d / "phantom" / s.id / "roi.nii.gz",
                        [MapSource("D", d / "fit" / s.id / "ivim"), MapSource("f", d / "fit" / s.id / "ivim"),
                         MapSource("Ktrans", d / "fit" / s.id / "dce")])


@pytest.fixture(scope="module")
def subjects(cohort):
    d, subs = cohort
    return [_subject(d, s) for s in subs]


def _ari(s, labels):
    where = labels > 0
    return adjusted_rand_score(s.labels[where], labels[where])


def _meaning(s, labels, k):
    """The true sub-region each habitat covers most."""
    return [int(np.bincount(s.labels[labels == h], minlength=4)[1:].argmax()) + 1 for h in range(1, k + 1)]


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------------------------------------
# Recovery and label meaning
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_recovers_subregions_from_fitted_maps(cohort, subjects, method):
    _, subs = cohort
    res = analyse(subjects, k=3, method=method)
    aris = [_ari(s, r.labels) for s, r in zip(subs, res.subjects)]
    assert min(aris) >= 0.9, aris
    for s, r in zip(subs, res.subjects):
        assert _meaning(s, r.labels, 3) == TRUE_ORDER
        assert r.subject.resampled.get("Ktrans", "").startswith("linear")  # DCE maps came from another grid


def test_spatial_default_beats_voxelwise_clustering(cohort, subjects):
    _, subs = cohort
    mrf = np.mean([_ari(s, r.labels) for s, r in zip(subs, analyse(subjects, k=3).subjects)])
    voxel = np.mean([_ari(s, r.labels) for s, r in zip(subs, analyse(subjects, k=3, spatial="none").subjects)])
    assert voxel < 0.85 and mrf > voxel + 0.1, (voxel, mrf)


def test_two_runs_give_identical_labels(subjects):
    a = analyse(subjects, k=3)
    b = analyse(subjects, k=3)
    for x, y in zip(a.subjects, b.subjects):
        np.testing.assert_array_equal(x.labels, y.labels)


def test_subjects_clustered_one_at_a_time_keep_the_label_meaning(cohort, subjects):
    _, subs = cohort
    for s, x in zip(subs, subjects):
        r = analyse([x], k=3).subjects[0]
        assert _meaning(s, r.labels, 3) == TRUE_ORDER
        assert _ari(s, r.labels) >= 0.9


def test_two_level_supervoxels_keep_the_label_meaning(cohort, subjects):
    _, subs = cohort
    res = analyse(subjects, k=3, spatial="supervoxels")
    for s, r in zip(subs, res.subjects):
        assert _meaning(s, r.labels, 3) == TRUE_ORDER


# ---------------------------------------------------------------------------------------------
# Command line: k auto, cohort outputs, saved model
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cohort_run(cohort, tmp_path_factory):
    d, _ = cohort
    out = tmp_path_factory.mktemp("run")
    code = main(["habitat", "--cohort", str(d / "cohort.csv"), "--out-dir", str(out / "h"),
                 "--save-model", str(out / "model.json"), "--quiet"])
    assert code == 0
    return out


def test_k_auto_picks_the_true_k(cohort_run):
    scan = (cohort_run / "h" / "k_selection.csv").read_text().splitlines()
    chosen = [line.split(",")[0] for line in scan[1:] if line.endswith(",1")]
    assert chosen == ["3"], scan
    assert [line.split(",")[0] for line in scan[1:]] == [str(k) for k in range(2, 9)]


def test_cohort_outputs(cohort, cohort_run):
    d, subs = cohort
    table = (cohort_run / "h" / "subjects.csv").read_text().splitlines()
    assert table[0].startswith("id,") and len(table) == 1 + N_SUBJECTS
    for s in subs:
        img = nib.load(cohort_run / "h" / s.id / "habitats.nii.gz")
        roi = nib.load(d / "phantom" / s.id / "roi.nii.gz")
        assert img.get_data_dtype() == np.uint8
        np.testing.assert_allclose(img.affine, roi.affine)
        labels = np.asarray(img.dataobj)
        assert set(np.unique(labels[np.asarray(roi.dataobj) == 0])) == {0}
        assert _ari(s, labels) >= 0.9
        side = json.loads((cohort_run / "h" / s.id / "habitats.json").read_text())
        fr = [h["fraction"] for h in side["Habitats"]]
        assert side["K"] == 3 and abs(sum(fr) - 1) < 1e-9
        vol = sum(h["volume_ml"] for h in side["Habitats"])
        assert vol == pytest.approx(int(s.roi.sum()) * 2 * 2 * 3 / 1000)  # 2 x 2 x 3 mm voxels
        assert side["Features"][2]["resampled"].startswith("linear from grid")


def test_demo_cohort_table_written_from_a_relative_folder_is_read_back(cohort, tmp_path, monkeypatch, capsys):
    """The demo's habitat step from a relative output folder (as ``qmri demo --out-dir demo_out``
    runs it): the table's paths resolve from the table's folder, wherever it is read from."""
    import shutil

    from qmri.habitats.features import read_cohort
    from qmri.workflows.habitat_demo import write_cohort_table

    d, subs = cohort
    monkeypatch.chdir(tmp_path)
    out = Path("demo_out") / "habitat"  # relative, as the README's command gives it
    out.mkdir(parents=True)
    for part in ("phantom", "fit"):
        shutil.copytree(d / part, out / part)
    table = write_cohort_table(out / "cohort.csv", [(s.id, out / "phantom" / s.id / "roi.nii.gz",
                                                     out / "fit" / s.id / "ivim", out / "fit" / s.id / "dce")
                                                    for s in subs])
    masks = [m.resolve() for _, m, _ in read_cohort(table)[1]]
    assert all(m.is_file() and m.is_relative_to(out.resolve()) for m in masks)
    code, stdout, err = _run(["habitat", "--cohort", table, "--out-dir", out / "habitats", "--k", "3"], capsys)
    assert code == 0, err
    # the summary's class means carry the maps' units (f is a fraction: none)
    means = next(line for line in stdout.splitlines() if line.startswith("mean features per habitat"))
    assert re.search(r"h1: D [0-9.e-]+ mm2/s, f [0-9.e-]+, Ktrans [0-9.e-]+ 1/min; h2: ", means), means
    monkeypatch.chdir(out.parent)  # read from elsewhere: the same files
    assert [m.resolve() for _, m, _ in read_cohort("habitat/cohort.csv")[1]] == masks


def _apply_model(d, s, second, model, out):
    """``qmri habitat`` on one subject's fitted maps (D, ``second``, Ktrans) with a saved model."""
    return ["habitat", "--maps", f"D={d}/fit/{s.id}/ivim", f"{second}={d}/fit/{s.id}/ivim", f"Ktrans={d}/fit/{s.id}/dce",
            "--mask", d / "phantom" / s.id / "roi.nii.gz", "--model", model, "--out-dir", out]


def test_saved_model_labels_a_new_subject_as_the_population_run(cohort, cohort_run, tmp_path, capsys):
    d, subs = cohort
    s = subs[1]
    code, _, err = _run(_apply_model(d, s, "f", cohort_run / "model.json", tmp_path / "one"), capsys)
    assert code == 0, err
    new = np.asarray(nib.load(tmp_path / "one" / "habitats.nii.gz").dataobj)
    old = np.asarray(nib.load(cohort_run / "h" / s.id / "habitats.nii.gz").dataobj)
    np.testing.assert_array_equal(new, old)


def test_model_refuses_other_features(cohort, cohort_run, tmp_path, capsys):
    d, subs = cohort
    s = subs[0]
    code, _, err = _run(_apply_model(d, s, "Dstar", cohort_run / "model.json", tmp_path / "x"), capsys)
    assert code == 2 and "differ from the model" in err and not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------------------
# Resampling, statistics
# ---------------------------------------------------------------------------------------------
def test_resampling_across_grids_against_a_known_shift():
    """A linear field in scanner coordinates, sampled on a coarse shifted grid, is recovered exactly
    on a fine grid by linear interpolation; a whole-voxel shift moves the array by that many voxels."""
    src = np.diag([4.0, 4.0, 3.0, 1.0])
    src[:3, 3] = [-1.0, 2.5, 0.0]
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in (10, 9, 6)], indexing="ij"), -1)
    xyz = ijk @ src[:3, :3].T + src[:3, 3]

    def field(p):
        return 0.3 * p[..., 0] - 0.7 * p[..., 1] + 1.1 * p[..., 2] + 5.0

    dst = np.diag([2.0, 2.0, 3.0, 1.0])
    dst[:3, 3] = [3.0, 6.5, 3.0]  # inside the source field of view, off the source voxel centres
    out = resample_to_grid(field(xyz), src, (12, 10, 4), dst)
    dijk = np.stack(np.meshgrid(*[np.arange(n) for n in (12, 10, 4)], indexing="ij"), -1)
    expect = field(dijk @ dst[:3, :3].T + dst[:3, 3])
    inside = np.isfinite(out)
    assert inside.mean() > 0.8
    np.testing.assert_allclose(out[inside], expect[inside], rtol=0, atol=1e-9)
    shifted = src.copy()
    shifted[:3, 3] += src[:3, :3] @ np.array([2.0, 1.0, 0.0])  # the same grid moved by (2, 1, 0) voxels
    moved = resample_to_grid(field(xyz), src, (10, 9, 6), shifted)
    np.testing.assert_allclose(moved[:8, :8], field(xyz)[2:, 1:], atol=1e-9)
    assert np.all(np.isnan(moved[8:])) and np.all(np.isnan(moved[:, 8:]))


def test_statistics_of_a_known_map():
    labels = np.zeros((4, 3, 1), np.uint8)
    labels[0:2, :, 0] = 1          # one block of 6 voxels
    labels[2, 0, 0] = 2            # two separate voxels of habitat 2
    labels[3, 2, 0] = 2
    usable = labels > 0
    values = np.arange(usable.sum(), dtype=float)[:, None]
    stats = habitat_statistics(labels, values, usable, ["x"], ["u"], 2, voxel_ml=0.012)
    h1, h2 = stats["habitats"]
    assert (h1["voxels"], h2["voxels"]) == (6, 2)
    assert h1["components"] == 1 and h2["components"] == 2
    assert h1["volume_ml"] == pytest.approx(0.072) and h2["fraction"] == pytest.approx(0.25)
    assert stats["entropy_bits"] == pytest.approx(entropy_bits([0.75, 0.25]))
    assert entropy_bits([0.5, 0.5]) == pytest.approx(1.0)
    adj = np.array(stats["adjacency"])
    assert adj[1, 1] == 7              # face pairs inside the 2 x 3 block
    assert adj[1, 2] == adj[2, 1] == 1  # (1,0)-(2,0)
    assert adj[2, 2] == 0 and adj[0, 0] == 0
    np.testing.assert_array_equal(adj, adj.T)
    np.testing.assert_array_equal(adjacency(labels, 2), adj)


def test_from_arrays_single_habitat_order_by(tmp_path):
    roi = np.zeros((12, 12, 4), bool)
    roi[2:10, 2:10] = True
    a = np.where(np.arange(12)[:, None, None] < 6, 1.0, 3.0) * np.ones((12, 12, 4))
    b = np.where(np.arange(12)[:, None, None] < 6, 5.0, -2.0) * np.ones((12, 12, 4))
    x = from_arrays("s", {"a": a, "b": b}, roi)
    first = analyse([x], k=2).subjects[0].labels
    by_b = analyse([x], k=2, order_by="b").subjects[0].labels
    assert first[2, 5, 0] == 1 and first[8, 5, 0] == 2  # ascending a
    assert by_b[2, 5, 0] == 2 and by_b[8, 5, 0] == 1    # ascending b


# ---------------------------------------------------------------------------------------------
# Bad input: exit 2, one line, nothing written
# ---------------------------------------------------------------------------------------------
def _nifti(path, data, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.eye(4) if affine is None else affine), path)
    return path


@pytest.fixture
def small(tmp_path):
    rng = np.random.default_rng(0)
    roi = np.zeros((8, 8, 3))
    roi[1:7, 1:7] = 1
    d = tmp_path / "in"
    d.mkdir()
    return {"D": _nifti(d / "D.nii.gz", rng.random((8, 8, 3))), "f": _nifti(d / "f.nii.gz", rng.random((8, 8, 3))),
            "K2": _nifti(d / "K2.nii.gz", rng.random((4, 4, 3)), np.diag([2.0, 2.0, 1.0, 1.0])),
            "roi": _nifti(d / "roi.nii.gz", roi), "empty": _nifti(d / "empty.nii.gz", np.zeros((8, 8, 3))),
            "tiny": _nifti(d / "tiny.nii.gz", np.pad(np.ones((1, 2, 1)), ((0, 7), (0, 6), (0, 2)))),
            "dir": d}


@pytest.mark.parametrize("case", ["grid_no_resample", "empty_roi", "fewer_voxels_than_k", "missing_file",
                                  "bad_csv_row", "csv_missing_map", "settings_with_model", "existing_output"])
def test_bad_input_exits_2_and_writes_nothing(small, tmp_path, capsys, case):
    out = tmp_path / "out"
    base = ["habitat", "--out-dir", out]
    maps = ["--maps", small["D"], small["f"]]
    if case == "grid_no_resample":
        argv = base + ["--maps", small["D"], small["K2"], "--mask", small["roi"], "--no-resample"]
        expect = "drop --no-resample"
    elif case == "empty_roi":
        argv = base + maps + ["--mask", small["empty"]]
        expect = "ROI is empty"
    elif case == "fewer_voxels_than_k":
        argv = base + maps + ["--mask", small["tiny"], "--k", "3"]
        expect = "fewer than k = 3"
    elif case == "missing_file":
        argv = base + ["--maps", small["D"], small["dir"] / "nope.nii.gz", "--mask", small["roi"]]
        expect = "not found"
    elif case == "bad_csv_row":
        csv = small["dir"] / "cohort.csv"
        csv.write_text(f"id,mask,D,f\ns1,{small['roi']},{small['D']},{small['f']}\ns2;1.5;abc\n")
        argv = base + ["--cohort", csv]
        expect = "line 3"
    elif case == "csv_missing_map":
        csv = small["dir"] / "cohort.csv"
        csv.write_text(f"id,mask,D,f\ns1,{small['roi']},{small['D']},{small['f']}\ns2,{small['roi']},{small['D']},"
                       "missing.nii.gz\n")
        argv = base + ["--cohort", csv]
        expect = "not found"
    elif case == "settings_with_model":
        model = small["dir"] / "m.json"
        model.write_text("{}")
        argv = base + maps + ["--mask", small["roi"], "--model", model, "--k", "3"]
        expect = "--model fixes the clustering settings"
    else:
        out.mkdir()
        (out / "habitats.nii.gz").write_text("x")
        argv = base + maps + ["--mask", small["roi"], "--k", "2", "--spatial", "none"]
        expect = "use --force"
    before = sorted(p.name for p in out.rglob("*")) if out.exists() else None
    code, stdout, err = _run(argv, capsys)
    assert code == 2, (stdout, err)
    assert err.startswith("qmri: error:") and expect in err and len(err.strip().splitlines()) == 1, err
    after = sorted(p.name for p in out.rglob("*")) if out.exists() else None
    assert after == before


def test_resampled_map_is_accepted_and_recorded(small, tmp_path, capsys):
    code, _, err = _run(["habitat", "--maps", small["D"], small["K2"], "--mask", small["roi"], "--k", "2",
                         "--out-dir", tmp_path / "o"], capsys)
    assert code == 0, err
    side = json.loads((tmp_path / "o" / "habitats.json").read_text())
    assert side["Features"][1]["resampled"].startswith("linear from grid [4, 4, 3]")
    assert side["Features"][0]["resampled"].startswith("no")


# ---------------------------------------------------------------------------------------------
# Phantom command, import boundary
# ---------------------------------------------------------------------------------------------
def test_phantom_command_writes_and_refuses_overwrite(tmp_path, capsys):
    out = tmp_path / "ph"
    code, stdout, err = _run(["phantom", "habitat", "--out-dir", out, "--subjects", "2", "--voxels", "800"], capsys)
    assert code == 0, err
    assert "qmri habitat --cohort" in stdout
    dwi, dce = nib.load(out / "sub-01" / "dwi.nii.gz"), nib.load(out / "sub-01" / "dce.nii.gz")
    assert dwi.shape[:3] != dce.shape[:3] and not np.allclose(dwi.affine, dce.affine)
    assert dce.shape[0] * 2 == dwi.shape[0] and dce.header.get_zooms()[0] == 2 * dwi.header.get_zooms()[0]
    labels = np.asarray(nib.load(out / "sub-02" / "labels.nii.gz").dataobj)
    roi = np.asarray(nib.load(out / "sub-02" / "roi.nii.gz").dataobj) > 0
    assert set(np.unique(labels[roi])) == {1, 2, 3} and np.all(labels[~roi] == 0)
    code, _, err = _run(["phantom", "habitat", "--out-dir", out, "--subjects", "2", "--voxels", "800"], capsys)
    assert code == 2 and "use --force" in err


def test_habitat_package_imports_no_fitting_code():
    code = ("import sys, qmri.habitats, qmri.habitats.files, qmri.habitats.figures; "
            "bad = [m for m in sys.modules if m.startswith(('qmri.models', 'qmri.fitting', 'qmri.workflows', "
            "'torch', 'numba'))]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_normalisations_and_model_file_round_trip(subjects, tmp_path):
    from qmri.errors import QMRIInputError
    from qmri.habitats.model import HabitatModel
    from qmri.habitats.normalise import normalise, population_statistics

    x = subjects[0].values
    z = normalise(x, "zscore", ["D", "f", "K"])
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1, rtol=1e-12)
    r = normalise(x, "robust", ["D", "f", "K"])
    q1, med, q3 = np.percentile(r, [25, 50, 75], axis=0)
    np.testing.assert_allclose(med, 0, atol=1e-12)
    np.testing.assert_allclose(q3 - q1, 1, rtol=1e-12)
    pop = population_statistics([s.values for s in subjects])
    p = normalise(x, "population", ["D", "f", "K"], population=pop)
    np.testing.assert_allclose(p, (x - np.array(pop["mean"])) / np.array(pop["sd"]))
    with pytest.raises(QMRIInputError, match="constant"):
        normalise(np.ones((10, 2)), "zscore", ["a", "b"])
    res = analyse(subjects, k=3, method="gmm", normalise="population")
    res.model.save(tmp_path / "m.json")
    back = HabitatModel.load(tmp_path / "m.json")
    assert back.population == res.model.population and back.settings == res.model.settings
    for a, b in ((back.mixture.means, res.model.mixture.means), (back.mixture.covariances, res.model.mixture.covariances),
                 (back.mixture.weights, res.model.mixture.weights)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.label(subjects[2]), res.subjects[2].labels)

"""Habitat features, outcome statistics and ``qmri predict``: honest validation on the outcome phantom,
the leak of the cluster-and-select-first order, saved models as data with their contract."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from qmri import io
from qmri.habitats import from_arrays
from qmri.habitats.phantom import definition, draw_outcome, habitat_subject

UNITS = {"D": "mm2/s", "f": "", "Ktrans": "1/min"}
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


def qmri_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "qmri.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=dict(os.environ))


@pytest.fixture(scope="module")
def phantom():
    """80 phantom tumours (250 voxels) as their true maps, and the outcome drawn from them."""
    d = definition()
    subs = [habitat_subject(i, voxels=250, seed=0, d=d, series=False) for i in range(80)]
    feats = [from_arrays(s.id, {k: s.truth[k] for k in UNITS}, s.roi, AFFINE, UNITS) for s in subs]
    return subs, feats, draw_outcome(subs, seed=0)


def write_cohort(folder, subs, outcome=None, units=UNITS):
    """A cohort table of NIfTI truth maps (units in the sidecars) and an outcome table."""
    lines = ["id,mask," + ",".join(units)]
    for s in subs:
        d = folder / s.id
        d.mkdir(parents=True, exist_ok=True)
        io.write_map(d / "roi.nii.gz", s.roi, affine=AFFINE, dtype=np.uint8)
        for k, u in units.items():
            io.write_map(d / f"{k}.nii.gz", s.truth[k], affine=AFFINE)
            io.write_json(d / f"{k}.json", {"Units": u})
        lines.append(f"{s.id},{s.id}/roi.nii.gz," + ",".join(f"{s.id}/{k}.nii.gz" for k in units))
    (folder / "cohort.csv").write_text("\n".join(lines) + "\n")
    if outcome is not None:
        (folder / "outcome.csv").write_text("id,lnm\n" + "".join(f"{s.id},{'yes' if y else 'no'}\n"
                                                              for s, y in zip(subs, outcome)))
    return folder / "cohort.csv"


# ---------------------------------------------------------------------------------------------
# Habitat features
# ---------------------------------------------------------------------------------------------
def test_glcm_of_every_habitat_in_one_call_equals_per_habitat_per_slice(phantom):
    from skimage.feature import graycomatrix, graycoprops

    from qmri.habitats.analysis import analyse
    from qmri.habitats.radiomics import GLCM_LEVELS, glcm_properties, quantise

    _, feats, _ = phantom
    r = analyse(feats[:3], k=3, spatial="none").subjects[2]
    x = r.subject
    vol = np.zeros(x.usable.shape)
    vol[x.usable] = x.values[:, 2]
    grey = quantise(vol, x.usable)
    got = glcm_properties(grey, r.labels, 3)
    for h in (1, 2, 3):
        g = np.where(r.labels == h, grey, 0).astype(np.uint8)
        total = np.zeros((GLCM_LEVELS + 1, GLCM_LEVELS + 1))
        for z in range(g.shape[2]):
            total += graycomatrix(g[:, :, z], [1], [0, np.pi / 2], levels=GLCM_LEVELS + 1,
                                  symmetric=True)[:, :, 0, :].sum(axis=-1)
        ref = total[1:, 1:][:, :, None, None]
        for prop in ("contrast", "homogeneity", "energy", "correlation", "dissimilarity"):
            assert got[h - 1][prop] == pytest.approx(float(graycoprops(ref, prop)[0, 0]), rel=1e-12, abs=1e-12)


def test_habitat_features_known_geometry():
    """Two habitats: h1 one 2x2x2 cube, h2 two separated single voxels."""
    from qmri.habitats.radiomics import ith_score, subject_features

    labels = np.zeros((8, 6, 4), dtype=np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    labels[5, 1, 1] = 2
    labels[5, 4, 2] = 2
    roi = labels > 0
    x = from_arrays("s", {"D": np.where(roi, 1e-3, np.nan)}, roi, units={"D": "mm2/s"})
    v, u = subject_features(labels, x, 2)
    assert v["fraction_h1"] == pytest.approx(0.8) and v["fraction_h2"] == pytest.approx(0.2)
    assert v["components_h1"] == 1 and v["components_h2"] == 2
    assert v["largest_h2"] == pytest.approx(0.5)
    # ITH = 1 - (8/1 + 1/2) / 10
    assert v["ith_score"] == pytest.approx(1 - 8.5 / 10) == ith_score(labels, 2)
    msi = {c: val for c, val in v.items() if c.startswith("msi_")}
    assert sum(msi.values()) == pytest.approx(1.0)
    assert v["msi_1_2"] == 0.0  # never face neighbours
    # the cube: 12 internal face pairs; its 24 outer faces and the 2 x 6 faces of the single voxels
    assert v["msi_1_1"] == pytest.approx(12 / (12 + 24 + 12))
    assert u["D_mean_h1"] == "mm2/s" and u["fraction_h1"] == "1" and u["volume_ml"] == "mL"
    assert set(u) == set(v) and all(u.values())


# ---------------------------------------------------------------------------------------------
# Outcome statistics
# ---------------------------------------------------------------------------------------------
def test_auc_delong_and_icc_against_references():
    from sklearn.metrics import roc_auc_score

    from qmri import outcomestats as st

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = y + rng.normal(size=200)
    assert st.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    d = st.delong(y, s)
    assert d["ci_low"] < d["auc"] < d["ci_high"]
    # the DeLong SE against the bootstrap SE
    boots = []
    for _ in range(400):
        i = rng.integers(0, 200, 200)
        boots.append(st.auc(y[i], s[i]))
    assert d["se"] == pytest.approx(np.std(boots), rel=0.2)
    same = st.delong_test(y, s, s)
    assert same["difference"] == 0 and same["p"] == pytest.approx(1.0)
    # ICC: between-subject SD 1, within-subject SD 0.5 -> ICC 0.8
    t = rng.normal(size=(400, 1))
    r = st.icc(t + 0.5 * rng.normal(size=(400, 2)))
    assert r["icc2_1_ci"][0] < 0.8 < r["icc2_1_ci"][1]
    assert r["icc3_1_ci"][0] < 0.8 < r["icc3_1_ci"][1]
    assert st.icc(np.hstack([t, t]))["icc2_1"] == pytest.approx(1.0)
    # calibration of probabilities that are calibrated
    p = rng.uniform(0.05, 0.95, 4000)
    c = st.calibration((rng.uniform(size=4000) < p).astype(int), p)
    assert abs(c["intercept"]) < 0.1 and abs(c["slope"] - 1) < 0.1


# ---------------------------------------------------------------------------------------------
# Cross-validation on the outcome phantom
# ---------------------------------------------------------------------------------------------
def _source(feats):
    from qmri.workflows.predict import HabitatSource, habitat_settings

    return HabitatSource(feats, habitat_settings({"spatial": "none"}))


def test_outcome_phantom_reaches_the_best_auc_within_its_ci(phantom):
    from qmri.workflows.predict import cross_validate

    _, feats, out = phantom
    res = cross_validate(_source(feats), out["outcome"], folds=5, repeats=2, final=False)
    m = res.metrics()
    assert m["auc_ci95"][0] <= out["best_auc_realised"] <= m["auc_ci95"][1]
    assert m["auc"] > 0.75
    # the habitat feature the outcome depends on (the stroma: habitat 2 by ascending D) is the one selected
    # most often (its fraction, or its volume: the same information in tumours of equal size)
    assert max(res.selection, key=res.selection.get) in ("fraction_h2", "volume_ml_h2")


def test_shuffled_outcome_gives_half(phantom):
    from qmri.workflows.predict import cross_validate

    _, feats, out = phantom
    src = _source(feats)
    aucs = [cross_validate(src, np.random.default_rng(10 + i).permutation(out["outcome"]), folds=5, repeats=1,
                           final=False).metrics()["auc"] for i in range(5)]
    assert abs(np.mean(aucs) - 0.5) <= 0.07


def test_clustering_and_selecting_on_all_subjects_first_leaks_nested_does_not(phantom):
    """Pure-noise outcomes: the leaky order (habitats and feature selection fitted on all subjects before
    the split) scores above the nested order every time; the nested order stays near 0.5."""
    from qmri.workflows.predict import cross_validate

    _, feats, _ = phantom
    src = _source(feats[:60])
    nested, leaky = [], []
    for i in range(3):
        y = np.random.default_rng(100 + i).permutation(np.arange(60) % 2)
        nested.append(cross_validate(src, y, folds=5, repeats=1, final=False).metrics()["auc"])
        leaky.append(cross_validate(src, y, folds=5, repeats=1, final=False, order="select-first").metrics()["auc"])
    assert all(a > b for a, b in zip(leaky, nested))
    assert np.mean(leaky) - np.mean(nested) > 0.05
    assert abs(np.mean(nested) - 0.5) <= 0.1


# ---------------------------------------------------------------------------------------------
# qmri predict, saved models
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(phantom, tmp_path_factory):
    subs, _, out = phantom
    folder = tmp_path_factory.mktemp("cohort")
    cohort = write_cohort(folder, subs[:50], out["outcome"][:50])
    r = qmri_cli("predict", "--cohort", cohort, "--outcome", f"{folder / 'outcome.csv'}:lnm", "--out-dir",
                 folder / "out", "--repeats", "1", "--spatial", "none")
    assert r.returncode == 0, r.stderr
    return folder, r


def test_predict_cli_writes_every_output(trained):
    folder, r = trained
    out = folder / "out"
    for name in ("metrics.json", "predictions.csv", "roc.png", "calibration.png", "decision_curve.png",
                 "importance.csv", "selection.csv", "features.csv", "features.json", "model.json"):
        assert (out / name).is_file(), name
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["Metrics"]["fold_aucs"]) == 5
    assert m["Outcome"]["positive"] == "yes"
    for key in ("auc", "auc_ci95", "youden", "brier", "calibration"):
        assert key in m["Metrics"]
    assert "AUC" in r.stdout and "95% CI" in r.stdout
    units = json.loads((out / "features.json").read_text())["Columns"]
    assert units["D_mean_h1"]["Units"] == "mm2/s" and units["fraction_h2"]["Units"] == "1"
    # outputs are not overwritten
    again = qmri_cli("predict", "--cohort", folder / "cohort.csv", "--outcome", f"{folder / 'outcome.csv'}:lnm",
                     "--out-dir", out, "--repeats", "1")
    assert again.returncode == 2 and "qmri: error:" in again.stderr and "Traceback" not in again.stderr


def test_saved_model_round_trip(trained):
    """Applied to the training cohort, the saved model's probabilities are those of its pipeline on the
    final habitat features (the embedded habitat model labels the maps again)."""
    from qmri.workflows.outcome_model import OutcomeModel
    from qmri.workflows.predict import read_feature_table

    folder, _ = trained
    r = qmri_cli("predict", "--model", folder / "out/model.json", "--cohort", folder / "cohort.csv",
                 "--external", f"{folder / 'outcome.csv'}:lnm", "--out-dir", folder / "applied")
    assert r.returncode == 0, r.stderr
    om = OutcomeModel.load(folder / "out/model.json")
    table, _ = read_feature_table(folder / "out/features.csv")
    expect = om.probability(table.columns(om.features))
    lines = (folder / "applied/predictions.csv").read_text().splitlines()
    head = lines[0].split(",")
    got = np.array([float(line.split(",")[head.index("probability")]) for line in lines[1:]])
    np.testing.assert_allclose(got, expect, rtol=1e-5)
    assert (folder / "applied/metrics.json").is_file()


def test_saved_model_equals_the_sklearn_pipeline(phantom):
    from qmri.workflows.outcome_model import OutcomeModel
    from qmri.workflows.predict import cross_validate

    _, feats, out = phantom
    res = cross_validate(_source(feats[:40]), out["outcome"][:40], folds=2, repeats=1, inner_folds=2)
    om = OutcomeModel.from_pipeline(res.final, res.final_table.names, res.final_table.units, classifier="lasso",
                                    habitat_model=res.habitat_model)
    back = json.loads(io.json_text(om.to_dict()))
    assert back["Contract"]["HabitatModel"]["Features"] == ["D", "f", "Ktrans"]
    X = res.final_table.X.copy()
    X[0, 3] = np.nan  # imputed as the pipeline does
    np.testing.assert_allclose(om.probability(X), res.final.predict_proba(X)[:, 1], rtol=1e-10)


def test_mismatched_units_or_features_refused(trained, phantom, tmp_path):
    folder, _ = trained
    subs, _, _ = phantom
    other = write_cohort(tmp_path / "s", subs[50:55], units={"D": "mm2/s", "f": "", "Ktrans": "1/s"})
    r = qmri_cli("predict", "--model", folder / "out/model.json", "--cohort", other, "--out-dir", tmp_path / "o")
    assert r.returncode == 2 and "Ktrans (1/s)" in r.stderr and "Traceback" not in r.stderr
    two = write_cohort(tmp_path / "t", subs[50:55], units={"D": "mm2/s", "f": ""})
    r = qmri_cli("predict", "--model", folder / "out/model.json", "--cohort", two, "--out-dir", tmp_path / "o")
    assert r.returncode == 2 and "differ from the model's" in r.stderr
    # a feature table without a model column, and one with another unit
    table = folder / "out/features.csv"
    head, *rows = table.read_text().splitlines()
    (tmp_path / "f.csv").write_text("\n".join([",".join(head.split(",")[:-1])] + [",".join(r.split(",")[:-1])
                                                                                   for r in rows]) + "\n")
    from qmri.workflows.outcome_model import OutcomeModel
    from qmri.errors import QMRIInputError

    om = OutcomeModel.load(folder / "out/model.json")
    with pytest.raises(QMRIInputError, match="lacks the model's feature"):
        om.check_table(head.split(",")[1:-1], ["1"] * (len(head.split(",")) - 2), "f.csv")
    units = list(om.units)
    units[om.features.index("D_mean_h1")] = "um2/ms"
    with pytest.raises(QMRIInputError, match="D_mean_h1"):
        om.check_table(om.features, units, "f.csv")


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_model_files_cannot_run_code(trained, tmp_path):
    folder, _ = trained
    marker = tmp_path / "ran"
    payload = _Payload()
    payload.marker = marker
    evil = tmp_path / "model.json"
    evil.write_bytes(pickle.dumps(payload))
    args = ("--cohort", folder / "cohort.csv", "--out-dir", tmp_path / "o")
    r = qmri_cli("predict", "--model", evil, *args)
    assert r.returncode == 2 and "not JSON" in r.stderr and not marker.exists()
    good = json.loads((folder / "out/model.json").read_text())
    crafted = dict(good, Pipeline=dict(good["Pipeline"], Coefficients=f"__import__('os').system('touch {marker}')"))
    evil.write_text(json.dumps(crafted))
    r = qmri_cli("predict", "--model", evil, *args)
    assert r.returncode == 2 and "malformed" in r.stderr and not marker.exists()
    tampered = json.loads(json.dumps(good))
    tampered["Contract"]["HabitatModel"]["Settings"]["beta"] = 3.0
    evil.write_text(json.dumps(tampered))
    r = qmri_cli("predict", "--model", evil, *args)
    assert r.returncode == 2 and "checksum" in r.stderr


def test_delong_compare_and_input_errors(trained, tmp_path):
    folder, _ = trained
    pred = folder / "out/predictions.csv"
    r = qmri_cli("predict", "--compare", pred, folder / "applied/predictions.csv")
    assert r.returncode == 0 and "DeLong" in r.stdout
    (tmp_path / "three.csv").write_text("id,lnm\nsub-01,a\nsub-02,b\nsub-03,c\n")
    r = qmri_cli("predict", "--cohort", folder / "cohort.csv", "--outcome", f"{tmp_path / 'three.csv'}:lnm",
                 "--out-dir", tmp_path / "o")
    assert r.returncode == 2 and "two values" in r.stderr
    r = qmri_cli("predict", "--cohort", folder / "cohort.csv", "--outcome", f"{folder / 'outcome.csv'}:lnm",
                 "--out-dir", tmp_path / "o", "--k", "auto")
    assert r.returncode == 2 and "k must be fixed" in r.stderr


def test_combat_inside_the_folds_removes_a_site_effect():
    """An outcome that is the site, features that only carry a site shift: without harmonisation the
    site is predicted perfectly; ComBat fitted in each training fold removes what the features knew."""
    pytest.importorskip("neuroHarmonize")
    from qmri.workflows.predict import FeatureTable, TableSource, cross_validate

    rng = np.random.default_rng(0)
    site = np.arange(80) % 2
    X = rng.normal(size=(80, 8)) + 2 * site[:, None]
    t = TableSource(FeatureTable([f"s{i}" for i in range(80)], X, [f"c{j}" for j in range(8)], [""] * 8))
    assert cross_validate(t, site, repeats=1, final=False).metrics()["auc"] > 0.95
    assert abs(cross_validate(t, site, repeats=1, sites=site, final=False).metrics()["auc"] - 0.5) < 0.15


def test_site_harmonisation_needs_neuroharmonize(trained, tmp_path):
    try:
        import neuroHarmonize  # noqa: F401
        pytest.skip("neuroHarmonize is installed")
    except ImportError:
        pass
    folder, _ = trained
    (tmp_path / "o.csv").write_text("id,lnm,site\n" + "".join(
        f"{line.split(',')[0]},{line.split(',')[1]},{i % 2}\n"
        for i, line in enumerate((folder / "outcome.csv").read_text().splitlines()[1:])))
    r = qmri_cli("predict", "--cohort", folder / "cohort.csv", "--outcome", f"{tmp_path / 'o.csv'}:lnm",
                 "--site", "site", "--out-dir", tmp_path / "out")
    assert r.returncode == 2 and "neuroHarmonize" in r.stderr


# ---------------------------------------------------------------------------------------------
# Stability between repeat scans
# ---------------------------------------------------------------------------------------------
def _noisy(subs, seed, sd):
    out = []
    for s in subs:
        rng = np.random.default_rng([seed, int(s.id[4:])])
        truth = {k: v * (1 + sd * rng.normal(size=v.shape)) for k, v in s.truth.items()}
        out.append(type(s)(**{**s.__dict__, "truth": truth}))
    return out


def test_stability_icc_and_dice(phantom, tmp_path):
    """Two noisy 'scans' of the same tumours: habitat fractions agree (high ICC, Dice), and the
    stability table feeds qmri predict --min-icc."""
    subs, _, out = phantom
    a = write_cohort(tmp_path / "a", _noisy(subs[:30], 1, 0.05), out["outcome"][:30])
    b = write_cohort(tmp_path / "b", _noisy(subs[:30], 2, 0.05))
    r = qmri_cli("habitat", "--cohort", a, "--stability", b, "--out-dir", tmp_path / "h", "--k", "3",
                 "--spatial", "none")
    assert r.returncode == 0, r.stderr
    assert "subjects scanned twice" in r.stdout
    head, *rows = (tmp_path / "h/stability.csv").read_text().splitlines()
    cols = head.split(",")
    table = {row.split(",")[0]: dict(zip(cols, row.split(","))) for row in rows}
    for h in (1, 2, 3):
        assert float(table[f"fraction_h{h}"]["icc2_1_ci_low"]) > 0.5
        assert float(table[f"fraction_h{h}"]["icc2_1"]) <= float(table[f"fraction_h{h}"]["icc2_1_ci_high"])
    dice = [float(line.split(",")[-1]) for line in (tmp_path / "h/dice.csv").read_text().splitlines()[1:]]
    assert len(dice) == 90 and np.mean(dice) > 0.8
    # the same maps twice: ICC 1 and Dice 1
    r = qmri_cli("habitat", "--cohort", a, "--stability", a, "--out-dir", tmp_path / "same", "--k", "3",
                 "--spatial", "none")
    assert r.returncode == 0, r.stderr
    same = (tmp_path / "same/dice.csv").read_text().splitlines()[1:]
    assert all(float(line.split(",")[-1]) == 1.0 for line in same)
    # predict keeps only the stable features
    p = qmri_cli("predict", "--cohort", a, "--outcome", f"{tmp_path / 'a/outcome.csv'}:lnm", "--out-dir",
                 tmp_path / "p", "--repeats", "1", "--folds", "3", "--spatial", "none", "--stability",
                 tmp_path / "h/stability.csv", "--min-icc", "0.5", "--no-plot")
    assert p.returncode == 0, p.stderr
    stable = {f for f, row in table.items() if float(row["icc2_1_ci_low"]) >= 0.5}
    used = (tmp_path / "p/features.csv").read_text().splitlines()[0].split(",")[1:]
    assert set(used) == stable and len(stable) < len(table)
    m = json.loads((tmp_path / "p/metrics.json").read_text())
    assert m["Stability"]["features_kept"] == len(stable)


def test_phantom_cohort_outcome_and_repeat(tmp_path):
    r = qmri_cli("phantom", "cohort", "--out-dir", tmp_path / "b", "--subjects", "10", "--voxels", "200",
                 "--outcome", "--repeat")
    assert r.returncode == 0, r.stderr
    assert "best achievable AUC" in r.stdout
    lines = (tmp_path / "b/participants.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["participant_id", "tumour_shape", "outcome"] and len(lines) == 11
    truth = json.loads((tmp_path / "b/derivatives/truth/outcome.json").read_text())
    y = [int(line.split("\t")[2]) for line in lines[1:]]
    assert [truth["subjects"][f"sub-{i + 1:02d}"]["outcome"] for i in range(10)] == y
    assert 0.5 < truth["best_auc_expected"] < 1
    # the repeat scan: the same tumour (ROI, true sub-regions), another series
    a = tmp_path / "b/derivatives/truth/sub-03"
    t1 = np.asarray(io.load_nifti(a / "ses-1/dwi/sub-03_ses-1_desc-subregions_dseg.nii.gz", ndim=(3,)).dataobj)
    t2 = np.asarray(io.load_nifti(a / "ses-2/dwi/sub-03_ses-2_desc-subregions_dseg.nii.gz", ndim=(3,)).dataobj)
    np.testing.assert_array_equal(t1, t2)
    s1 = np.asarray(io.load_nifti(tmp_path / "b/sub-03/ses-1/dwi/sub-03_ses-1_acq-ivim_dwi.nii.gz").dataobj)
    s2 = np.asarray(io.load_nifti(tmp_path / "b/sub-03/ses-2/dwi/sub-03_ses-2_acq-ivim_dwi.nii.gz").dataobj)
    assert s1.shape == s2.shape and not np.array_equal(s1, s2)
    assert np.corrcoef(s1.ravel(), s2.ravel())[0, 1] > 0.9


def test_repeat_subject_keeps_the_truth_and_changes_the_noise():
    a = habitat_subject(2, voxels=300, seed=4)
    b = habitat_subject(2, voxels=300, seed=4, repeat=1)
    c = habitat_subject(2, voxels=300, seed=4, series=False)
    for k in a.truth:
        np.testing.assert_array_equal(a.truth[k], b.truth[k])
        np.testing.assert_array_equal(a.truth[k], c.truth[k])
    assert not np.array_equal(a.dwi, b.dwi)
    shift = b.dce_affine[:3, 3] - a.dce_affine[:3, 3]
    assert np.all(np.abs(shift[:2]) <= 1.0) and shift[2] == 0 and np.any(shift != 0)


# ---------------------------------------------------------------------------------------------
# qmri cohort [predict]
# ---------------------------------------------------------------------------------------------
def test_cohort_predict_step(tmp_path):
    distributed = pytest.importorskip("distributed")
    import logging

    from qmri.cohort import run_cohort
    from qmri.cohort.example import EXAMPLE_CONFIG, write_example_dataset

    write_example_dataset(tmp_path / "bids", subjects=12, voxels=200, outcome=True)
    cfg = tmp_path / "steps.toml"
    cfg.write_text(EXAMPLE_CONFIG + '\n[predict]\noutcome = "outcome"\nfolds = 2\nrepeats = 1\ninner_folds = 2\n')
    out = tmp_path / "bids/derivatives/qmri"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp://",
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as c:
        assert not run_cohort(tmp_path / "bids", out, "participant", cfg, client=c).failures
        res = run_cohort(tmp_path / "bids", out, "group", cfg, client=c)
    from qmri.threads import available, set_threads

    set_threads(available())
    assert not res.failures, res.failure_table()
    step = [r for r in res.results if r.step == "predict"]
    assert len(step) == 1 and step[0].message.startswith("AUC ")
    m = json.loads((out / "group/predict/metrics.json").read_text())
    assert m["Metrics"]["n"] == 12 and len(m["Metrics"]["fold_aucs"]) == 2
    assert (out / "group/predict/model.json").is_file()


@pytest.mark.parametrize("extra,message", [
    ('[predict]\nclassifier = "lasso"\n', "[predict] outcome"),
    ('[predict]\noutcome = "x"\nfolds = "many"\n', "--folds"),
    ('[predict]\noutcome = "x"\nmin_icc = 0.5\n', "unknown key 'min_icc'"),
])
def test_cohort_predict_configuration_errors(tmp_path, extra, message):
    from qmri.cohort import load_config
    from qmri.cohort.example import EXAMPLE_CONFIG
    from qmri.errors import QMRIInputError

    path = tmp_path / "steps.toml"
    path.write_text(EXAMPLE_CONFIG + "\n" + extra)
    with pytest.raises(QMRIInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)
    no_habitat = EXAMPLE_CONFIG[:EXAMPLE_CONFIG.index("[habitat]")] + '[predict]\noutcome = "x"\n'
    path.write_text(no_habitat)
    with pytest.raises(QMRIInputError, match="needs \\[habitat\\]"):
        load_config(path)


def test_shap_values_where_shap_is_installed(phantom):
    pytest.importorskip("shap")
    from qmri.workflows.predict import cross_validate, importances

    _, feats, out = phantom
    res = cross_validate(_source(feats[:40]), out["outcome"][:40], folds=2, repeats=1, inner_folds=2)
    rows = {r["feature"]: r for r in importances(res, n_repeats=3)}
    used = [c for c, r in rows.items() if r["used_by_final_model"]]
    assert used and all(rows[c]["mean_abs_shap"] > 0 for c in used)
    assert all(r["mean_abs_shap"] == 0 for c, r in rows.items() if c not in used)

"""qmri cohort: the example BIDS dataset (habitat-phantom subjects: IVIM, DCE, ROI masks) through a real
dask.distributed LocalCluster on the loopback interface; results equal to serial fits, resume, failures,
the group table; configuration and selector errors."""

import json
import logging
import shutil

import nibabel as nib
import numpy as np
import pytest

from qmri.cohort import load_config, run_cohort
from qmri.cohort.config import selector
from qmri.cohort.dataset import Datasets, Participant
from qmri.cohort.example import EXAMPLE_CONFIG, write_example_dataset
from qmri.errors import QMRIInputError

distributed = pytest.importorskip("distributed")

SUBJECTS = 3
N_STEPS = 2  # ivim, dce


@pytest.fixture(scope="module")
def client():
    """An in-process Dask cluster of 2 workers on 127.0.0.1 (threads, so kernels compile once)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp://",
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                  silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as c:
        yield c
    from qmri.threads import available, set_threads

    set_threads(available())  # the tasks ran in this process and sized its thread pools


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The example dataset (3 small subjects) and the example configuration."""
    d = tmp_path_factory.mktemp("cohort")
    write_example_dataset(d / "bids", subjects=SUBJECTS, voxels=200)
    (d / "steps.toml").write_text(EXAMPLE_CONFIG)
    return d


@pytest.fixture(scope="module")
def fitted(dataset, client):
    """The participant level run once on the cluster into derivatives/qmri."""
    out = dataset / "bids" / "derivatives" / "qmri"
    outcome = run_cohort(dataset / "bids", out, "participant", dataset / "steps.toml", client=client)
    return out, outcome


def _maps(folder):
    return {p.name: p for p in sorted(folder.rglob("*.nii.gz"))}


def _image(path):
    return np.asarray(nib.load(path).dataobj)


def test_participant_level_on_dask_equals_a_serial_loop_of_fits(dataset, fitted):
    from qmri.models import command
    from qmri.workflows import fit_files

    out, outcome = fitted
    assert [r.status for r in outcome.results] == ["done"] * SUBJECTS * N_STEPS, outcome.failure_table()
    assert json.loads((out / "dataset_description.json").read_text())["DatasetType"] == "derivative"
    bids, serial = dataset / "bids", dataset / "serial"
    masks = bids / "derivatives" / "masks"
    for i in range(1, SUBJECTS + 1):  # the same fits, one after the other, as a user would script them
        s = f"sub-{i:02d}"
        fit_files(command("ivim"), bids / s / "dwi" / f"{s}_acq-ivim_dwi.nii.gz", out_dir=serial, bids=True,
                  mask=masks / s / "dwi" / f"{s}_label-tumour_mask.nii.gz", method="segmented",
                  model_options={"threshold": 200})
        fit_files(command("dce"), bids / s / "perf" / f"{s}_dce.nii.gz", out_dir=serial, bids=True,
                  mask=masks / s / "perf" / f"{s}_label-tumour_desc-dilated_mask.nii.gz",
                  model_options={"model": "tofts"}, aif="parker", aif_delay=20.0, t10=1.0, r1=4.5, baseline=4)
    ours, theirs = _maps(out), _maps(serial)
    assert sorted(ours) == sorted(theirs) and len(ours) == SUBJECTS * (8 + 7)
    for name in ours:
        assert np.array_equal(_image(ours[name]), _image(theirs[name]), equal_nan=True), name
    side = json.loads(ours["sub-02_acq-ivim_model-ivim_param-D_dwimap.nii.gz"].with_suffix("").with_suffix(".json")
                      .read_text())
    assert side["CohortStep"] == "ivim" and len(side["CohortConfigSha256"]) == 64 and side["Units"] == "mm^2/s"
    logs = sorted(p.name for p in (out / "logs").glob("*.log"))
    assert logs == sorted(f"sub-{i:02d}_step-{s}.log" for i in range(1, SUBJECTS + 1) for s in ("ivim", "dce"))
    assert "done in" in (out / "logs" / "sub-01_step-dce.log").read_text()
    assert not list(out.rglob(".qmri-*.partial"))


def test_rerun_skips_finished_tasks_and_force_redoes_them(dataset, fitted, client):
    out, _ = fitted
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")}
    again = run_cohort(dataset / "bids", out, "participant", dataset / "steps.toml", client=client)
    assert [r.status for r in again.results] == ["skipped"] * SUBJECTS * N_STEPS
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.nii.gz")} == before
    forced = run_cohort(dataset / "bids", out, "participant", dataset / "steps.toml", client=client, force=True,
                        participant_labels=["sub-02"])
    assert [(r.participant, r.status) for r in forced.results] == [("sub-02", "done")] * N_STEPS
    changed = {p for p in before if p.stat().st_mtime_ns != before[p]}
    assert changed == {p for p in before if "sub-02" in p.name}


def test_changed_configuration_is_refused_without_force(dataset, fitted, client, tmp_path):
    out, _ = fitted
    cfg = tmp_path / "steps.toml"
    cfg.write_text(EXAMPLE_CONFIG.replace("threshold = 200", "threshold = 150"))
    outcome = run_cohort(dataset / "bids", out, "participant", cfg, client=client, participant_labels=["01"])
    by_step = {r.step: r for r in outcome.results}
    assert by_step["dce"].status == "skipped"
    assert by_step["ivim"].status == "failed"
    assert "another configuration" in by_step["ivim"].message and "--force" in by_step["ivim"].message


def test_group_level_writes_the_cohort_table(dataset, fitted, client):
    from qmri.roistats import region_statistics

    out, _ = fitted
    outcome = run_cohort(dataset / "bids", out, "group", dataset / "steps.toml", client=client)
    assert not outcome.failures, outcome.failure_table()
    assert [r.status for r in outcome.results] == ["done"] * (SUBJECTS + 1)
    import csv

    rows = list(csv.DictReader(outcome.table.open()))
    participants = [ln.split("\t")[0] for ln in (dataset / "bids" / "participants.tsv").read_text().splitlines()[1:]]
    assert [r["participant_id"] for r in rows] == participants  # joins participants.tsv
    masks = dataset / "bids" / "derivatives" / "masks"
    for r in rows:
        s = r["participant_id"]
        roi = _image(masks / s / "dwi" / f"{s}_label-tumour_mask.nii.gz") > 0
        d = _image(out / s / "dwi" / f"{s}_acq-ivim_model-ivim_param-D_dwimap.nii.gz")[roi]
        st = region_statistics(d)
        assert int(r["roi_voxels"]) == roi.sum()
        for k in ("mean", "sd", "median", "q1", "q3"):
            assert float(r[f"ivim_D_{k}"]) == pytest.approx(st[k], rel=1e-5)
        fractions = [float(r[f"habitat_fraction_h{h}"]) for h in (1, 2, 3)]
        assert sum(fractions) == pytest.approx(1.0, abs=1e-5) and min(fractions) > 0
        assert np.isfinite(float(r["dce_Ktrans_mean"]))
    # habitats are numbered by ascending D (the first feature), the same way in every subject
    means = np.array([[float(r[f"habitat_D_mean_h{h}"]) for h in (1, 2, 3)] for r in rows])
    assert np.all(np.diff(means, axis=1) > 0)
    meta = json.loads((out / "group" / "cohort.json").read_text())
    assert meta["Columns"]["ivim_D_mean"]["Units"] == "mm^2/s" and meta["Failed"] == []
    assert (out / "group" / "habitat_model.json").is_file()
    again = run_cohort(dataset / "bids", out, "group", dataset / "steps.toml", client=client)
    assert {r.status for r in again.results} == {"skipped"}


def test_a_broken_subject_is_reported_and_the_others_finish(dataset, client, tmp_path, capsys):
    from qmri.cli.main import main

    bids = tmp_path / "bids"
    shutil.copytree(dataset / "bids", bids, ignore=shutil.ignore_patterns("qmri"))
    bval = bids / "sub-02" / "dwi" / "sub-02_acq-ivim_dwi.bval"
    bval.write_text(" ".join(bval.read_text().split()[:-2]) + "\n")  # two b-values short of the series
    odd = bids / "sub-03" / "dwi" / "sub-03_acq-ivim_dwi.bval"  # b x 10: fitted, evidently wrong, warned of
    odd.write_text(" ".join(str(10 * float(b)) for b in odd.read_text().split()) + "\n")
    out = tmp_path / "out"
    args = ["cohort", str(bids), str(out), "participant", "--config", str(dataset / "steps.toml"), "--scheduler",
            client.scheduler.address, "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err
    failed = [ln for ln in err.splitlines() if ln.startswith("sub-")]
    assert len(failed) == 1 and failed[0].split()[:2] == ["sub-02", "ivim"] and "bval" in failed[0]
    assert any(ln.startswith("qmri cohort: warning: sub-03 ivim: ") for ln in err.splitlines()), err
    for s in ("sub-01", "sub-03"):
        assert len(list((out / s / "dwi").glob("*.nii.gz"))) == 8
    assert len(list((out / "sub-02" / "perf").glob("*.nii.gz"))) == 7
    assert not (out / "sub-02" / "dwi").exists()
    assert "failed" in (out / "logs" / "sub-02_step-ivim.log").read_text()
    # the group level goes on without it, and says so
    assert main(args[:3] + ["group"] + args[4:]) == 1
    table = (out / "group" / "cohort.csv").read_text().splitlines()
    assert [ln.split(",")[0] for ln in table[1:]] == ["sub-01", "sub-03"]
    assert json.loads((out / "group" / "cohort.json").read_text())["Failed"][0]["participant"] == "sub-02"


def test_example_config_is_printed_and_valid(tmp_path, capsys):
    from qmri.cli.main import main

    assert main(["cohort", "--example-config"]) == 0
    assert capsys.readouterr().out == EXAMPLE_CONFIG
    path = tmp_path / "steps.toml"
    path.write_text(EXAMPLE_CONFIG)
    cfg = load_config(path)
    assert list(cfg.fits) == ["ivim", "dce"] and cfg.habitat.features["Ktrans"] == ("dce", "Ktrans")


def test_help_does_not_import_dask():
    import subprocess
    import sys

    code = ("import sys\nfrom qmri.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "try:\n    main(['cohort', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed', 'numba', 'torch'}))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stderr


BAD_CONFIGS = [
    ("[fit.a]\nmodel = 'ivim'\n", "[fit.a]: series missing"),
    ("[fit.a]\nmodel = 'nope'\nseries = {suffix = 'dwi'}\n", "[fit.a]: model must be one of"),
    ("[fit.a]\nmodel = 'ivim'\nmethd = 'lsq'\nseries = {suffix = 'dwi'}\n", "[fit.a]: unknown key 'methd'"),
    ("[fit.a]\nmodel = 'ivim'\nmethod = 'x'\nseries = {suffix = 'dwi'}\n", "method must be one of lsq, segmented"),
    ("[fit.a]\nmodel = 'ivim'\nseries = {suffix = 'dwi', acquisition = 'x'}\n", "unknown BIDS entity 'acquisition'"),
    ("[fit.a]\nmodel = 'ivim'\nseries = {suffix = 'dwi', sub = '01'}\n", "sub is set by each participant"),
    ("[fit.a]\nmodel = 'ivim'\nseries = {suffix = 'dwi'}\n[fit.a.options]\nthreshhold = 3\n",
     "[fit.a.options]: unknown option 'threshhold'"),
    ("[fit.a]\nmodel = 'ivim'\nmethod = 'segmented'\nseries = {suffix = 'dwi'}\n[fit.a.options]\ncompute_se = true\n",
     "[fit.a.options] method 'segmented' of IVIM does not use option 'compute_se'"),
    ("[fit.a]\nmodel = 'dce'\nseries = {suffix = 'dce'}\n[fit.a.options]\nmodel = 'toft'\n", "options] model"),
    ("[fit.a]\nmodel = 'ivim'\nseries = {suffix = 'dwi'}\nbounds = {D = [1, 0]}\n", "bounds: D must be [lower, upper]"),
    ("[fit.a]\nmodel = 'ivim'\nseries = {suffix = 'dwi'}\n[habitat]\nmaps = ['a.D']\n", "[habitat] needs [roi]"),
    ("[fit.a]\nmodel = 'ivim'\nseries = {suffix = 'dwi'}\n[roi]\nmask = {suffix = 'mask'}\n[habitat]\n"
     "maps = ['b.D']\n", "'b.D' names no fit step"),
    ("[fit.a]\nmodel = 'ivim'\nseries = {suffix = 'dwi'}\n[roi]\nmask = {suffix = 'mask'}\n[habitat]\n"
     "maps = ['a.D']\nk = 'many'\n", "[habitat] k: expected an integer, got 'many'"),
    ("[fit.a]\nmodel = 'ivim'\nseries = {suffix = 'dwi'}\n[roi]\nmask = {suffix = 'mask'}\nstatistics = ['avg']\n",
     "[roi] statistics"),
    ("[roi]\nmask = {suffix = 'mask'}\n", "no fit step"),
    ("[fit.a\n", "not valid TOML"),
]


@pytest.mark.parametrize("text,message", BAD_CONFIGS, ids=[m for _, m in BAD_CONFIGS])
def test_configuration_errors_are_one_line_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "steps.toml"
    path.write_text(text)
    with pytest.raises(QMRIInputError) as err:
        load_config(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_selectors_choose_one_file_per_participant(tmp_path):
    root = tmp_path / "ds"
    names = ["sub-01/ses-1/dwi/sub-01_ses-1_acq-ivim_dwi.nii.gz", "sub-01/ses-1/dwi/sub-01_ses-1_acq-dki_dwi.nii.gz",
             "sub-01/ses-2/dwi/sub-01_ses-2_acq-ivim_dwi.nii.gz", "sub-01/anat/sub-01_label-tumour_mask.nii.gz",
             "sub-01/ses-2/anat/sub-01_ses-2_label-tumour_mask.nii.gz",
             "sub-01/ses-1/dwi/sub-01_ses-1_acq-ivim_dwi.bval",
             "sub-02/dwi/sub-02_run-1_dwi.nii.gz", "sub-02/dwi/sub-02_run-2_dwi.nii.gz"]
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"")
    ds = Datasets(root)
    s1, s2 = Participant("01", "1"), Participant("01", "2")
    ivim = selector({"suffix": "dwi", "acq": "ivim"}, "t")
    assert ds.find(ivim, s1).name == "sub-01_ses-1_acq-ivim_dwi.nii.gz"  # images only, not the .bval
    assert ds.find(ivim, s2).name == "sub-01_ses-2_acq-ivim_dwi.nii.gz"
    mask = selector({"suffix": "mask", "label": "tumour"}, "t")
    assert ds.find(mask, s1).name == "sub-01_label-tumour_mask.nii.gz"  # no session-1 mask: the subject's
    assert ds.find(mask, s2).name == "sub-01_ses-2_label-tumour_mask.nii.gz"
    bval = selector({"suffix": "dwi", "acq": "ivim", "extension": ".bval"}, "t")
    assert ds.find(bval, s1).suffix == ".bval"
    with pytest.raises(QMRIInputError, match="2 files suffix=dwi for sub-02.*add an entity"):
        ds.find(selector({"suffix": "dwi"}, "t"), Participant("02"))
    run = selector({"suffix": "dwi", "run": ["2", "3"]}, "t")
    assert ds.find(run, Participant("02")).name == "sub-02_run-2_dwi.nii.gz"
    with pytest.raises(QMRIInputError, match="t: no file acq=dki, suffix=dwi for sub-01_ses-2"):
        ds.find(selector({"suffix": "dwi", "acq": "dki"}, "t"), s2)


def _sets(out):
    """``{folder: number of visible files}`` of the map folders under ``out`` (sets of killed runs settled)."""
    from qmri.resultset import recover

    folders = [d for d in out.glob("sub-*/*") if d.is_dir()] if out.exists() else []
    for d in folders:
        recover(d)
    return {d: len([p for p in d.iterdir() if not p.name.startswith(".")]) for d in folders}


def _wait_for_a_set(proc, out, timeout=180.0):
    import time

    t0 = time.monotonic()
    while not any(out.glob("sub-*/*/*.json")):
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before any output"
        assert time.monotonic() - t0 < timeout, "no output in time"
        time.sleep(0.01)


@pytest.mark.slow
def test_a_killed_worker_or_run_loses_nothing_written_and_the_rerun_completes(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    import psutil

    bids = tmp_path / "bids"
    write_example_dataset(bids, subjects=4, voxels=1500)
    cfg = tmp_path / "steps.toml"
    cfg.write_text(EXAMPLE_CONFIG.replace('method = "segmented"', 'method = "lsq"'))  # longer tasks
    full = {"dwi": 16, "perf": 15}

    def command(out):
        script = os.path.join(os.path.dirname(sys.executable), "qmri")
        return [script, "cohort", str(bids), str(out), "participant", "--config", str(cfg), "--workers", "2", "--quiet"]

    # a worker process killed while the cohort runs: Dask starts another and reruns the task
    out = tmp_path / "out"
    proc = subprocess.Popen(command(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    _wait_for_a_set(proc, out)
    written = {p: p.stat().st_mtime_ns for p in out.glob("sub-*/*/*") if not p.name.startswith(".")}
    workers = [c for c in psutil.Process(proc.pid).children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
    assert workers, "no worker process found"
    workers[0].send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert {p: p.stat().st_mtime_ns for p in written} == written  # nothing written before was touched
    assert {d.name for d in _sets(out)} == {"dwi", "perf"} and all(n == full[d.name] for d, n in _sets(out).items())
    assert not list(out.rglob(".qmri-*.partial"))

    # the whole run killed: every set is complete or absent, and the rerun does only what is missing
    out2 = tmp_path / "out2"
    proc = subprocess.Popen(command(out2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _wait_for_a_set(proc, out2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    sets = _sets(out2)
    assert all(n in (0, full[d.name]) for d, n in sets.items()), sets
    n_complete = sum(n > 0 for n in sets.values())
    assert n_complete >= 1
    rerun = subprocess.run(command(out2), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    status = [ln.split(",")[2] for ln in (out2 / "logs" / "participant_tasks.csv").read_text().splitlines()[1:]]
    assert sorted(status) == sorted(["skipped"] * n_complete + ["done"] * (8 - n_complete))
    assert all(n == full[d.name] for d, n in _sets(out2).items()) and len(_sets(out2)) == 8


def test_an_option_given_as_a_selector_is_the_participants_file_and_part_of_the_hash(tmp_path):
    from qmri.cohort.app import fit_task

    bids = tmp_path / "bids"
    write_example_dataset(bids, subjects=1, sessions=2, voxels=200)
    text = EXAMPLE_CONFIG.replace("threshold = 200", 'bval = { suffix = "dwi", acq = "ivim", extension = ".bval" }')
    (tmp_path / "steps.toml").write_text(text)
    cfg = load_config(tmp_path / "steps.toml")
    ds = Datasets(bids)
    tasks = [fit_task(cfg.fits["ivim"], Participant("01", ses), ds, tmp_path / "out") for ses in ("1", "2")]
    assert [t.options["bval"] for t in tasks] == [
        str(bids / "sub-01" / f"ses-{s}" / "dwi" / f"sub-01_ses-{s}_acq-ivim_dwi.bval") for s in ("1", "2")]
    assert tasks[0].digest != tasks[1].digest
    plan = tasks[1].plan()  # the option reaches the workflow
    assert any("ses-2_acq-ivim_dwi.bval" in str(s) for s in plan.job.sources)
    assert plan.maps["D"][1] == tmp_path / "out" / "sub-01" / "ses-2" / "dwi" / \
        "sub-01_ses-2_acq-ivim_model-ivim_param-D_dwimap.nii.gz"

"""Habitat analysis speed and accuracy: qmri on a 50-subject cohort, and qmri vs HABIT side by side.

Part A (speed at cohort scale): the habitat phantom with ``--subjects`` tumours of ``--voxels``
diffusion voxels each (default 50 x 20,000). The IVIM and DCE series are fitted by qmri (IVIM
``lsq`` on the ROI, Tofts ``lsq`` on the DCE grid; untimed here, reported) and the maps written as
qmri output folders. Then ``qmri habitat --cohort`` is timed as a whole command (a subprocess:
interpreter start, reading 2 x N map folders, resampling Ktrans onto each ROI grid, clustering with
the default settings and ``--k auto``, writing every output) and the in-process library call
(:func:`qmri.habitats.analyse` on features already on the ROI grid) separately. ARI against the
true sub-regions, the k chosen and whether habitat h covers the same true sub-region in every
subject are printed. Target: under 30 s on 2 cores.

Part B (qmri vs HABIT, in-process vs in-process): the same phantom with ``--habit-subjects``
tumours of ``--habit-voxels`` voxels (default 4 x 6,000, the issue's four-subject case). Every
method gets the same arrays: the fitted D and f and the Ktrans resampled by qmri onto the ROI grid
(HABIT does not resample maps onto an ROI grid itself). qmri runs its default (untuned) and its
other settings; HABIT (PyPI ``habitat-analysis``, optional, never a dependency) runs its two-step
factory default (``two_step_habitat``: 50 k-means supervoxels, cohort k-means, k by elbow over
2..10), the same with k = 3, and its documented feature chain for scale differences between
subjects (per-subject winsorize 5 % then min-max, as in its habitat_fit_modes / preprocessing docs)
with elbow k. HABIT is skipped with the reason when it cannot be imported.

Part C (prediction, ``--predict``): ``--predict-subjects`` phantom tumours (default 100 x 1,000
voxels) fitted by qmri, with a binary outcome drawn through a logistic link on the true fraction of
the high-Ktrans habitat (:func:`qmri.habitats.phantom.draw_outcome`; the best achievable AUC is
printed). qmri: :func:`qmri.workflows.predict.cross_validate` with the habitat model refitted in every
training fold (defaults of ``qmri predict``: k = 3, lasso, 5 folds, ``--predict-repeats`` repeats), on
the outcome and on the outcome shuffled, and the cluster-first order (HABIT's) for reference. HABIT
(``--habit-python``: an interpreter where ``habitat-analysis`` is installed, e.g. its own virtual
environment, run as a subprocess on the same arrays): ``two_step_habitat`` with k = 3 fitted on all
subjects, its volume-fraction, MSI and ITH features (``habit.kernels.habitat_metrics``), then
``habit.recipes.cross_validate`` (z-score, L1 logistic regression, C tuned by 3-fold inner CV, 5
folds), the mean fold AUC over the same number of repeats, on the outcome and shuffled.

Run:  python benchmarks/habitat.py [--subjects 50] [--voxels 20000] [--habit-subjects 4]
      [--habit-voxels 6000] [--work DIR] [--skip-cohort] [--skip-habit]
      [--predict [--predict-subjects 100] [--predict-voxels 1000] [--predict-repeats 10]
       [--habit-python PATH]]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FEATURES = ("D", "f", "Ktrans")


@dataclass
class Truth:
    """What scoring needs of a phantom subject (read back when ``--work`` already holds the phantom)."""

    id: str
    roi: np.ndarray
    labels: np.ndarray


def simulate_and_fit(n, voxels, seed, work: Path):
    """Phantom subjects, their fitted maps written under ``work``, the cohort table; seconds spent.
    A ``work`` folder that already holds them for the same size and seed is reused."""
    import json

    import nibabel as nib

    from qmri.habitats.phantom import habitat_subject, write_subject
    from qmri.workflows.habitat_demo import fit_subject

    stamp = {"subjects": n, "voxels": voxels, "seed": seed}
    if (work / "cohort.csv").exists() and (work / "stamp.json").exists() \
            and json.loads((work / "stamp.json").read_text()) == stamp:
        subs = []
        for i in range(n):
            d = work / "phantom" / f"sub-{i + 1:02d}"
            labels = np.asarray(nib.load(d / "labels.nii.gz").dataobj)
            subs.append(Truth(f"sub-{i + 1:02d}", np.asarray(nib.load(d / "roi.nii.gz").dataobj) > 0, labels))
        return subs, float("nan"), float("nan")
    t_sim = t_fit = 0.0
    subs = []
    lines = ["id,mask,D,f,Ktrans"]
    for i in range(n):
        t = time.perf_counter()
        s = habitat_subject(i, voxels=voxels, seed=seed)
        write_subject(work / "phantom", s, force=True)
        t_sim += time.perf_counter() - t
        t = time.perf_counter()
        fit_subject(s, work / "fit" / s.id, force=True)
        t_fit += time.perf_counter() - t
        lines.append(f"{s.id},phantom/{s.id}/roi.nii.gz,fit/{s.id}/ivim,fit/{s.id}/ivim,fit/{s.id}/dce")
        subs.append(s)
    (work / "cohort.csv").write_text("\n".join(lines) + "\n")
    (work / "stamp.json").write_text(json.dumps(stamp))
    return subs, t_sim, t_fit


def load_features(subs, work: Path):
    from qmri.habitats.features import MapSource, load_subject

    return [load_subject(s.id, work / "phantom" / s.id / "roi.nii.gz",
                         [MapSource("D", work / "fit" / s.id / "ivim"), MapSource("f", work / "fit" / s.id / "ivim"),
                          MapSource("Ktrans", work / "fit" / s.id / "dce")]) for s in subs]


def score(subs, label_maps, usables):
    """Mean and min ARI, and whether every habitat covers the same true sub-region in every subject."""
    from sklearn.metrics import adjusted_rand_score

    aris, meanings = [], []
    for s, lab, use in zip(subs, label_maps, usables):
        aris.append(adjusted_rand_score(s.labels[use], lab[use]))
        k = int(lab.max())
        meanings.append(tuple(int(np.bincount(s.labels[lab == h], minlength=4)[1:].argmax()) + 1
                              for h in range(1, k + 1)))
    return float(np.mean(aris)), float(np.min(aris)), len(set(meanings)) == 1, meanings[0]


def part_a(args, work: Path):
    from qmri.habitats import analyse

    print(f"== A. cohort: {args.subjects} subjects x ~{args.voxels} ROI voxels")
    subs, t_sim, t_fit = simulate_and_fit(args.subjects, args.voxels, args.seed, work)
    n_vox = sum(int(s.roi.sum()) for s in subs)
    print(f"phantom {t_sim:.1f} s; IVIM + DCE fits by qmri {t_fit:.1f} s (nan: reused from --work); {n_vox} ROI "
          "voxels in all")
    qmri = Path(sys.executable).parent / "qmri"
    out = work / "habitats"
    t = time.perf_counter()
    r = subprocess.run([str(qmri), "habitat", "--cohort", str(work / "cohort.csv"), "--out-dir", str(out), "--force",
                        "--quiet"], capture_output=True, text=True)
    t_cmd = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(r.stderr)
    import nibabel as nib

    maps = [np.asarray(nib.load(out / s.id / "habitats.nii.gz").dataobj) for s in subs]
    m, lo, same, meaning = score(subs, maps, [s.roi for s in subs])
    k_line = [line for line in (out / "k_selection.csv").read_text().splitlines() if line.endswith(",1")]
    print(f"qmri habitat --cohort (whole command, files -> files, k auto): {t_cmd:.1f} s; k = "
          f"{k_line[0].split(',')[0]}; ARI mean {m:.3f} min {lo:.3f}; same meaning in every subject: {same} "
          f"(habitat -> true sub-region {meaning})")
    feats = load_features(subs, work)
    for label, kw in (("default, k auto", {}), ("default, k = 3", {"k": 3})):
        t = time.perf_counter()
        res = analyse(feats, **kw)
        dt = time.perf_counter() - t
        m, lo, same, _ = score(subs, [x.labels for x in res.subjects], [x.subject.usable for x in res.subjects])
        print(f"qmri analyse ({label}, in-process, features on the ROI grid): {dt:.1f} s; ARI mean {m:.3f} "
              f"min {lo:.3f}; same meaning: {same}")
    if not args.skip_habit and not habit_available():
        label, make = habit_studies(args.seed)[0]
        k, m, lo, same, dt = run_habit(make, habit_cohort(feats), subs, [x.usable for x in feats])
        print(f"{label} (in-process, the same arrays): {dt:.1f} s; k = {k}; ARI mean {m:.3f} min {lo:.3f}; "
              f"same meaning: {same}")


QMRI_CASES = (
    ("qmri default (kmeans + MRF, k auto)", {}),
    ("qmri gmm + MRF, k auto", {"method": "gmm"}),
    ("qmri kmeans + MRF, k = 3", {"k": 3}),
    ("qmri two-level SLIC, k = 3", {"k": 3, "spatial": "supervoxels"}),
    ("qmri voxel-wise kmeans, k = 3", {"k": 3, "spatial": "none"}),
    ("qmri voxel-wise gmm, k = 3", {"k": 3, "spatial": "none", "method": "gmm"}),
)


def habit_cohort(feats):
    """The features as an in-memory HABIT cohort (arrays in HABIT's (z, y, x) order)."""
    from habit.contracts.geometry import Geometry
    from habit.contracts.image import ArrayImageRef
    from habit.contracts.subject import Cohort, Subject

    subjects = []
    for x in feats:
        spacing = tuple(float(v) for v in x.voxel_mm[::-1])
        g = Geometry.from_array(x.usable.T.shape, spacing=spacing)
        imgs = {}
        for j, name in enumerate(x.names):
            vol = np.zeros(x.usable.shape, np.float32)
            vol[x.usable] = x.values[:, j]
            imgs[name] = ArrayImageRef(array=np.ascontiguousarray(vol.T), geometry=g)
        mask = ArrayImageRef(array=np.ascontiguousarray(x.usable.T).astype(np.uint8), geometry=g)
        subjects.append(Subject(subject_id=x.id, images=imgs, masks={"tumor": mask}))
    return Cohort(subjects)


def habit_studies(seed):
    import habit.recipes as recipes
    from habit.spec.specs import HabitatSpec, Spec, Stage

    def documented(n_habitats):
        fit = {"min_habitats": 2, "max_habitats": 10, "validation": "elbow", "n_init": 10} if n_habitats == "auto" \
            else {"n_habitats": n_habitats, "n_init": 10}
        return recipes.Study(spec=HabitatSpec(name="two_step_documented", stages=(
            Stage("extract_voxel_features", Spec("raw", {"modalities": list(FEATURES)})),
            Stage("preprocess1", Spec("winsorize", {"winsor_limits": (0.05, 0.05), "across_features": False})),
            Stage("preprocess2", Spec("minmax", {"across_features": False})),
            Stage("partition", Spec("kmeans", {"n_supervoxels": 50, "n_init": 3})),
            Stage("pool", Spec("pool")),
            Stage("fit", Spec("kmeans", fit)),
            Stage("assign", Spec("nearest_centroid")),
        ), random_seed=seed))

    return (
        ("HABIT two_step_habitat default (k elbow)", lambda: recipes.two_step_habitat(
            modalities=list(FEATURES), random_seed=seed)),
        ("HABIT two_step_habitat, k = 3", lambda: recipes.two_step_habitat(
            modalities=list(FEATURES), n_habitats=3, random_seed=seed)),
        ("HABIT winsorize+minmax two-step (k elbow)", lambda: documented("auto")),
        ("HABIT winsorize+minmax two-step, k = 3", lambda: documented(3)),
    )


def run_habit(make, cohort, subs, usables):
    """Fit and label ``cohort`` with the HABIT study ``make()`` (single-threaded BLAS/OpenMP, as qmri);
    return k, ARI mean and min, same meaning, seconds."""
    from threadpoolctl import threadpool_limits

    t = time.perf_counter()
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")
        res = make().fit_predict(cohort)
    dt = time.perf_counter() - t
    maps = [np.asarray(hm.label_array).T for hm in res.habitat_maps]
    m, lo, same, _ = score(subs, maps, usables)
    return (res.habitat_model.n_habitats if res.habitat_model is not None else -1), m, lo, same, dt


def habit_available() -> str:
    """'' when HABIT imports, else why not."""
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        import habit.recipes  # noqa: F401
    except ImportError as exc:
        return f"cannot import habitat-analysis ({exc}); install with pip install habitat-analysis"
    return ""


def part_b(args, work: Path):
    from qmri.habitats import analyse

    print(f"\n== B. side by side: {args.habit_subjects} subjects x ~{args.habit_voxels} ROI voxels (in-process, the "
          "same arrays: fitted D, f and qmri-resampled Ktrans on each ROI grid)")
    subs, _, _ = simulate_and_fit(args.habit_subjects, args.habit_voxels, args.seed, work)
    feats = load_features(subs, work)
    usables = [x.usable for x in feats]
    print(f"{'method':45s} {'k':>3s} {'ARI mean':>9s} {'ARI min':>8s} {'same meaning':>13s} {'seconds':>8s}")
    rows = {}
    for label, kw in QMRI_CASES:
        t = time.perf_counter()
        res = analyse(feats, **kw)
        dt = time.perf_counter() - t
        m, lo, same, _ = score(subs, [x.labels for x in res.subjects], usables)
        rows[label] = (m, dt)
        print(f"{label:45s} {res.model.k:3d} {m:9.3f} {lo:8.3f} {str(same):>13s} {dt:8.1f}")
    if args.skip_habit:
        return rows
    why = habit_available()
    if why:
        print(f"HABIT not run: {why}")
        return rows
    cohort = habit_cohort(feats)
    for label, make in habit_studies(args.seed):
        k, m, lo, same, dt = run_habit(make, cohort, subs, usables)
        rows[label] = (m, dt)
        print(f"{label:45s} {k:3d} {m:9.3f} {lo:8.3f} {str(same):>13s} {dt:8.1f}")
    base = rows[QMRI_CASES[0][0]]
    hab = rows[habit_studies(args.seed)[0][0]]
    print(f"qmri default vs HABIT default: ARI {base[0]:.3f} vs {hab[0]:.3f}; time ratio HABIT/qmri "
          f"{hab[1] / base[1]:.1f}x (both single-threaded BLAS/OpenMP)")
    return rows


class _Fractions:
    """A fitted phantom subject's true sub-region fractions (what :func:`draw_outcome` reads)."""

    def __init__(self, s, names):
        lab = s.labels[s.roi]
        self.fractions = {n: float(np.mean(lab == i + 1)) for i, n in enumerate(names)}


def part_c(args, work: Path):
    import json

    from qmri.habitats.phantom import definition, draw_outcome
    from qmri.workflows.predict import HabitatSource, cross_validate, habitat_settings

    n, R = args.predict_subjects, args.predict_repeats
    print(f"\n== C. prediction: {n} subjects x ~{args.predict_voxels} ROI voxels, fitted D, f, Ktrans; outcome "
          "logistic in the true high-Ktrans habitat fraction")
    subs, t_sim, t_fit = simulate_and_fit(n, args.predict_voxels, args.seed, work)
    print(f"simulated in {t_sim:.1f} s, fitted in {t_fit:.1f} s (qmri lsq; nan: reused)")
    feats = load_features(subs, work)
    names = [r["name"] for r in definition()["regions"]]
    out = draw_outcome([_Fractions(s, names) for s in subs], seed=args.seed)
    y = out["outcome"]
    shuffled = np.random.default_rng(1).permutation(y)
    print(f"outcome: {int(y.sum())}/{n} positive; best achievable AUC {out['best_auc_expected']:.3f} (expected), "
          f"{out['best_auc_realised']:.3f} (true risk on this draw)")
    src = HabitatSource(feats, habitat_settings({}))
    print(f"{'method':52s} {'AUC (95% CI)':>22s} {'fold AUC':>14s} {'shuffled':>9s} {'s/cohort':>9s}")
    for label, order in (("qmri predict (nested: habitats refitted per fold)", "nested"),
                         ("qmri, cluster-first order (habitats on all subjects)", "cluster-first")):
        t = time.perf_counter()
        r = cross_validate(src, y, repeats=R, order=order, final=False)
        dt = time.perf_counter() - t
        m = r.metrics()
        sh = cross_validate(src, shuffled, repeats=R, order=order, final=False).metrics()
        print(f"{label:52s} {m['auc']:.3f} ({m['auc_ci95'][0]:.3f}-{m['auc_ci95'][1]:.3f}) "
              f"{np.nanmean(m['fold_aucs']):7.3f}+-{np.nanstd(m['fold_aucs']):.3f} {sh['auc']:9.3f} {dt:9.1f}")
    if args.skip_habit:
        return
    npz = work / "habit_input.npz"
    arrays = {}
    for i, x in enumerate(feats):
        arrays.update({f"usable_{i}": x.usable, f"values_{i}": x.values, f"voxel_{i}": x.voxel_mm})
    np.savez(npz, ids=np.array([x.id for x in feats]), y=y, shuffled=shuffled, names=np.array(feats[0].names),
             **arrays)
    t = time.perf_counter()
    proc = subprocess.run([args.habit_python, __file__, "--habit-worker", str(npz), str(R)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"HABIT not run ({args.habit_python}): {tail}")
        return
    h = json.loads(proc.stdout.strip().splitlines()[-1])
    dt = time.perf_counter() - t
    print(f"{'HABIT (two_step k=3 on all subjects; habitat_metrics; cross_validate)':52s} {'':>22s} "
          f"{h['true']['fold_auc_mean']:7.3f}+-{h['true']['fold_auc_sd']:.3f} "
          f"{h['shuffled']['fold_auc_mean']:9.3f} {dt:9.1f}")
    print(f"HABIT: {h['features']} features; habitats {h['habitat_seconds']:.1f} s, features "
          f"{h['feature_seconds']:.1f} s, CV {h['true']['cv_seconds']:.1f} s (+ interpreter start and imports)")


def habit_worker(npz: str, repeats: int) -> dict:
    """Run in HABIT's interpreter (imports only NumPy, pandas and habit): see part C."""
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.simplefilter("ignore")
    import pandas as pd
    import habit.recipes as recipes
    from habit.contracts.geometry import Geometry
    from habit.contracts.image import ArrayImageRef
    from habit.contracts.outcome import BinaryOutcome
    from habit.contracts.subject import Cohort, Subject
    from habit.contracts.table import FeatureTable
    from habit.kernels import habitat_metrics as hm
    from habit.spec import MLSpec, Spec

    d = np.load(npz)
    ids, names, k = [str(v) for v in d["ids"]], [str(v) for v in d["names"]], 3
    subjects = []
    for i, sid in enumerate(ids):
        usable, values, vox = d[f"usable_{i}"], d[f"values_{i}"], d[f"voxel_{i}"]
        g = Geometry.from_array(usable.T.shape, spacing=tuple(float(v) for v in vox[::-1]))
        imgs = {}
        for j, name in enumerate(names):
            vol = np.zeros(usable.shape, np.float32)
            vol[usable] = values[:, j]
            imgs[name] = ArrayImageRef(array=np.ascontiguousarray(vol.T), geometry=g)
        mask = ArrayImageRef(array=np.ascontiguousarray(usable.T).astype(np.uint8), geometry=g)
        subjects.append(Subject(subject_id=sid, images=imgs, masks={"tumor": mask}))
    t0 = time.perf_counter()
    res = recipes.two_step_habitat(modalities=names, n_habitats=k, random_seed=0).fit_predict(Cohort(subjects))
    t_hab = time.perf_counter() - t0
    rows = []
    for sid, m in zip(ids, res.habitat_maps):
        lab = np.asarray(m.label_array).astype(int)
        row = {"subject": sid}
        row.update({f"fraction_h{h}": f for h, f in hm.habitat_volume_fractions(lab, range(1, k + 1)).items()})
        row.update({f"msi_{a}": v for a, v in hm.msi_features_from_matrix(hm.spatial_interaction_matrix(lab, k)).items()})
        row["ith"] = hm.ith_score(lab)
        rows.append(row)
    frame = pd.DataFrame(rows)
    feats = tuple(c for c in frame.columns if c != "subject")
    t_feat = time.perf_counter() - t0 - t_hab
    spec = MLSpec(name="lasso", steps=(Spec("zscore"),),
                  classifier=Spec("LogisticRegression", {"max_iter": 1000, "penalty": "l1", "solver": "liblinear"}),
                  metrics=(Spec("auc"),))
    out = {"k": k, "n": len(ids), "features": len(feats), "habitat_seconds": t_hab, "feature_seconds": t_feat}
    for name in ("y", "shuffled"):
        table = FeatureTable(frame=frame.assign(label=d[name]), id_columns=("subject",), feature_columns=feats,
                             outcome=BinaryOutcome(column="label", positive_label=1))
        t1 = time.perf_counter()
        aucs = [[float(m["auc"]) for m in recipes.cross_validate(
            table, spec, n_splits=5, seed=r, inner_cv=3,
            param_grid={"model__component__C": [0.03, 0.1, 0.3, 1.0, 10.0]}).fold_metrics] for r in range(repeats)]
        out["true" if name == "y" else name] = {"fold_auc_mean": float(np.mean(aucs)), "fold_auc_sd": float(np.std(aucs)),
                                                "cv_seconds": time.perf_counter() - t1}
    return out


def main(argv=None):
    import json

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--habit-worker"]:
        print(json.dumps(habit_worker(argv[1], int(argv[2]))))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=50)
    ap.add_argument("--voxels", type=int, default=20_000)
    ap.add_argument("--habit-subjects", type=int, default=4)
    ap.add_argument("--habit-voxels", type=int, default=6_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, help="folder for phantoms and maps (default: a temporary folder)")
    ap.add_argument("--skip-cohort", action="store_true", help="skip part A")
    ap.add_argument("--skip-habit", action="store_true", help="parts B and C without HABIT")
    ap.add_argument("--predict", action="store_true", help="part C: prediction (qmri predict vs HABIT)")
    ap.add_argument("--predict-only", action="store_true", help="only part C")
    ap.add_argument("--predict-subjects", type=int, default=100)
    ap.add_argument("--predict-voxels", type=int, default=1000)
    ap.add_argument("--predict-repeats", type=int, default=10)
    ap.add_argument("--habit-python", default=sys.executable, help="interpreter with habitat-analysis installed")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="qmri_habitat_bench_"))
    try:
        if not args.predict_only:
            if not args.skip_cohort:
                part_a(args, work / "cohort")
            part_b(args, work / "side_by_side")
        if args.predict or args.predict_only:
            part_c(args, work / "predict")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

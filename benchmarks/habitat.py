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

Run:  python benchmarks/habitat.py [--subjects 50] [--voxels 20000] [--habit-subjects 4]
      [--habit-voxels 6000] [--work DIR] [--skip-cohort] [--skip-habit]
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=50)
    ap.add_argument("--voxels", type=int, default=20_000)
    ap.add_argument("--habit-subjects", type=int, default=4)
    ap.add_argument("--habit-voxels", type=int, default=6_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, help="folder for phantoms and maps (default: a temporary folder)")
    ap.add_argument("--skip-cohort", action="store_true", help="skip part A")
    ap.add_argument("--skip-habit", action="store_true", help="part B without HABIT")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="qmri_habitat_bench_"))
    try:
        if not args.skip_cohort:
            part_a(args, work / "cohort")
        part_b(args, work / "side_by_side")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""The example cohort: a small BIDS dataset of habitat-phantom subjects, and the configuration that
runs ``qmri cohort`` on it (``qmri phantom cohort``, ``qmri cohort --example-config``).

Each participant is one subject of the habitat phantom (:mod:`qmri.habitats.phantom`: a tumour with
three known sub-regions, an IVIM series on the tumour's grid and a DCE series on a grid twice as coarse
in-plane). Layout (BIDS 1.11)::

    dataset_description.json, README, participants.tsv + .json (participant_id, tumour_shape), .bidsignore
    sub-01/[ses-1/]dwi/sub-01_acq-ivim_dwi.nii.gz + .bval + .bvec
    sub-01/[ses-1/]perf/sub-01_dce.nii.gz + .json (FlipAngle, RepetitionTimeExcitation, RepetitionTime)
    derivatives/masks/sub-01/[ses-1/]dwi/sub-01_label-tumour_mask.nii.gz          (the ROI, IVIM grid)
    derivatives/masks/sub-01/[ses-1/]perf/sub-01_label-tumour_desc-dilated_mask.nii.gz  (DCE fit mask)
    derivatives/truth/sub-01/[ses-1/]dwi/sub-01_desc-subregions_dseg.nii.gz       (true sub-regions)

The official BIDS validator accepts it without error:

* the ``.bvec`` holds the x axis for every b > 0 volume (and 0 0 0 for b = 0): the phantom's tissue
  is isotropic, so its signal is the same along any direction and one direction is the truth;
* DCE is not part of BIDS 1.11, and no BIDS extension proposal covers it yet (ASL, BEP005, is
  the only perfusion method ratified, in the ``perf`` datatype; bids-specification issue #1549 asks
  for a DSC/DCE suffix). The series follows the specification's rule for such data ("Unspecified
  data", common principles): a BIDS-style name whose suffix reflects the data, ``_dce``, in the
  perfusion datatype ``perf``, with its JSON sidecar; ``.bidsignore`` lists ``*_dce.*`` so that
  the validator skips these files (its mechanism for non-standard files, and what the BIDS
  maintainers advise in that issue). A later BIDS release that names DCE would need, at most, a new
  name here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qmri import io
from qmri.bids import bids_version
from qmri.errors import QMRIInputError
from qmri.habitats.phantom import definition, draw_outcome, habitat_subject
from qmri.options import Option
from qmri.resultset import refuse_existing, write_sets
from qmri.simulate import bval_text, bvec_text

#: The configuration printed by ``qmri cohort --example-config`` (it runs on the example dataset).
EXAMPLE_CONFIG = '''\
# qmri cohort configuration (TOML). Run:
#   qmri cohort BIDS_DIR OUT_DIR participant --config steps.toml   (fit every subject/session)
#   qmri cohort BIDS_DIR OUT_DIR group --config steps.toml         (habitats and the cohort table)
# Selectors ({ ... }) pick one file per participant by BIDS entities (acq, run, desc, label...),
# suffix, datatype and extension; "dataset" names a derivatives folder (relative to BIDS_DIR).

[fit.ivim]                    # a fit step; its name prefixes its columns in the cohort table
model = "ivim"                # a qmri fitting command (as in `qmri --help`: ivim, dce, ...)
method = "segmented"          # optional (default: the model's); see qmri ivim --help
series = { datatype = "dwi", suffix = "dwi", acq = "ivim" }     # the .bval is found beside it
mask = { dataset = "derivatives/masks", datatype = "dwi", suffix = "mask", label = "tumour" }

[fit.ivim.options]            # the command's options, by Python keyword (qmri ivim --help)
threshold = 200               # --threshold: b (s/mm2) from which perfusion is neglected

[fit.dce]
model = "dce"
series = { datatype = "perf", suffix = "dce" }    # flip angle, TR, frame times from its .json
mask = { dataset = "derivatives/masks", datatype = "perf", suffix = "mask", desc = "dilated" }

[fit.dce.options]
model = "tofts"               # --model: tofts, etm, ...
aif = "parker"                # population AIF starting at the injection time...
aif_delay = 20.0              # ... 20 s after the first frame
t10 = 1.0                     # pre-contrast T1 (s); or t1 = { suffix = "T1map" } for a map per subject
r1 = 4.5                      # relaxivity (1/s/mM)
baseline = 4                  # pre-contrast frames

[roi]                         # the ROI of the cohort table and of the habitats
mask = { dataset = "derivatives/masks", datatype = "dwi", suffix = "mask", label = "tumour" }
statistics = ["mean", "sd", "median", "q1", "q3", "nan_fraction"]

[habitat]                     # population habitat model over every participant (group level)
maps = ["ivim.D", "ivim.f", "dce.Ktrans"]         # <fit step>.<map>
k = 3                         # or "auto"; any setting of qmri habitat (method, spatial, beta, seed...)

# [predict]                   # with qmri phantom cohort --outcome: an outcome model from the habitats
# outcome = "outcome"         # a binary column of participants.tsv; any setting of qmri predict
'''

#: ``qmri phantom cohort`` (:data:`qmri.cli.phantom.OTHER_PHANTOMS`).
PHANTOM_NAME = "cohort"
PHANTOM_HELP = ("a BIDS dataset of habitat-phantom subjects (IVIM, DCE, ROI masks) for qmri cohort "
                "(qmri cohort --example-config runs on it)")
PHANTOM_OPTIONS = (
    Option("subjects", "number of subjects, default 4", int, 4),
    Option("sessions", "sessions per subject (0: no session level), default 0", int, 0),
    Option("voxels", "tumour size in diffusion voxels (default 1000)", int, 1000),
    Option("outcome", "add a binary outcome column to participants.tsv, drawn through a logistic link on the true "
                      "fraction of the high-Ktrans habitat (best achievable AUC in derivatives/truth/outcome.json; "
                      "use 60-200 subjects)", bool, False),
    Option("repeat", "scan every subject twice (ses-1, ses-2: same tumour, new noise, DCE grid shifted by up to half "
                     "a voxel) for qmri habitat --stability", bool, False),
)


#: Files the BIDS validator is told to skip (``.bidsignore``): the DCE series, which BIDS 1.11
#: does not specify (named by its "Unspecified data" rule: BIDS-style, suffix ``dce``).
BIDSIGNORE = ".bidsignore"
#: participants.json entry of the tumour_shape column
TUMOUR_SHAPE = {"tumour_shape": {"Description": "shape of the phantom tumour (qmri.habitats.phantom)"}}
IGNORED = ("*_dce.nii.gz", "*_dce.json")

README = """qmri cohort example (habitat phantom)

Simulated data written by `qmri phantom cohort`: each subject is a tumour of the qmri habitat phantom
with three known sub-regions ({regions}), an IVIM diffusion series (dwi/) and a DCE series (perf/, on a
grid twice as coarse in-plane). derivatives/masks holds the tumour ROI (diffusion grid) and the DCE fit
mask; derivatives/truth the true sub-regions.

DCE is not part of BIDS 1.11 and no extension proposal covers it yet: the series follow the
specification's rule for unspecified data (BIDS-style name, suffix dce, in the perfusion datatype),
perf/sub-<label>_dce.nii.gz with its JSON sidecar, and .bidsignore lists them.
The diffusion phantom is isotropic: its .bvec gives the x axis for every diffusion-weighted volume.
"""


def isotropic_bvecs(bvals) -> np.ndarray:
    """b-vectors (n, 3) for a series simulated with isotropic diffusion: ``(0, 0, 0)`` at b = 0, the x
    axis elsewhere (the signal is the same along any direction, so one direction is the truth)."""
    b = np.asarray(bvals, dtype=np.float64)
    g = np.zeros((b.size, 3))
    g[b > 0, 0] = 1.0
    return g


def participants_of(subjects: int, sessions: int) -> list[tuple[str, str | None]]:
    """``[(subject label, session label or None)]`` of the example dataset."""
    return [(f"{i + 1:02d}", None if not sessions else str(j + 1)) for i in range(subjects)
            for j in range(max(1, sessions))]


def _files(sub: str, ses: str | None) -> dict[str, Path]:
    """Every file of one participant, relative to the dataset root, by role."""
    base = Path(f"sub-{sub}") / (f"ses-{ses}" if ses else "")
    stem = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
    masks, truth = Path("derivatives/masks") / base, Path("derivatives/truth") / base
    return {"dwi": base / "dwi" / f"{stem}_acq-ivim_dwi.nii.gz", "bval": base / "dwi" / f"{stem}_acq-ivim_dwi.bval",
            "bvec": base / "dwi" / f"{stem}_acq-ivim_dwi.bvec",
            "dce": base / "perf" / f"{stem}_dce.nii.gz", "dce_json": base / "perf" / f"{stem}_dce.json",
            "roi": masks / "dwi" / f"{stem}_label-tumour_mask.nii.gz",
            "dce_mask": masks / "perf" / f"{stem}_label-tumour_desc-dilated_mask.nii.gz",
            "truth": truth / "dwi" / f"{stem}_desc-subregions_dseg.nii.gz"}


def write_example_dataset(bids_dir, *, subjects: int = 4, sessions: int = 0, voxels: int = 1000, seed: int = 0,
                          force: bool = False, outcome: bool = False, repeat: bool = False) -> list:
    """Write the example BIDS dataset (see the module docstring); return the phantom subjects.

    ``outcome`` adds an ``outcome`` column (0/1) to ``participants.tsv`` (described in
    ``participants.json``), drawn by :func:`qmri.habitats.phantom.draw_outcome`, and writes its truth
    (the link, each subject's risk, the best achievable AUC) to ``derivatives/truth/outcome.json``.
    ``repeat`` writes two sessions per subject, the second a repeat scan of the first
    (:func:`qmri.habitats.phantom.habitat_subject` with ``repeat=1``).

    Each folder's files are written as one :class:`qmri.resultset.ResultSet`.

    Raises
    ------
    QMRIInputError
        ``subjects`` < 1, ``sessions`` < 0, ``voxels`` < 200.
    OutputExistsError
        A file exists and ``force`` is False (nothing is written).
    """
    if subjects < 1 or sessions < 0:
        raise QMRIInputError(f"subjects must be >= 1 and sessions >= 0, got {subjects} and {sessions}")
    if repeat and sessions:
        raise QMRIInputError("--repeat writes two sessions per subject (the scan and its repeat); drop --sessions")
    if outcome and subjects < 10:
        raise QMRIInputError(f"--outcome needs at least 10 subjects (60-200 for a useful cohort), got {subjects}")
    root = Path(bids_dir)
    people = participants_of(subjects, 2 if repeat else sessions)
    tops = ["dataset_description.json", "README", "participants.tsv", "participants.json", BIDSIGNORE,
            "derivatives/masks/dataset_description.json", "derivatives/truth/dataset_description.json"]
    tops += ["derivatives/truth/outcome.json"] if outcome else []
    refuse_existing([root / t for t in tops] + [root / f for p in people for f in _files(*p).values()], force)
    d = definition()
    c = d["dce"]
    made, shapes = [], {}
    for i, (sub, ses) in enumerate(people):
        index, again = (int(sub) - 1, int(ses) - 1) if repeat else (i, 0)
        s = habitat_subject(index, voxels=voxels, seed=seed, d=d, repeat=again)
        shapes.setdefault(sub, s.shape_name)
        f = {k: root / v for k, v in _files(sub, ses).items()}
        writers = {
            f["dwi"]: lambda p, s=s: io.write_map(p, s.dwi, affine=s.dwi_affine),
            f["bval"]: lambda p, s=s: io.write_text(p, bval_text(s.bvals)),
            f["bvec"]: lambda p, s=s: io.write_text(p, bvec_text(isotropic_bvecs(s.bvals))),
            f["dce"]: lambda p, s=s: io.write_map(p, s.dce, affine=s.dce_affine),
            f["dce_json"]: lambda p: io.write_json(p, {"FlipAngle": c["FA"], "RepetitionTimeExcitation": c["TR"],
                                                       "RepetitionTime": c["frame_interval"]}),
            f["roi"]: lambda p, s=s: io.write_map(p, s.roi, affine=s.dwi_affine, dtype=np.uint8, intent="tumour"),
            f["dce_mask"]: lambda p, s=s: io.write_map(p, s.dce_mask, affine=s.dce_affine, dtype=np.uint8,
                                                       intent="DCE fit mask"),
            f["truth"]: lambda p, s=s: io.write_map(p, s.labels, affine=s.dwi_affine, dtype=np.uint8,
                                                    intent="sub-regions"),
        }
        write_sets(writers, force=force)
        made.append(s)
    desc = {"BIDSVersion": bids_version(), "GeneratedBy": [{"Name": "qmri phantom cohort"}]}
    regions = "; ".join(f"{i + 1} {r['name']}" for i, r in enumerate(d["regions"]))
    tables = {
        root / "dataset_description.json": lambda p: io.write_json(p, {"Name": "qmri cohort example (habitat phantom)",
                                                                      "DatasetType": "raw", **desc}),
        root / "participants.tsv": lambda p: io.write_text(p, "participant_id\ttumour_shape\n" + "".join(
            f"sub-{sub}\t{shape}\n" for sub, shape in shapes.items())),
        root / "participants.json": lambda p: io.write_json(p, TUMOUR_SHAPE),
        root / "README": lambda p: io.write_text(p, README.format(regions=regions)),
        root / BIDSIGNORE: lambda p: io.write_text(p, "".join(f"{g}\n" for g in IGNORED)),
        root / "derivatives/masks/dataset_description.json": lambda p: io.write_json(
            p, {"Name": "tumour masks", "DatasetType": "derivative", **desc}),
        root / "derivatives/truth/dataset_description.json": lambda p: io.write_json(
            p, {"Name": f"true sub-regions ({regions})", "DatasetType": "derivative", **desc}),
    }
    if outcome:
        firsts = [s for s, (_, ses) in zip(made, people) if ses in (None, "1")]
        o = draw_outcome(firsts, seed=seed, d=d)
        y = dict(zip(shapes, o["outcome"]))
        tables[root / "participants.tsv"] = lambda p: io.write_text(
            p, "participant_id\ttumour_shape\toutcome\n" + "".join(f"sub-{sub}\t{shape}\t{y[sub]}\n"
                                                                     for sub, shape in shapes.items()))
        tables[root / "participants.json"] = lambda p: io.write_json(p, {**TUMOUR_SHAPE, "outcome": {
            "Description": "simulated binary outcome: " + o["link"],
            "Levels": {"0": "negative", "1": "positive"}}})
        tables[root / "derivatives/truth/outcome.json"] = lambda p: io.write_json(p, {
            **{k: v for k, v in o.items() if k not in ("outcome", "risk", "feature")},
            "subjects": {f"sub-{sub}": {"outcome": int(y[sub]), "risk": float(r), "feature": float(x)}
                         for sub, r, x in zip(shapes, o["risk"], o["feature"])}})
    write_sets(tables, force=force)
    return made


def write_phantom(out_dir, *, seed: int = 0, force: bool = False, subjects: int = 4, sessions: int = 0,
                  voxels: int = 1000, outcome: bool = False, repeat: bool = False) -> str:
    """``qmri phantom cohort``: write the example dataset; return what was written and how to run it."""
    made = write_example_dataset(out_dir, subjects=subjects, sessions=sessions, voxels=voxels, seed=seed, force=force,
                                 outcome=outcome, repeat=repeat)
    out = Path(out_dir)
    text = (f"cohort example: {len(made)} participant(s) written to {out} (IVIM dwi, DCE perf, tumour masks in "
            f"{out / 'derivatives/masks'}, true sub-regions in {out / 'derivatives/truth'})\nrun it:\n"
            f"  qmri cohort --example-config > steps.toml\n"
            f"  qmri cohort {out} {out / 'derivatives/qmri'} participant --config steps.toml\n"
            f"  qmri cohort {out} {out / 'derivatives/qmri'} group --config steps.toml")
    if outcome:
        truth = json.loads((out / "derivatives/truth/outcome.json").read_text())
        text += (f"\noutcome: participants.tsv column outcome ({truth['prevalence']:.0%} positive), logistic in the "
                 f"true fraction of the {truth['region']}; best achievable AUC {truth['best_auc_expected']:.3f} "
                 f"(expected), {truth['best_auc_realised']:.3f} (true risk on this draw): "
                 f"{out / 'derivatives/truth/outcome.json'}\n"
                 f"  qmri predict --cohort {out / 'derivatives/qmri/group/habitat_cohort.csv'} --outcome "
                 f"{out / 'participants.tsv'}:outcome --out-dir {out / 'derivatives/qmri/group/predict'}")
    return text

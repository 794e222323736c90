"""``qmri habitat``: cluster parameter maps into habitats (one subject, or a cohort), one library call
(:func:`qmri.habitats.files.habitats_from_files`), then a summary."""

from __future__ import annotations

from pathlib import Path

from qmri.cli.options import add_options, given
from qmri.errors import QMRIInputError

#: Row of the README's command table.
USAGE = "qmri habitat --maps MAP... --mask ROI \\| --cohort CSV --out-dir OUT [--k auto\\|N]"
SUMMARY = "habitats: cluster parameter maps into sub-regions with the same meaning in every subject"


def add_parser(sub):
    from qmri.habitats.analysis import OPTIONS

    p = sub.add_parser("habitat", help=SUMMARY, description=(
        "Cluster the voxels of a tumour ROI in the joint space of several parameter maps (e.g. IVIM D and f with "
        "DCE Ktrans) into habitats numbered the same way in every subject. Maps on another grid than the mask are "
        "resampled onto it (linear, scanner coordinates). Default: per-subject z-scores, k-means with a Potts "
        "Markov random field over the 26-neighbourhood, k chosen by the silhouette over 2..8."))
    g = p.add_argument_group("input")
    g.add_argument("--maps", nargs="+", metavar="MAP", help="maps of one subject: FILE.nii.gz (feature named by the "
                   "file stem), FOLDER:NAME[,NAME] (maps of a qmri output folder) or NAME=FILE")
    g.add_argument("--mask", type=Path, help="ROI mask of that subject; its grid is the output grid")
    g.add_argument("--cohort", type=Path, metavar="CSV", help="cohort table: header id,mask,<feature>..., one row of "
                   "paths (NIfTI files or qmri output folders) per subject, relative to the table's folder")
    g.add_argument("--no-resample", dest="resample", action="store_false",
                   help="a map on another grid than the mask is an error instead of being resampled")
    c = p.add_argument_group("clustering")
    c.add_argument("--two-level", action="store_true", help="same as --spatial supervoxels (two-level clustering)")
    add_options(c, OPTIONS)
    m = p.add_argument_group("model")
    m.add_argument("--model", type=Path, metavar="JSON", help="label with a saved cohort model (its features, units "
                   "and settings; no clustering option may be given)")
    m.add_argument("--save-model", type=Path, metavar="JSON", help="write the fitted cohort model")
    m.add_argument("--stability", type=Path, metavar="CSV", help="cohort table of repeat scans of the --cohort "
                   "subjects: label them with the same model, write stability.csv (ICC(2,1) and ICC(3,1) with 95%% "
                   "CI of every habitat feature) and dice.csv (habitat Dice between the scans)")
    o = p.add_argument_group("output")
    o.add_argument("--out-dir", required=True, type=Path, help="output folder (one sub-folder per subject id with "
                                                                "--cohort)")
    o.add_argument("--force", action="store_true", help="overwrite existing outputs")
    o.add_argument("--plot", action="store_true", help="also write habitats.png per subject")
    o.add_argument("--quiet", action="store_true", help="no summary")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from qmri.habitats.analysis import OPTIONS
    from qmri.habitats.files import habitats_from_files, summary

    settings = given(args, OPTIONS)
    if args.two_level:
        if settings.get("spatial", "supervoxels") != "supervoxels":
            raise QMRIInputError(f"--two-level means --spatial supervoxels, not {settings['spatial']}")
        settings["spatial"] = "supervoxels"

    def announce(line):
        if not args.quiet:
            print(f"qmri habitat: {line}", flush=True)

    outcome = habitats_from_files(out_dir=args.out_dir, maps=args.maps, mask=args.mask, cohort=args.cohort,
                                  model=args.model, save_model=args.save_model, resample=args.resample,
                                  force=args.force, plot=args.plot, on_start=announce, stability=args.stability,
                                  **settings)
    st = outcome.stability
    if st is not None and not args.quiet:
        print(f"stability: {st['subjects']} subjects scanned twice; {st['stable_0.5']} of {st['features']} "
              f"habitat features with ICC(2,1) lower 95% limit >= 0.5; mean habitat Dice {st['dice_mean']:.3f}")
    if not args.quiet:
        print(summary(outcome))
        print(f"wrote {len(outcome.written)} files to {args.out_dir}  (total {outcome.seconds:.2f} s)")
    return 0

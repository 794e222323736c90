"""``qmri plot-fit``: one voxel's measured and fitted signal, one library call (:func:`qmri.workflows.plot_fit.plot_fit`)."""

from __future__ import annotations

from pathlib import Path

from qmri.cli import logs

#: Row of the README's command table.
USAGE = "qmri plot-fit SERIES --maps DIR --voxel I,J,K [--out fit.png]"
SUMMARY = "figure of one voxel: measured signal and the fitted model (rebuilt from the maps' sidecars)"


def add_parser(sub):
    p = sub.add_parser("plot-fit", help=SUMMARY, description=(
        "Draw the measured signal of one voxel of SERIES and the signal of the fitted model there, against b, "
        "flip angle or time. The maps are read from DIR (a qmri output folder, or the folder holding BIDS "
        "derivative maps) and the model is rebuilt from their sidecars."))
    p.add_argument("series", type=Path, metavar="SERIES", help="the fitted 4-D series")
    p.add_argument("--maps", required=True, type=Path, metavar="DIR", help="folder of the fit's maps")
    p.add_argument("--prefix", default="", help="the fit's file-name prefix (or the start of its BIDS names)")
    p.add_argument("--voxel", required=True, metavar="I,J,K", help="voxel indices (0-based, as in the NIfTI file)")
    p.add_argument("--out", type=Path, help="PNG to write (default: fit_I_J_K.png in DIR)")
    p.add_argument("--force", action="store_true", help="overwrite the PNG")
    p.add_argument("--quiet", action="store_true", help="no summary line")
    logs.add_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from qmri.plot import parse_voxel
    from qmri.workflows.plot_fit import plot_fit

    ijk = parse_voxel(args.voxel)
    out = args.out or args.maps / f"fit_{ijk[0]}_{ijk[1]}_{ijk[2]}.png"
    with logs.session(args, "qmri plot-fit"):
        curve = plot_fit(args.series, args.maps, ijk, out, prefix=args.prefix, force=args.force)
    if not args.quiet:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in curve["values"].items())
        print(f"wrote {out}: voxel {ijk}: {shown}")
    return 0

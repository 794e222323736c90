"""``qmri t1``: T1 (s) and M0 maps from a variable-flip-angle spoiled gradient-echo series."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from qmri.cli import common
from qmri.errors import QMRIInputError


def add_parser(sub):
    p = sub.add_parser(
        "t1", help="map T1 (s) and M0 from variable-flip-angle SPGR images",
        description="Fit the spoiled gradient-echo signal to a variable-flip-angle series voxel by voxel "
                    "(DESPOT1 line fit or bounded Levenberg-Marquardt from it). T1 in s, flip angles in "
                    "degrees, TR in s. Writes T1, M0 and the fit quality maps.")
    p.add_argument("vfa", type=Path, help="4-D NIfTI, one volume per flip angle")
    p.add_argument("--fa", required=True, help="flip angles in degrees, comma separated, in volume order (e.g. 2,5,10,15)")
    p.add_argument("--tr", required=True,
                   help="repetition time in s (e.g. 0.005), or one value per flip angle, comma separated")
    p.add_argument("--b1", type=Path, help="3-D relative B1 map on the same grid (actual/nominal flip angle)")
    p.add_argument("--b1-units", choices=["fraction", "percent"], default="fraction",
                   help="B1 map values: fraction (1 = nominal, default) or percent (100 = nominal)")
    p.add_argument("--mask", type=Path, help="3-D mask NIfTI on the same grid (default: every voxel)")
    p.add_argument("--method", choices=["nonlinear", "linear"], default="nonlinear",
                   help="nonlinear: bounded LM fit from the linear start (default); linear: DESPOT1 line fit")
    p.add_argument("--se", action="store_true", help="also write standard errors T1_se, M0_se (nonlinear)")
    common.add_output_arguments(p)
    p.set_defaults(func=run)
    return p


def parse_numbers(text: str, option: str) -> np.ndarray:
    """``"2,5,10"`` → array([2., 5., 10.]); QMRIInputError naming ``option`` otherwise."""
    try:
        values = np.array([float(v) for v in text.replace(" ", "").split(",") if v != ""])
    except ValueError:
        raise QMRIInputError(f"{option}: expected comma-separated numbers, got {text!r}") from None
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise QMRIInputError(f"{option}: expected comma-separated finite numbers, got {text!r}")
    return values


def run(args) -> int:
    from qmri import io
    from qmri.models.t1 import VFA

    t0 = time.perf_counter()
    fa = parse_numbers(args.fa, "--fa")
    tr = parse_numbers(args.tr, "--tr")
    if np.any(fa <= 0):
        raise QMRIInputError("--fa: flip angles must be positive (degrees)")
    if np.any(tr <= 0):
        raise QMRIInputError("--tr: repetition time must be positive (seconds)")
    img = io.load_nifti(args.vfa, ndim=4, what="VFA series")
    if fa.size != img.shape[3]:
        raise QMRIInputError(f"--fa gives {fa.size} flip angles but {args.vfa} has {img.shape[3]} volumes")
    if tr.size not in (1, fa.size):
        raise QMRIInputError(f"--tr: give one TR or one per flip angle ({fa.size}), got {tr.size}")
    mask = io.load_mask(args.mask, img, reference_path=args.vfa) if args.mask else None
    b1 = None
    if args.b1:
        b1 = io.load_on_grid(args.b1, img, what="B1 map", reference_path=args.vfa).astype(np.float64)
        if args.b1_units == "percent":
            b1 = b1 / 100.0
        inside = b1[mask] if mask is not None else b1
        inside = inside[np.isfinite(inside) & (inside > 0)]
        if inside.size == 0:
            raise QMRIInputError(f"{args.b1}: no positive finite B1 values{' inside the mask' if mask is not None else ''}")
        if args.b1_units == "fraction" and np.median(inside) > 10:
            raise QMRIInputError(f"{args.b1}: median B1 {np.median(inside):g} looks like percent; use --b1-units percent")
    if args.se and args.method != "nonlinear":
        raise QMRIInputError("--se needs --method nonlinear (the linear fit gives no standard errors)")
    model = VFA(fa, tr, b1=b1)
    model.check_method(args.method)
    names = ["T1", "M0"] + (["T1_se", "M0_se"] if args.se else []) + ["rmse", "r2", "status", "n_iter"]
    common.refuse_overwrite(common.planned_outputs(names, args), args.force)
    data = io.image_data(img)
    maps = model.fit(data, mask=mask, method=args.method, compute_se=args.se, progress=common.show_progress(args))
    sources = [args.vfa] + ([args.b1] if args.b1 else []) + ([args.mask] if args.mask else [])
    written = common.write_results(maps, args, img, sources)
    common.print_summary(maps, written, t0, args)
    return 0

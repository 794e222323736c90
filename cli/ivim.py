"""``qmri ivim``, ``qmri phantom ivim`` and the IVIM part of ``qmri demo``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from qmri.cli import common


def add_parser(sub):
    from qmri.models.ivim import DEFAULT_THRESHOLD, PRESETS

    p = sub.add_parser("ivim", help="fit IVIM (S0, f, D, Dstar) to a diffusion series",
                       description="Fit the bi-exponential IVIM model voxel by voxel. "
                                   "D and Dstar in mm2/s, b in s/mm2, f a fraction.")
    p.add_argument("dwi", type=Path, help="4-D diffusion-weighted NIfTI series")
    p.add_argument("--bval", required=True, type=Path, help="FSL .bval file (s/mm2), one value per volume")
    p.add_argument("--mask", type=Path, help="3-D mask NIfTI on the same grid (default: every voxel)")
    p.add_argument("--method", choices=["lsq", "segmented"], default="lsq",
                   help="lsq: full bounded fit from a segmented start (default); segmented: consensus fit")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="b (s/mm2) from which perfusion is neglected in the segmented step (default 200)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="organ preset of the initial guess")
    p.add_argument("--bounds", help="override bounds, e.g. 'f=0:0.5,Dstar=0.005:0.1' (D in mm2/s)")
    p.add_argument("--se", action="store_true", help="also write standard errors <param>_se (lsq)")
    common.add_output_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from qmri import io
    from qmri.models.ivim import IVIM

    t0 = time.perf_counter()
    img, bvals, mask = common.load_series(args)
    model = IVIM(bvals, threshold=args.threshold, preset=args.preset,
                 bounds=common.parse_pairs(args.bounds, "--bounds"))
    model.check_method(args.method)
    names = ["S0", "f", "D", "Dstar"] + (["S0_se", "f_se", "D_se", "Dstar_se"] if args.se else [])
    names += ["rmse", "r2", "status", "n_iter"]
    common.refuse_overwrite(common.planned_outputs(names, args), args.force)
    data = io.image_data(img)
    maps = model.fit(data, mask=mask, method=args.method, compute_se=args.se, progress=common.show_progress(args))
    written = common.write_results(maps, args, img, [args.dwi, args.bval] + ([args.mask] if args.mask else []))
    common.print_summary(maps, written, t0, args)
    return 0


def add_phantom_parser(sub):
    p = sub.add_parser("ivim", help="IVIM phantom: tissue blocks with known f, D, Dstar (OSIPI values)")
    common.add_phantom_arguments(p)
    p.add_argument("--bval", type=Path, help="FSL .bval file to simulate (default 13 b-values 0-1000 s/mm2)")
    p.set_defaults(func=run_phantom)


def run_phantom(args) -> int:
    from qmri import io
    from qmri.phantoms import ivim_phantom, save_phantom

    bvals = io.read_bvals(args.bval) if args.bval else None
    ph = ivim_phantom(snr=args.snr, seed=args.seed, bvals=bvals, block=args.block)
    bval_text = " ".join(f"{b:g}" for b in ph.acquisition["bvals"]) + "\n"
    save_phantom(ph, args.out_dir, force=args.force, extra_files={"ivim.bval": bval_text})
    print(f"IVIM phantom {ph.data.shape} ({int(ph.mask.sum())} voxels, {len(ph.regions)} regions, "
          f"SNR {args.snr:g}) written to {args.out_dir}: ivim.nii.gz, ivim.bval, mask.nii.gz, truth_*.nii.gz")
    return 0


def demo_part(out_dir: Path, args) -> str:
    """Fit the IVIM phantom with every method; write maps and PNGs; return the accuracy table."""
    from qmri.models.ivim import IVIM
    from qmri.phantoms import ivim_phantom, nrmse_bias, save_phantom
    from qmri.plot import montage

    ph = ivim_phantom(snr=30.0, seed=0, block=(16, 16, 4))
    bval_text = " ".join(f"{b:g}" for b in ph.acquisition["bvals"]) + "\n"
    save_phantom(ph, out_dir / "phantom", force=args.force, extra_files={"ivim.bval": bval_text})
    model = IVIM(ph.acquisition["bvals"])
    n = int(ph.mask.sum())
    lines = [f"IVIM phantom: {n} voxels, {len(ph.regions)} tissues, 13 b-values, SNR 30 (Rician)",
             f"{'method':<10s} {'vox/s':>10s} {'conv %':>7s}   " + "  ".join(
                 f"{'NRMSE ' + k:>12s} {'bias ' + k:>11s}" for k in ("f", "D", "Dstar"))]
    for method in IVIM.methods:
        maps, rate = common.timed_fit(model, ph.data, ph.mask, method)
        maps.save(out_dir / method, force=args.force)
        montage(maps, out_dir / method / "maps.png", title=f"IVIM {method}")
        cells = []
        for k in ("f", "D", "Dstar"):
            e, b = nrmse_bias(maps[k], ph.truth[k], ph.mask)
            cells.append(f"{e:12.3f} {100 * b:10.1f}%")
        lines.append(f"{method:<10s} {rate:10.0f} {100 * maps.converged_fraction:7.1f}   " + "  ".join(cells))
    return "\n".join(lines)

"""``qmri dki``, ``qmri phantom dki`` and the DKI part of ``qmri demo``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from qmri.cli import common
from qmri.errors import QMRIInputError

FULL_METHODS = ["wls", "ols", "nls", "cwls"]


def add_parser(sub):
    p = sub.add_parser(
        "dki", help="fit diffusion kurtosis (full tensor, or trace/powder DKI for body imaging)",
        description="Fit DKI voxel by voxel. Full tensor (S0, MD, AD, RD, FA, MK, AK, RK, MKT, KFA) when a "
                    ".bvec with >= 15 directions is given and --trace is not set; otherwise trace DKI "
                    "S = S0 exp(-b D + b^2 D^2 K/6) on direction-averaged images (S0, D, K). "
                    "b in s/mm2, diffusivities in mm2/s, kurtosis unitless.")
    p.add_argument("dwi", type=Path, help="4-D diffusion-weighted NIfTI series")
    p.add_argument("--bval", required=True, type=Path, help="FSL .bval file (s/mm2), one value per volume")
    p.add_argument("--bvec", type=Path, help="FSL .bvec file (unit vectors; needed for the full tensor)")
    p.add_argument("--mask", type=Path, help="3-D mask NIfTI on the same grid (default: every voxel)")
    p.add_argument("--method", choices=FULL_METHODS, default="wls",
                   help="full tensor: wls (default; weighted linear LS, dipy's WLS), ols, nls (bounded LM "
                        "from WLS), cwls (WLS with D(n) >= 0 and 0 <= K(n) <= 3/(b_max D(n))); trace DKI "
                        "always uses bounded LM")
    p.add_argument("--trace", action="store_true",
                   help="trace/powder DKI: average the volumes of each b-shell (b rounded to 50 s/mm2) "
                        "when a .bvec is given, else fit each volume as one b-value")
    p.add_argument("--bmax", type=float,
                   help="use only volumes with b <= BMAX s/mm2 (e.g. 2500; DKI holds up to about 2000-3000)")
    common.add_output_arguments(p)
    p.set_defaults(func=run)
    return p


def _select(bvals, bvecs, bmax):
    keep = np.ones(bvals.size, dtype=bool) if bmax is None else bvals <= bmax
    if not keep.any():
        raise QMRIInputError(f"--bmax {bmax:g} leaves no volume (smallest b is {bvals.min():g} s/mm2)")
    return keep


def run(args) -> int:
    from qmri import io
    from qmri.models.dki import DKI, TraceDKI, n_directions, powder_average

    t0 = time.perf_counter()
    img, bvals, mask = common.load_series(args)
    bvecs = io.read_bvecs(args.bvec, n=bvals.size) if args.bvec else None
    keep = _select(bvals, bvecs, args.bmax)
    b = bvals[keep]
    g = bvecs[keep] if bvecs is not None else None
    full = g is not None and not args.trace
    if full:
        nd = n_directions(b, g)
        if nd < 15:
            raise QMRIInputError(f"{args.bvec}: {nd} distinct directions (b > 50 s/mm2); full-tensor DKI needs "
                                 ">= 15 (use --trace for trace/powder DKI)")
        model = DKI(b, g)
        method = args.method
        mode = f"full-tensor DKI, method {method}, {b.size} volumes, {nd} directions, b <= {b.max():g} s/mm2"
        names = list(model.output_units(method))
    else:
        if args.method != "wls":
            raise QMRIInputError("--method applies to full-tensor DKI; trace DKI is always fitted by bounded LM")
        if g is not None:
            from qmri.models.dki import check_bvecs

            check_bvecs(b, g, where=str(args.bvec))
        b_fit = powder_average(np.zeros(b.size), b, g)[1]
        model = TraceDKI(b_fit)
        method = "lsq"
        how = "direction-averaged per b-shell" if g is not None else "one b-value per volume"
        mode = f"trace DKI ({how}), {b_fit.size} b-values: {', '.join(f'{v:g}' for v in b_fit)} s/mm2"
        names = list(model.output_units(method))
    names += ["rmse", "r2", "status", "n_iter"]
    common.refuse_overwrite(common.planned_outputs(names, args), args.force)
    data = io.image_data(img)[..., keep]
    if not full:
        data = powder_average(data, b, g)[0]
    if not args.quiet:
        print(f"qmri dki: {mode}")
    maps = model.fit(data, mask=mask, method=method, progress=common.show_progress(args))
    maps.provenance["mode"] = "full-tensor" if full else "trace"
    if args.bmax is not None:
        maps.provenance["bmax"] = args.bmax
    sources = [args.dwi, args.bval] + ([args.bvec] if args.bvec else []) + ([args.mask] if args.mask else [])
    written = common.write_results(maps, args, img, sources)
    common.print_summary(maps, written, t0, args)
    return 0


def add_phantom_parser(sub):
    p = sub.add_parser("dki", help="DKI phantom: tissue blocks with known diffusion and kurtosis tensors")
    common.add_phantom_arguments(p)
    p.set_defaults(func=run_phantom)


def _save(ph, out_dir, force):
    from qmri.phantoms import bvec_text, save_phantom

    bval_text = " ".join(f"{b:g}" for b in ph.acquisition["bvals"]) + "\n"
    save_phantom(ph, out_dir, force=force,
                 extra_files={"dki.bval": bval_text, "dki.bvec": bvec_text(ph.acquisition["bvecs"])})


def run_phantom(args) -> int:
    from qmri.phantoms import dki_phantom

    ph = dki_phantom(snr=args.snr, seed=args.seed, block=args.block)
    _save(ph, args.out_dir, args.force)
    print(f"DKI phantom {ph.data.shape} ({int(ph.mask.sum())} voxels, {len(ph.regions)} regions, SNR {args.snr:g}) "
          f"written to {args.out_dir}: dki.nii.gz, dki.bval, dki.bvec, mask.nii.gz, truth_*.nii.gz")
    return 0


def demo_part(out_dir: Path, args) -> str:
    """Fit the DKI phantom with every full-tensor method; write maps and PNGs; return the table."""
    from qmri.models.dki import DKI, apparent_kurtosis, hemisphere
    from qmri.phantoms import dki_phantom, nrmse_bias
    from qmri.plot import montage

    ph = dki_phantom(snr=30.0, seed=0, block=(16, 16, 4))
    _save(ph, out_dir / "phantom", args.force)
    model = DKI(ph.acquisition["bvals"], ph.acquisition["bvecs"])
    n = int(ph.mask.sum())
    keys = ("MD", "FA", "MK", "MKT")
    lines = [f"DKI phantom: {n} voxels, {len(ph.regions)} tissues, 3 b0 + 30 dirs x b=1000, 2000, SNR 30 (Rician)",
             f"{'method':<7s} {'vox/s':>9s} {'K<0 %':>6s}  " + "  ".join(f"{'NRMSE ' + k:>10s} {'bias ' + k:>9s}"
                                                                for k in keys)]
    dirs = hemisphere(100)
    for method in DKI.methods:
        maps, rate = common.timed_fit(model, ph.data, ph.mask, method)
        maps.save(out_dir / method, force=args.force)
        montage(maps, out_dir / method / "maps.png", names=["MD", "FA", "MK", "AK", "RK", "MKT"], title=f"DKI {method}")
        beta = model.coefficients(ph.data[ph.mask], method)[0]
        neg = float(np.mean(np.nanmin(apparent_kurtosis(beta, dirs), axis=1) < 0)) * 100
        cells = []
        for k in keys:
            e, bias = nrmse_bias(maps[k], ph.truth[k], ph.mask)
            cells.append(f"{e:10.3f} {100 * bias:8.1f}%")
        lines.append(f"{method:<7s} {rate:9.0f} {neg:6.1f}  " + "  ".join(cells))
    return "\n".join(lines)

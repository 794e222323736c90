"""``qmri dce``, ``qmri phantom dce`` and the DCE part of ``qmri demo``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from qmri.cli import common
from qmri.errors import OutputExistsError, QMRIInputError

PARAMS = {"tofts": ["Ktrans", "ve", "kep"], "etm": ["Ktrans", "ve", "vp", "kep"], "patlak": ["Ktrans", "vp"],
          "2cxm": ["Fp", "PS", "ve", "vp"], "2cum": ["Fp", "PS", "vp"]}


def add_parser(sub):
    from qmri.models.aif import DEFAULT_HCT
    from qmri.models.dce import MODEL_NAMES
    from qmri.models.relaxation import DEFAULT_R1

    p = sub.add_parser(
        "dce", help="fit a pharmacokinetic model (Tofts, extended Tofts, Patlak, 2CXM, 2CUM) to a DCE series",
        description="Fit a DCE-MRI pharmacokinetic model voxel by voxel. Time in s; Ktrans, kep and PS "
                    "in 1/min; Fp in mL/min/100mL; ve and vp fractions; delay in s (positive when the "
                    "tissue arrives after the AIF).")
    p.add_argument("dce", type=Path, help="4-D DCE series (signal, or concentration in mM with --input concentration)")
    tg = p.add_mutually_exclusive_group(required=True)
    tg.add_argument("--time", type=Path, help="text file with one frame time in s per frame (white space or new lines)")
    tg.add_argument("--tr-frame", type=float, metavar="SECONDS", help="uniform frame interval in s (first frame at 0 s)")
    p.add_argument("--model", choices=MODEL_NAMES, default="tofts",
                   help="tofts (Ktrans, ve), etm = extended Tofts (+vp), patlak (Ktrans, vp), "
                        "2cxm (Fp, PS, ve, vp), 2cum (Fp, PS, vp); default tofts")
    p.add_argument("--aif", required=True,
                   help="parker | georgiou | preclinical (population curves, starting at --aif-delay), "
                        "FILE.csv (two columns: time s, concentration mM) or roi:ARTERY_MASK.nii.gz "
                        "(mean concentration in the mask, whole blood)")
    p.add_argument("--aif-delay", type=float, default=0.0,
                   help="time (s) at which a population AIF starts, i.e. the injection time (default 0)")
    p.add_argument("--aif-blood", action="store_true",
                   help="the AIF file holds whole-blood concentration: convert to plasma with --hct")
    p.add_argument("--hct", type=float, default=DEFAULT_HCT,
                   help=f"haematocrit for blood -> plasma (population AIFs, roi:, --aif-blood); default {DEFAULT_HCT}")
    p.add_argument("--input", choices=["signal", "concentration"], default="signal",
                   help="what the series holds (default signal: converted with --t1/--t10, --fa, --tr, --r1, --baseline)")
    t1 = p.add_mutually_exclusive_group()
    t1.add_argument("--t1", type=Path, help="pre-contrast T1 map in s (3-D, same grid)")
    t1.add_argument("--t10", type=float, help="pre-contrast T1 in s for every voxel")
    p.add_argument("--fa", type=float, help="flip angle in degrees")
    p.add_argument("--tr", type=float, help="repetition time in s")
    p.add_argument("--r1", type=float, default=DEFAULT_R1, help=f"relaxivity in 1/s/mM (default {DEFAULT_R1})")
    p.add_argument("--baseline", type=int, help="number of pre-contrast frames")
    p.add_argument("--fit-delay", action="store_true", help="also fit an arterial delay (s, bounded ±10 s)")
    p.add_argument("--mask", type=Path, help="3-D mask NIfTI on the same grid (default: every voxel)")
    p.add_argument("--method", choices=["lsq", "linear"], default="lsq",
                   help="lsq: bounded Levenberg-Marquardt from the linear estimate (default); linear: linear estimate only")
    p.add_argument("--bounds", help="override bounds, e.g. 've=0.01:1,Ktrans=0:2'")
    p.add_argument("--se", action="store_true", help="also write standard errors <param>_se (lsq)")
    common.add_output_arguments(p)
    p.set_defaults(func=run)
    return p


def read_times(path) -> np.ndarray:
    """Frame times (s) from a text file: numbers separated by white space or new lines.

    Raises
    ------
    QMRIInputError
        Missing file, non-numeric content, no values, non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise QMRIInputError(f"{path}: time file not found")
    try:
        t = np.array(path.read_text().replace(",", " ").split(), dtype=np.float64)
    except ValueError as exc:
        raise QMRIInputError(f"{path}: cannot read frame times ({exc})") from None
    if t.size == 0:
        raise QMRIInputError(f"{path}: no frame times in file")
    if not np.all(np.isfinite(t)):
        raise QMRIInputError(f"{path}: frame times must be finite numbers (s)")
    return t


def frame_times(args, n_frames: int) -> np.ndarray:
    """Frame times from ``--time`` or ``--tr-frame``, checked against the number of frames."""
    if args.time is not None:
        t = read_times(args.time)
        if t.size != n_frames:
            raise QMRIInputError(f"{args.time}: {t.size} frame times but {args.dce} has {n_frames} frames")
        if np.any(np.diff(t) <= 0):
            i = int(np.flatnonzero(np.diff(t) <= 0)[0])
            raise QMRIInputError(f"{args.time}: frame times must be strictly increasing; time {i + 2} "
                                 f"({t[i + 1]:g} s) follows {t[i]:g} s")
        return t
    if not (np.isfinite(args.tr_frame) and args.tr_frame > 0):
        raise QMRIInputError(f"--tr-frame must be a positive number of seconds, got {args.tr_frame}")
    return np.arange(n_frames) * args.tr_frame


def arterial_input(args, t, img, conc_fn):
    """Plasma AIF (mM) at the frame times ``t`` from ``--aif``.

    ``conc_fn()`` returns the concentration series (for ``roi:``).
    """
    from qmri import io
    from qmri.models import aif as A

    spec = args.aif
    if spec in A.POPULATION_AIFS:
        if spec == "preclinical":
            return A.preclinical(t, delay=args.aif_delay)
        return A.POPULATION_AIFS[spec](t, hct=args.hct, delay=args.aif_delay)
    if spec.startswith("roi:"):
        path = Path(spec[4:])
        mask = io.load_mask(path, img, reference_path=args.dce)
        return A.blood_to_plasma(A.roi_aif(conc_fn(), mask), args.hct)
    path = Path(spec)
    if path.suffix.lower() not in (".csv", ".txt", ".tsv") and not path.exists():
        raise QMRIInputError(f"--aif {spec!r}: not a population AIF ({', '.join(A.POPULATION_AIFS)}), "
                             f"an existing file or roi:MASK")
    ta, ca = A.load_aif_csv(path, blood=args.aif_blood, hct=args.hct)
    tol = 1e-6 * max(1.0, abs(t[-1]))
    if ta[-1] < t[-1] - tol:
        raise QMRIInputError(f"AIF file {path} ends at {ta[-1]:g} s but the series runs to {t[-1]:g} s "
                             "(the AIF is shorter than the series)")
    if ta[0] > t[0] + tol:
        raise QMRIInputError(f"AIF file {path} starts at {ta[0]:g} s, after the first frame ({t[0]:g} s)")
    return np.interp(t, ta, ca)


def _t10(args, img, mask):
    from qmri import io

    if args.t10 is not None:
        if not (np.isfinite(args.t10) and args.t10 > 0):
            raise QMRIInputError(f"--t10 must be a positive T1 in s, got {args.t10}")
        return float(args.t10)
    if args.t1 is None:
        raise QMRIInputError("--input signal needs the pre-contrast T1: --t1 T1.nii.gz or --t10 SECONDS")
    t1img = io.load_nifti(args.t1, ndim=3, what="T1 map")
    if t1img.shape[:3] != img.shape[:3]:
        raise QMRIInputError(f"{args.t1}: T1 map shape {t1img.shape[:3]} differs from the DCE series {img.shape[:3]}")
    t1 = io.image_data(t1img)
    inside = t1[mask] if mask is not None else t1.ravel()
    bad = ~(np.isfinite(inside) & (inside > 0))
    if bad.any():
        raise QMRIInputError(f"{args.t1}: {int(bad.sum())} voxel(s){' inside the mask' if mask is not None else ''} "
                             "have zero, negative or non-finite T1 (T1 must be > 0 s; restrict with --mask)")
    if np.nanmedian(inside) > 20:
        raise QMRIInputError(f"{args.t1}: median T1 {np.nanmedian(inside):g} looks like ms; T1 must be in s")
    return np.where(np.isfinite(t1) & (t1 > 0), t1, np.nan)


def run(args) -> int:
    from qmri import io
    from qmri.models.dce import DCE
    from qmri.models.relaxation import signal_to_concentration

    t0 = time.perf_counter()
    img = io.load_nifti(args.dce, ndim=4, what="DCE series")
    n_frames = img.shape[3]
    t = frame_times(args, n_frames)
    mask = io.load_mask(args.mask, img, reference_path=args.dce) if args.mask else None
    t10 = None
    if args.input == "signal":
        missing = [f"--{k}" for k in ("fa", "tr", "baseline") if getattr(args, k) is None]
        if missing:
            raise QMRIInputError(f"--input signal needs {', '.join(missing)} to convert signal to concentration "
                                 "(or give --input concentration)")
        if not 1 <= args.baseline < n_frames:
            raise QMRIInputError(f"--baseline must be between 1 and {n_frames - 1} frames, got {args.baseline}")
        t10 = _t10(args, img, mask)
    # the model (and its argument checks) before any heavy work
    names = PARAMS[args.model] + (["delay"] if args.fit_delay else [])
    se = [f"{n}_se" for n in names if n != "kep"] if args.se else []
    outputs = common.planned_outputs(names + se + ["rmse", "r2", "status", "n_iter"], args)
    outputs.append(args.out_dir / f"{args.prefix}aif.csv")
    if args.plot:
        outputs.append(args.out_dir / f"{args.prefix}curves.png")
    common.refuse_overwrite(outputs, args.force)

    cache = {}

    def concentration():
        if "c" not in cache:
            data = io.image_data(img)
            if args.input == "signal":
                with np.errstate(invalid="ignore", divide="ignore"):
                    cache["c"] = signal_to_concentration(data, t10=t10, r1=args.r1, tr=args.tr, fa=args.fa,
                                                         n_baseline=args.baseline)
            else:
                cache["c"] = data
        return cache["c"]

    cp = arterial_input(args, t, img, concentration)
    model = DCE(t, cp, args.model, fit_delay=args.fit_delay, bounds=common.parse_pairs(args.bounds, "--bounds"))
    conc = concentration()
    maps = model.fit(conc, mask=mask, method=args.method, compute_se=args.se, progress=common.show_progress(args))
    maps.provenance.update({"input": args.input, "aif": args.aif, "hct": args.hct, "r1_per_s_per_mM": args.r1,
                            "fa_deg": args.fa, "tr_s": args.tr, "baseline_frames": args.baseline})
    if args.plot:
        # the map montage comes from write_results; the curves are written here
        _plot_curves(model, conc, maps, args.out_dir / f"{args.prefix}curves.png")
    sources = [args.dce] + [p for p in (args.time, args.mask, args.t1) if p is not None]
    written = common.write_results(maps, args, img, sources)
    aif_path = args.out_dir / f"{args.prefix}aif.csv"
    io.write_text(aif_path, "time_s,cp_mM\n" + "".join(f"{a:.6g},{b:.8g}\n" for a, b in zip(t, cp)))
    written.append(aif_path)
    if args.plot:
        written.append(args.out_dir / f"{args.prefix}curves.png")
    common.print_summary(maps, written, t0, args)
    return 0


def _plot_curves(model, conc, maps, path, n: int = 4):
    """Measured and fitted concentration of a few fitted voxels (quantiles of the first parameter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qmri import io

    path.parent.mkdir(parents=True, exist_ok=True)
    first = model.spec.names[0]
    vals = maps[first]
    ok = np.flatnonzero((maps.status.ravel() == 0) & np.isfinite(vals.ravel()))
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.0), squeeze=False)
    if ok.size:
        order = ok[np.argsort(vals.ravel()[ok])]
        picks = order[np.unique(np.linspace(0, order.size - 1, n).round().astype(int))]
        flat = conc.reshape(-1, conc.shape[-1])
        for ax, v in zip(axes[0], picks):
            params = {k: maps[k].ravel()[v] for k in model.spec.names}
            ax.plot(model.t, flat[v], ".", ms=3, label="data")
            ax.plot(model.t, model.concentration(params), "-", label="fit")
            idx = np.unravel_index(v, vals.shape)
            ax.set_title(f"voxel {tuple(int(i) for i in idx)}\n" + ", ".join(
                f"{k} {params[k]:.3g}" for k in model.spec.names), fontsize=8)
            ax.set_xlabel("time (s)")
            ax.set_ylabel("concentration (mM)")
        axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# phantom and demo
# ---------------------------------------------------------------------------------------------
def add_phantom_parser(sub):
    p = sub.add_parser("dce", help="DCE phantom: QIBA-like grid of Ktrans x ve patches (and vp), Parker AIF")
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--snr", type=float, default=20.0, help="baseline signal / sigma of the Rician noise (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--block", type=int, nargs=3, metavar=("X", "Y", "Z"), help="voxels per patch (default 5 5 1)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=run_phantom)


def write_dce_phantom(ph, out_dir, *, force: bool = False) -> list[Path]:
    """Save a DCE phantom: the signal series (``dce.nii.gz``), the concentration series
    (``dce_conc.nii.gz``), ``times.txt``, ``aif.csv`` (plasma), mask, labels and truth maps."""
    from qmri import io
    from qmri.phantoms import save_phantom

    out_dir = Path(out_dir)
    conc_path = out_dir / "dce_conc.nii.gz"
    if conc_path.exists() and not force:
        raise OutputExistsError(f"{conc_path} exists; use --force to overwrite")
    acq = dict(ph.acquisition)
    conc = acq.pop("concentration")
    ph.acquisition = acq
    t = np.asarray(acq["times"])
    extra = {"times.txt": "\n".join(f"{v:g}" for v in t) + "\n",
             "aif.csv": "time_s,cp_mM\n" + "".join(f"{a:g},{b:.8g}\n" for a, b in zip(t, acq["aif"]))}
    written = save_phantom(ph, out_dir, force=force, extra_files=extra)
    io.write_map(conc_path, conc, affine=ph.affine, intent="concentration (mM)")
    return written + [conc_path]


def run_phantom(args) -> int:
    from qmri.phantoms import dce_phantom

    ph = dce_phantom(snr=args.snr, seed=args.seed, block=args.block)
    a = ph.acquisition
    write_dce_phantom(ph, args.out_dir, force=args.force)
    print(f"DCE phantom {ph.data.shape} ({int(ph.mask.sum())} voxels, {len(ph.regions)} patches, SNR {args.snr:g}) "
          f"written to {args.out_dir}: dce.nii.gz (signal), dce_conc.nii.gz (mM), times.txt, aif.csv, mask.nii.gz, "
          f"truth_*.nii.gz\nfit it with: qmri dce {args.out_dir}/dce.nii.gz --time {args.out_dir}/times.txt "
          f"--model etm --aif {args.out_dir}/aif.csv --t10 {a['T10']:g} --fa {a['FA']:g} --tr {a['TR']:g} "
          f"--r1 {a['r1']:g} --baseline {a['n_baseline']} --mask {args.out_dir}/mask.nii.gz --out-dir OUT")
    return 0


def demo_part(out_dir: Path, args) -> str:
    """Fit the DCE phantom (concentration from the noisy signal) with Tofts and extended Tofts."""
    from qmri.models.dce import DCE
    from qmri.phantoms import dce_phantom, nrmse_bias
    from qmri.plot import montage

    ph = dce_phantom(snr=20.0, seed=0, block=(10, 10, 1))
    conc = ph.acquisition["concentration"]
    t = np.asarray(ph.acquisition["times"])
    cp = np.asarray(ph.acquisition["aif"])
    write_dce_phantom(ph, out_dir / "phantom", force=args.force)
    lines = [f"DCE phantom: {int(ph.mask.sum())} voxels, {len(ph.regions)} patches (Ktrans x ve x vp), "
             f"{t.size} frames every {t[1] - t[0]:g} s, Parker AIF, SNR 20 (Rician, on the signal)",
             f"{'model':<8s} {'voxels':>7s} {'vox/s':>9s} {'conv %':>7s}   " + "  ".join(
                 f"{'NRMSE ' + k:>13s} {'bias ' + k:>10s}" for k in ("Ktrans", "ve", "vp"))]
    for name, sel in (("tofts", ph.truth["vp"] == 0), ("etm", ph.mask)):
        model = DCE(t, cp, name)
        mask = ph.mask & sel
        maps, rate = common.timed_fit(model, conc, mask, "lsq")
        maps.save(out_dir / name, force=args.force)
        montage(maps, out_dir / name / "maps.png", names=PARAMS[name], title=f"DCE {name}")
        cells = []
        for k in ("Ktrans", "ve", "vp"):
            if k in maps.params:
                e, b = nrmse_bias(maps[k], ph.truth[k], mask)
                cells.append(f"{e:13.3f} {100 * b:9.1f}%")
            else:
                cells.append(f"{'-':>13s} {'-':>10s}")
        lines.append(f"{name:<8s} {int(mask.sum()):7d} {rate:9.0f} {100 * maps.converged_fraction:7.1f}   " + "  ".join(cells))
    lines.append("(vp NRMSE is relative to the mean true vp; vp = 0 in a third of the etm voxels)")
    return "\n".join(lines)

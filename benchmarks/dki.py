"""DKI speed and accuracy: qmri vs dipy (and MRtrix3's dwi2tensor when installed), one run.

Phantom: ``qmri.models.diffusion.dki.phantom.dki_phantom`` with 32×32×16-voxel blocks (7 tissues, 114,688 voxels),
3 b=0 + 30 directions at b=1000 and at b=2000 s/mm², Rician noise at SNR 30.

Rows
----
* qmri ``wls``, ``ols``, ``cwls``, ``lsq``: whole phantom, all scalar maps included, warm (Numba
  compiled beforehand), voxels per second over the ``Model.fit`` call.
* dipy ``DiffusionKurtosisModel`` WLS and OLS on a random subset (fit + md/fa/mk/ak/rk/mkt), and
  CWLS on a smaller subset with b in ms/µm² (with b in s/mm² dipy's CWLS silently returns the
  unconstrained solution; needs cvxpy, skipped with a note when absent).
* MRtrix3 ``dwi2tensor -dkt`` (whole command, NIfTI in and out, no scalar maps: MRtrix 3.0 has no
  kurtosis metrics, so MK/MKT are computed from its tensors with qmri's formulas): the default
  (WLS with empirical weights + 2 IWLS iterations) and ``-ols -iter 1`` (OLS start, one
  reweighting). Skipped with a note when ``dwi2tensor`` is not on the PATH.

* Whole commands (``--whole``, the default): ``qmri dki --method wls`` (every map: S0, MD, AD, RD,
  FA, MK, AK, RK, MKT, KFA, rmse, r2, status, n_iter, written as .nii.gz with sidecars) against
  MRtrix3 ``dwi2tensor -dkt -iter 0`` (tensors only) on the same .nii.gz series of 100,000 and
  400,000 voxels (3 b=0 + 32 directions at b=1000 and 2000, SNR 20), best of ``--repeat`` warm
  runs, with each command's peak memory. Users time the command: these are the figures to compare.

Accuracy: median and 95th-percentile |MK − MK_true| and |MKT − MKT_true| over the voxels each row
fitted, and the percentage of voxels with a negative apparent kurtosis along 100 directions
(over the voxels of dipy's WLS subset; dipy's CWLS row over its own smaller subset).

qmri and MRtrix timings are the best of ``--repeat`` runs (the machine may be shared); dipy's
are single runs of the slower, longer fits.

Usage: ``python benchmarks/dki.py [--threads N] [--dipy-voxels 10000] [--cwls-voxels 300] [--out FILE.md]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MR_D = [0, 3, 1, 4, 5, 2]  # MRtrix D11,D22,D33,D12,D13,D23 -> dipy/qmri xx,xy,yy,xz,yz,zz
MR_W = [0, 1, 2, 3, 4, 5, 7, 6, 8, 9, 10, 11, 12, 13, 14]  # MRtrix W order -> dipy order


def _acc(mk, mkt, t_mk, t_mkt):
    e1 = np.abs(mk - t_mk)
    e2 = np.abs(mkt - t_mkt)
    ok = np.isfinite(e1) & np.isfinite(e2)
    return np.median(e1[ok]), np.percentile(e1[ok], 95), np.median(e2[ok]), np.percentile(e2[ok], 95)


def _neg(beta, dirs):
    from qmri.models.diffusion.dki import apparent_kurtosis

    k = apparent_kurtosis(beta, dirs)
    return 100.0 * np.mean(np.nanmin(k, axis=1) < 0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--dipy-voxels", type=int, default=10000)
    ap.add_argument("--cwls-voxels", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3, help="best of N timings for qmri and MRtrix (default 3)")
    ap.add_argument("--out", type=Path, help="also write the table here (e.g. benchmarks/results/dki.md)")
    ap.add_argument("--whole", type=int, nargs="*", default=[100_000, 400_000], metavar="VOXELS",
                    help="series sizes for the whole-command rows (default 100000 400000; none to skip)")
    ap.add_argument("--work", type=Path, help="folder for the whole-command series (default: a temporary one)")
    args = ap.parse_args(argv)
    whole = whole_commands(args) if args.whole else ""
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    from qmri.models.diffusion.dki import DKI, hemisphere, tensor_maps
    from qmri.models.diffusion.dki.phantom import dki_phantom
    from qmri.simulate import bvec_text

    ph = dki_phantom(snr=30.0, seed=0, block=(32, 32, 16))
    bvals = np.asarray(ph.acquisition["bvals"])
    bvecs = np.asarray(ph.acquisition["bvecs"])
    Y = ph.data[ph.mask]
    n = Y.shape[0]
    t_mk, t_mkt = ph.truth["MK"][ph.mask], ph.truth["MKT"][ph.mask]
    dirs = hemisphere(100) @ np.linalg.qr(np.random.default_rng(9).normal(size=(3, 3)))[0].T
    rng = np.random.default_rng(0)
    sub = rng.choice(n, size=min(args.dipy_voxels, n), replace=False)  # dipy's voxels
    rows = []
    model = DKI(bvals, bvecs)
    for method in ("wls", "ols", "cwls", "lsq"):
        model.fit(Y[:64], method=method)  # compile
        dt = np.inf
        for _ in range(args.repeat):
            t = time.perf_counter()
            maps = model.fit(Y, method=method)
            dt = min(dt, time.perf_counter() - t)
        beta = model.coefficients(Y[sub], method)[0]
        rows.append((f"qmri {method}", n, n / dt, *_acc(maps["MK"], maps["MKT"], t_mk, t_mkt),
                     _neg(beta, dirs), "all maps"))
        print(rows[-1], flush=True)

    # dipy ------------------------------------------------------------------------------------
    from dipy.core.gradients import gradient_table
    import dipy.reconst.dki as ddki

    gtab = gradient_table(bvals, bvecs=bvecs)
    for fm in ("WLS", "OLS"):
        t = time.perf_counter()
        fit = ddki.DiffusionKurtosisModel(gtab, fit_method=fm).fit(Y[sub])
        mk = fit.mk(min_kurtosis=-3 / 7, max_kurtosis=10)
        _ = fit.md, fit.fa, fit.ad, fit.rd, fit.ak(), fit.rk()
        mkt = fit.mkt(min_kurtosis=-3 / 7, max_kurtosis=10)
        dt = time.perf_counter() - t
        lt = fit.lower_triangular()
        md = fit.md * 1e3
        beta = np.c_[lt * 1e3, fit.kt * (md * md)[:, None], np.zeros(len(sub))]
        rows.append((f"dipy {fm}", len(sub), len(sub) / dt, *_acc(mk, mkt, t_mk[sub], t_mkt[sub]),
                     _neg(beta, dirs), "fit + MD/FA/AD/RD/MK/AK/RK/MKT"))
        print(rows[-1], flush=True)
    try:
        import cvxpy  # noqa: F401

        csub = sub[: args.cwls_voxels]
        gtab_ms = gradient_table(bvals / 1000.0, bvecs=bvecs, b0_threshold=0.05)
        t = time.perf_counter()
        fit = ddki.DiffusionKurtosisModel(gtab_ms, fit_method="CWLS").fit(Y[csub])
        mk = fit.mk(min_kurtosis=-3 / 7, max_kurtosis=10)
        mkt = fit.mkt(min_kurtosis=-3 / 7, max_kurtosis=10)
        dt = time.perf_counter() - t
        lt = fit.lower_triangular()
        md = fit.md
        beta = np.c_[lt, fit.kt * (md * md)[:, None], np.zeros(len(csub))]
        rows.append(("dipy CWLS (b in ms/um2)", len(csub), len(csub) / dt,
                     *_acc(mk, mkt, t_mk[csub], t_mkt[csub]), _neg(beta, dirs), "fit + MK/MKT; cvxpy Clarabel"))
        print(rows[-1], flush=True)
        t = time.perf_counter()
        maps = model.fit(Y[csub], method="cwls")
        dt = time.perf_counter() - t
        rows.append(("qmri cwls on dipy CWLS's voxels", len(csub), len(csub) / dt,
                     *_acc(maps["MK"], maps["MKT"], t_mk[csub], t_mkt[csub]),
                     _neg(model.coefficients(Y[csub], "cwls")[0], dirs), "same voxels as the row above"))
        print(rows[-1], flush=True)
    except ImportError:
        rows.append(("dipy CWLS", 0, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, "skipped: cvxpy not installed"))

    # MRtrix3 ---------------------------------------------------------------------------------
    if shutil.which("dwi2tensor"):
        import nibabel as nib

        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            nib.save(nib.Nifti1Image(ph.data.astype(np.float32), np.eye(4)), tmp / "dwi.nii")
            nib.save(nib.Nifti1Image(ph.mask.astype(np.uint8), np.eye(4)), tmp / "mask.nii")
            (tmp / "dwi.bval").write_text(" ".join(f"{b:g}" for b in bvals) + "\n")
            (tmp / "dwi.bvec").write_text(bvec_text(bvecs))
            for label, extra in (("MRtrix dwi2tensor -dkt (default: WLS + 2 IWLS)", []),
                                 ("MRtrix dwi2tensor -dkt -ols -iter 1", ["-ols", "-iter", "1"])):
                cmd = ["dwi2tensor", str(tmp / "dwi.nii"), str(tmp / "dt.nii"), "-dkt", str(tmp / "dkt.nii"),
                       "-fslgrad", str(tmp / "dwi.bvec"), str(tmp / "dwi.bval"), "-mask", str(tmp / "mask.nii"),
                       "-nthreads", str(args.threads), "-force", "-quiet"] + extra
                subprocess.run(cmd, check=True)  # warm the file cache
                dt = np.inf
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    subprocess.run(cmd, check=True)
                    dt = min(dt, time.perf_counter() - t)
                D = nib.load(tmp / "dt.nii").get_fdata()[ph.mask][:, MR_D]
                W = nib.load(tmp / "dkt.nii").get_fdata()[ph.mask][:, MR_W]
                md = (D[:, 0] + D[:, 2] + D[:, 5]) / 3.0 * 1e3
                beta = np.c_[D * 1e3, W * (md * md)[:, None], np.zeros(n)]
                m = tensor_maps(beta)
                rows.append((label, n, n / dt, *_acc(m["MK"], m["MKT"], t_mk, t_mkt), _neg(beta[sub], dirs),
                             "whole command, tensors only"))
                print(rows[-1], flush=True)
    else:
        rows.append(("MRtrix dwi2tensor", 0, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan,
                     "skipped: dwi2tensor not on PATH (Debian package mrtrix3)"))

    ref = {r[0]: r[2] for r in rows}
    d_wls = ref.get("dipy WLS", np.nan)
    d_cwls = ref.get("dipy CWLS (b in ms/um2)", np.nan)
    lines = [f"DKI benchmark: {n} voxels, 3 b0 + 30 dirs x b=1000, 2000 s/mm2, SNR 30; {args.threads} threads; "
             f"{sys.platform}, numpy {np.__version__}",
             "",
             "| method | voxels | voxels/s | vs dipy WLS | median abs dMK | p95 abs dMK | median abs dMKT | p95 abs dMKT "
             "| % voxels K(n)<0 | timed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, nv, rate, a, b, c, d, neg, note in rows:
        ratio = rate / d_wls if np.isfinite(rate) else np.nan
        lines.append(f"| {name} | {nv} | {rate:,.0f} | {ratio:.1f}x | {a:.3f} | {b:.3f} | {c:.3f} | {d:.3f} | "
                     f"{neg:.2f} | {note} |")
    if np.isfinite(d_cwls):
        lines.append("")
        lines.append(f"qmri cwls vs dipy CWLS: {ref['qmri cwls'] / d_cwls:.0f}x")
    text = "\n".join(lines) + ("\n\n" + whole if whole else "")
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def whole_commands(args) -> str:
    """Whole-command rows: qmri dki --method wls (all maps) vs MRtrix dwi2tensor -dkt -iter 0."""
    from commands import best_of, qmri_script

    from qmri.models.diffusion.dki.phantom import dki_phantom, dki_protocol
    from qmri.simulate import save_phantom

    lines = ["Whole commands (start-up, reading .nii.gz, fit, maps, writing), best of "
             f"{args.repeat} warm runs, {args.threads} threads:", "",
             "| command | voxels | seconds | voxels/s | peak RSS (MB) | qmri / MRtrix time |", "|---|---:|---:|---:|---:|---:|"]
    bvals, bvecs = dki_protocol(3, (1000.0, 2000.0), 32)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for n in args.whole:
            side = max(1, int(round((n / 7 / 8) ** 0.5)))
            d = work / f"dki_{n}"
            if not (d / "dki.nii.gz").exists():
                ph = dki_phantom(snr=20.0, seed=0, block=(side, side, 8), bvals=bvals, bvecs=bvecs)
                ph.data = ph.data.astype(np.float32)
                save_phantom(ph, d, force=True)
            import nibabel as nib

            nvox = int(np.count_nonzero(nib.load(d / "mask.nii.gz").get_fdata()))
            inputs = [d / "dki.nii.gz"]
            q = [qmri_script(), "dki", *inputs, "--bval", d / "dki.bval", "--bvec", d / "dki.bvec", "--mask",
                 d / "mask.nii.gz", "--method", "wls", "--out-dir", d / "qmri", "--force", "--quiet", "--threads",
                 str(args.threads)]
            tq, rq = best_of(q, args.repeat)
            tm = rm = np.nan
            if shutil.which("dwi2tensor"):
                m = ["dwi2tensor", *inputs, d / "dt.nii.gz", "-dkt", d / "dkt.nii.gz", "-iter", "0", "-fslgrad",
                     d / "dki.bvec", d / "dki.bval", "-mask", d / "mask.nii.gz", "-nthreads", str(args.threads),
                     "-force", "-quiet"]
                tm, rm = best_of(m, args.repeat)
            lines.append(f"| qmri dki --method wls (all maps) | {nvox} | {tq:.2f} | {nvox / tq:,.0f} | {rq:.0f} | "
                         f"{tq / tm:.2f} |")
            lines.append(f"| MRtrix dwi2tensor -dkt -iter 0 (tensors only) | {nvox} | {tm:.2f} | {nvox / tm:,.0f} | "
                         f"{rm:.0f} | |" if np.isfinite(tm) else f"| MRtrix dwi2tensor | {nvox} | skipped: not on PATH | | | |")
            print("\n".join(lines[-2:]), flush=True)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()

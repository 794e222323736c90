"""Pieces every fitting command shares: output options, overwrite check, progress, summary."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from qmri.errors import OutputExistsError, QMRIInputError


def add_output_arguments(p):
    """``--out-dir``, ``--prefix``, ``--force``, ``--plot``, ``--quiet``."""
    g = p.add_argument_group("output")
    g.add_argument("--out-dir", required=True, type=Path, help="folder for the maps (created if needed)")
    g.add_argument("--prefix", default="", help="prepended to every output file name")
    g.add_argument("--force", action="store_true", help="overwrite existing outputs")
    g.add_argument("--plot", action="store_true", help="also write a PNG montage of the maps")
    g.add_argument("--quiet", action="store_true", help="no progress bar and no summary")


def add_phantom_arguments(p):
    """``--out-dir``, ``--snr``, ``--seed``, ``--block``, ``--force`` of every ``qmri phantom`` command."""
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--snr", type=float, default=30.0, help="S0 / sigma of the Rician noise (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--block", type=int, nargs=3, metavar=("X", "Y", "Z"), help="voxels per region (default 8 8 2)")
    p.add_argument("--force", action="store_true")


def show_progress(args) -> bool:
    """A progress bar only on a terminal and without ``--quiet``."""
    return not args.quiet and sys.stderr.isatty()


def planned_outputs(names, args) -> list[Path]:
    """Every file a fit writes for map labels ``names`` (NIfTI + sidecar, and the PNG with --plot)."""
    out = []
    for n in names:
        out += [args.out_dir / f"{args.prefix}{n}.nii.gz", args.out_dir / f"{args.prefix}{n}.json"]
    if args.plot:
        out.append(args.out_dir / f"{args.prefix}maps.png")
    return out


def refuse_overwrite(paths, force: bool):
    """Raise before any work if an output exists and ``--force`` was not given."""
    if force:
        return
    existing = [p for p in paths if Path(p).exists()]
    if existing:
        raise OutputExistsError(f"{existing[0]} exists ({len(existing)} output file(s) in all); use --force to overwrite")


def load_series(args):
    """The 4-D series ``args.dwi``, its b-values ``args.bval`` (one per volume) and the optional
    mask ``args.mask``; raises QMRIInputError naming the file on any mismatch."""
    from qmri import io

    img = io.load_nifti(args.dwi, ndim=4, what="DWI series")
    bvals = io.read_bvals(args.bval)
    if bvals.size != img.shape[3]:
        raise QMRIInputError(f"{args.bval}: {bvals.size} b-values but {args.dwi} has {img.shape[3]} volumes")
    mask = io.load_mask(args.mask, img, reference_path=args.dwi) if args.mask else None
    return img, bvals, mask


def parse_pairs(text: str | None, what: str) -> dict:
    """``"f=0:1,D=0:0.005"`` → ``{"f": (0, 1), "D": (0, 0.005)}``; ``"f=0.1"`` → ``{"f": 0.1}``."""
    out = {}
    if not text:
        return out
    for item in text.split(","):
        if "=" not in item:
            raise QMRIInputError(f"{what}: expected NAME=VALUE items separated by commas, got {item!r}")
        name, value = item.split("=", 1)
        try:
            nums = [float(v) for v in value.split(":")]
        except ValueError:
            raise QMRIInputError(f"{what}: {value!r} is not a number") from None
        out[name.strip()] = tuple(nums) if len(nums) > 1 else nums[0]
    return out


def write_results(maps, args, ref_img, sources) -> list[Path]:
    """Save maps (and the PNG with ``--plot``) and print the summary unless ``--quiet``."""
    written = maps.save(args.out_dir, affine=ref_img.affine if ref_img is not None else None,
                        header=ref_img.header if ref_img is not None else None,
                        prefix=args.prefix, force=args.force, sources=[str(s) for s in sources])
    if args.plot:
        from qmri.plot import montage

        png = args.out_dir / f"{args.prefix}maps.png"
        montage(maps, png)
        written.append(png)
    return written


def print_summary(maps, written, t_start: float, args):
    """Print the maps' summary and the number of files written, unless ``--quiet``."""
    if args.quiet:
        return
    print(maps.summary())
    print(f"wrote {len(written)} files to {args.out_dir}  (total {time.perf_counter() - t_start:.2f} s)")


def timed_fit(model, data, mask, method=None):
    """Fit once on a corner of ``data`` (Numba compilation / cache load), then time the real fit.

    Returns ``(maps, voxels_per_second)`` for the voxels inside ``mask``.
    """
    model.fit(data[:2, :2, :1], method=method)
    t = time.perf_counter()
    maps = model.fit(data, mask=mask, method=method)
    return maps, int(mask.sum()) / (time.perf_counter() - t)

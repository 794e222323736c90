"""Property-based fuzzing of every command (hypothesis).

Each test draws the files a command reads (images with wrong dimensions, truncated bytes, lying
headers, NaN/inf or zero voxels, no voxels; gradient tables with wrong counts, text garbage or
negative b; frame-time and AIF files; JSON sidecars of wrong types or deep nesting; habitat models,
weights files, cohort configurations) and its option values (bounds, numbers at and beyond their
limits, text garbage), runs the command in this process and asserts:

* the exit code is 0 or 2 (``qmri validate`` may also exit 1: a failed reference case);
* no traceback: no exception escapes ``main`` and "Traceback" is not on standard error;
* on exit 2, the folder holds exactly what it held before (nothing half-written, nothing left).

The examples are derandomised (the same on every run). Each property runs twice: a short run in the
default test selection and a longer one marked ``slow`` (run in CI).
"""

from __future__ import annotations

import contextlib
import gzip
import io as _io
import json
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qmri.cli.main import main

#: Examples per property in the default run and in the slow (CI) run.
FAST_EXAMPLES = 25
SLOW_EXAMPLES = 200

B = [0.0, 10.0, 50.0, 100.0, 400.0, 800.0]
FA = [2.0, 5.0, 10.0, 15.0]
TR = 0.005
FRAMES = 16
FRAME_S = 4.0


# ---------------------------------------------------------------------------------------------
# Running a case
# ---------------------------------------------------------------------------------------------
@dataclass
class Case:
    """A command line (paths relative to the case's folder) and the files it reads."""

    argv: list
    files: dict = field(default_factory=dict)  # relative name -> bytes (a name ending in / is a folder)

    def __repr__(self):
        shown = {k: (v[:60] + b"..." if len(v) > 60 else v) for k, v in self.files.items()}
        return f"Case(argv={self.argv!r}, files={shown!r})"


def _tree(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) + ("/" if p.is_dir() else "") for p in folder.rglob("*"))


def check(case: Case) -> None:
    """Run ``case`` in a fresh folder and assert the three properties."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, content in case.files.items():
            path = tmp / name
            if name.endswith("/"):
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        before = _tree(tmp)
        err, out = _io.StringIO(), _io.StringIO()
        with contextlib.chdir(tmp), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main([str(a) for a in case.argv])
            except SystemExit as exc:  # argparse's errors
                code = exc.code
        stderr = err.getvalue()
        allowed = (0, 1, 2) if case.argv[0] == "validate" else (0, 2)
        assert code in allowed, f"exit {code}\n{stderr}"
        assert "Traceback" not in stderr, stderr
        if code == 2:
            assert stderr.strip(), "exit 2 without a message"
            assert _tree(tmp) == before, f"exit 2 left files: {sorted(set(_tree(tmp)) - set(before))}\n{stderr}"


def fuzz(strategy):
    """Two tests of the property ``check`` over ``strategy``: a short one and a longer ``slow`` one."""
    common = dict(deadline=None, derandomize=True, database=None, print_blob=False,
                  suppress_health_check=list(HealthCheck))

    def short(case):
        check(case)

    def long(case):
        check(case)

    return (settings(max_examples=FAST_EXAMPLES, **common)(given(strategy)(short)),
            pytest.mark.slow(settings(max_examples=SLOW_EXAMPLES, **common)(given(strategy)(long))))


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def _nifti_bytes(data, *, affine=None, slope=None, dims=None, datatype=None, gz=True) -> bytes:
    img = nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine)
    raw = bytearray(img.to_bytes())
    if dims is not None:  # a header that lies about the shape (the data stay)
        struct.pack_into("<8h", raw, 40, len(dims), *dims, *[1] * (7 - len(dims)))
    if slope is not None:
        struct.pack_into("<2f", raw, 112, *slope)
    if datatype is not None:
        struct.pack_into("<h", raw, 70, datatype)
    return gzip.compress(bytes(raw), compresslevel=1) if gz else bytes(raw)


IMAGE_FAULTS = ["ok"] * 6 + ["nan", "inf", "zero", "negative", "scale", "int16", "slope", "truncated", "lying",
                             "huge", "no voxels", "ndim", "shape", "affine", "garbage", "empty", "header only",
                             "datatype", "volumes"]


@st.composite
def image(draw, data, *, faults=IMAGE_FAULTS):
    """NIfTI bytes of ``data`` (an array), perhaps damaged in one of ``faults``' ways."""
    gz = draw(st.booleans())
    fault = draw(st.sampled_from(faults))
    a = np.array(data, dtype=np.float32)
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    kw = {}
    if fault == "nan":
        a.ravel()[rng.integers(0, a.size, 1 + a.size // 3)] = np.nan
    elif fault == "inf":
        a.ravel()[rng.integers(0, a.size, 1 + a.size // 3)] = draw(st.sampled_from([np.inf, -np.inf]))
    elif fault == "zero":
        a[:] = 0
    elif fault == "negative":
        a = -a
    elif fault == "scale":
        a = (a.astype(np.float64) * 10.0 ** draw(st.sampled_from([-300, -35, -6, 6, 35, 300])))
    elif fault == "int16":
        a = np.clip(np.round(a), -32768, 32767).astype(np.int16)
    elif fault == "slope":
        a = np.clip(np.round(a), -32768, 32767).astype(np.int16)
        kw["slope"] = draw(st.sampled_from([(np.nan, 0.0), (np.inf, 0.0), (0.0, 0.0), (1e38, 0.0), (-1.0, 0.0),
                                            (1.0, np.nan), (3e38, 3e38)]))
    elif fault in ("lying", "huge", "no voxels"):
        dims = list(a.shape)
        axis = draw(st.integers(0, len(dims) - 1))
        dims[axis] = {"lying": draw(st.integers(1, 40)), "huge": 32767, "no voxels": 0}[fault]
        if fault == "huge":
            dims = [32767] * len(dims)
        kw["dims"] = dims
    elif fault == "ndim":
        a = a[..., 0] if a.ndim == 4 else a[..., None, None]
    elif fault == "shape":
        a = a[:-1] if a.shape[0] > 1 else np.concatenate([a, a])
    elif fault == "affine":
        kw["affine"] = np.diag([2.0, 2.0, 2.0, 1.0])
    elif fault == "volumes" and a.ndim == 4:
        a = a[..., :-1] if a.shape[3] > 1 else np.concatenate([a, a], axis=3)
    elif fault == "datatype":
        kw["datatype"] = draw(st.sampled_from([0, 1, 128, 1536, 2048, 32767]))
    if fault == "garbage":
        raw = bytes(draw(st.binary(min_size=1, max_size=400)))
        return gzip.compress(raw) if gz and draw(st.booleans()) else raw
    if fault == "empty":
        return b""
    raw = _nifti_bytes(a, gz=False, **kw)
    if fault == "truncated":
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif fault == "header only":
        raw = raw[:348]
    return gzip.compress(raw, compresslevel=1) if gz else raw


def ext_of(content: bytes) -> str:
    return ".nii.gz" if content[:2] == b"\x1f\x8b" else ".nii"


NUMBER_TEXT = st.sampled_from(["0", "-1", "1", "2", "0.5", "nan", "inf", "-inf", "1e400", "1e-320", "abc", "",
                               "3,4", "1e9", "100000", "-0", " 7 ", "0x10", "1_000"])


@st.composite
def numbers_file(draw, values, *, minimum=None):
    """Text of numbers (``values`` or damaged: other count, garbage, NaN, negative, binary)."""
    v = [float(x) for x in values]
    fault = draw(st.sampled_from(["ok"] * 4 + ["fewer", "more", "garbage", "nan", "negative", "huge", "empty",
                                               "binary", "commas", "column", "scaled", "unordered"]))
    if fault == "fewer":
        v = v[:-1]
    elif fault == "more":
        v = v + [v[-1]]
    elif fault == "nan":
        v[draw(st.integers(0, len(v) - 1))] = float("nan")
    elif fault == "negative":
        v[draw(st.integers(0, len(v) - 1))] = -abs(v[-1]) - 1
    elif fault == "huge":
        v = [x * 1e6 for x in v]
    elif fault == "scaled":
        v = [x / 1000 for x in v]
    elif fault == "unordered":
        v = v[::-1]
    if fault == "garbage":
        return draw(st.text(max_size=40)).encode("utf-8", "replace")
    if fault == "binary":
        return draw(st.binary(min_size=1, max_size=40))
    if fault == "empty":
        return b""
    sep = {"commas": ",", "column": "\n"}.get(fault, " ")
    return (sep.join(f"{x:g}" for x in v) + "\n").encode()


@st.composite
def bvec_file(draw, n):
    rng = np.random.default_rng(draw(st.integers(0, 1000)))
    v = rng.normal(size=(3, n))
    v /= np.linalg.norm(v, axis=0)
    v[:, 0] = 0
    fault = draw(st.sampled_from(["ok"] * 3 + ["fewer", "two rows", "zeros", "nan", "garbage", "big"]))
    if fault == "fewer":
        v = v[:, :-1]
    elif fault == "two rows":
        v = v[:2]
    elif fault == "zeros":
        v[:] = 0
    elif fault == "nan":
        v[0, -1] = np.nan
    elif fault == "big":
        v *= 1000
    if fault == "garbage":
        return draw(st.text(max_size=40)).encode("utf-8", "replace")
    return ("\n".join(" ".join(f"{x:g}" for x in row) for row in v) + "\n").encode()


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=True)
                           | st.text(max_size=5), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)


@st.composite
def sidecar(draw, good: dict):
    """JSON bytes: ``good``, or it with a key of another type, deeply nested, not an object, not JSON."""
    fault = draw(st.sampled_from(["ok", "ok", "wrong type", "nested", "deep", "list", "invalid", "binary"]))
    d = dict(good)
    if fault == "wrong type" and d:
        d[draw(st.sampled_from(sorted(d)))] = draw(JSON_VALUES)
    elif fault == "nested":
        d["Extra"] = draw(JSON_VALUES)
    if fault == "deep":
        n = draw(st.sampled_from([70, 5000, 100_000]))
        return ('{"x": ' + "[" * n + "]" * n + "}").encode()
    if fault == "list":
        return json.dumps(list(d.values())).encode()
    if fault == "invalid":
        return json.dumps(d).encode()[:-1]
    if fault == "binary":
        return b"\xff\xfe" + json.dumps(d).encode()
    return json.dumps(d).encode()


def optional(strategy):
    return st.one_of(st.none(), strategy)


def flag(argv: list, name: str, value) -> None:
    if value is not None:
        argv += [name, value]


# ---------------------------------------------------------------------------------------------
# Data of each kind
# ---------------------------------------------------------------------------------------------
@st.composite
def seed(draw):
    return np.random.default_rng(draw(st.integers(0, 2 ** 16)))


@st.composite
def dwi_data(draw):
    rng = draw(seed())
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    b = np.array(B)
    s0 = rng.uniform(500, 1500, shape)[..., None]
    return s0 * (0.9 * np.exp(-b * 1e-3) + 0.1 * np.exp(-b * 2e-2)) * rng.uniform(0.95, 1.05, shape + (b.size,))


def _bounds_text(names):
    number = st.sampled_from(["0", "1", "-1", "0.001", "1e400", "nan", "inf", "abc", "", "5e-3"])
    pair = st.builds(lambda lo, hi: f"{lo}:{hi}", number, number) | number
    one = st.builds(lambda n, p: f"{n}={p}", st.sampled_from(list(names) + ["X", ""]), pair)
    return st.lists(one, min_size=1, max_size=3).map(",".join) | st.text(max_size=12)


MASK_FAULTS = ["ok"] * 4 + ["nan", "zero", "truncated", "lying", "huge", "no voxels", "ndim", "shape", "affine",
                            "garbage", "empty", "header only", "datatype"]


@st.composite
def mask_for(draw, shape, name="mask"):
    rng = draw(seed())
    m = (rng.random(shape) < 0.8).astype(np.float32)
    m.ravel()[0] = 1
    content = draw(image(m, faults=MASK_FAULTS))
    return f"{name}{ext_of(content)}", content


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
DIFFUSION_PARAMS = {"ivim": ("S0", "f", "D", "Dstar"), "adc": ("S0", "ADC"), "stretched": ("S0", "DDC", "alpha"),
                    "dki": ("S0", "D", "K"), "ivimk": ("S0", "f", "D", "Dstar", "K")}
DIFFUSION_METHODS = {"ivim": ["lsq", "segmented"], "adc": ["wls", "lsq"], "stretched": ["lsq"],
                     "dki": ["wls", "ols", "lsq"], "ivimk": ["lsq", "segmented"]}


@st.composite
def diffusion_case(draw, command):
    data = draw(dwi_data())
    series = draw(image(data))
    name = f"dwi{ext_of(series)}"
    files = {name: series, "dwi.bval": draw(numbers_file(B))}
    argv = [command, name, "--out-dir", "out"]
    if draw(st.booleans()):
        files["g.bval"] = files.pop("dwi.bval")
        argv += ["--bval", "g.bval"]
    if command == "dki":
        files["dwi.bvec"] = draw(bvec_file(len(B)))
        argv += ["--trace"] if draw(st.booleans()) else []
    if draw(st.booleans()):
        mname, mask = draw(mask_for(data.shape[:3]))
        files[mname] = mask
        argv += ["--mask", mname]
    if draw(st.booleans()):
        files["dwi.json"] = draw(sidecar({"MagneticFieldStrength": 3, "EchoTime": 0.08}))
    flag(argv, "--method", draw(optional(st.sampled_from(DIFFUSION_METHODS[command] + ["dnn", "abc", ""]))))
    if "dnn" in argv:
        argv += ["--weights", draw(st.sampled_from(["builtin", "w.pt", "missing.pt"]))]
        if "w.pt" in argv:
            files["w.pt"] = draw(st.binary(max_size=200))
    flag(argv, "--bmin", draw(optional(NUMBER_TEXT)))
    flag(argv, "--bmax", draw(optional(NUMBER_TEXT)))
    flag(argv, "--bounds", draw(optional(_bounds_text(DIFFUSION_PARAMS[command]))))
    if command == "ivim":
        flag(argv, "--threshold", draw(optional(NUMBER_TEXT)))
    argv += draw(st.sampled_from([[], ["--se"], ["--bids"], ["--quiet"], ["--prefix", "p_"], ["--force"]]))
    return Case(argv, files)


@st.composite
def t1_case(draw):
    from qmri.models import VFA

    rng = draw(seed())
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 2)), 1)
    data = VFA(FA, TR).signal(dict(M0=rng.uniform(500, 2000, shape), T1=rng.uniform(0.3, 3.0, shape)))
    series = draw(image(data))
    name = f"vfa{ext_of(series)}"
    files = {name: series}
    argv = ["t1", name, "--out-dir", "out"]
    if draw(st.booleans()):
        files["vfa.json"] = draw(sidecar({"FlipAngle": FA, "RepetitionTimeExcitation": TR}))
    if "vfa.json" not in files or draw(st.booleans()):
        fa = draw(numbers_file(FA)).decode("utf-8", "replace").strip().replace(" ", ",")
        argv += ["--fa", fa or "x", "--tr", draw(st.sampled_from([str(TR), "0", "-1", "nan", "abc", "1e400"]))]
    if draw(st.booleans()):
        b1 = draw(image(np.full(shape, draw(st.sampled_from([1.0, 0.9, 95.0, 0.0, -1.0])), np.float32),
                        faults=MASK_FAULTS))
        files[f"b1{ext_of(b1)}"] = b1
        argv += ["--b1", f"b1{ext_of(b1)}"]
    if draw(st.booleans()):
        mname, mask = draw(mask_for(shape))
        files[mname] = mask
        argv += ["--mask", mname]
    flag(argv, "--method", draw(optional(st.sampled_from(["linear", "nonlinear", "lsq", "x"]))))
    flag(argv, "--bounds", draw(optional(_bounds_text(("M0", "T1")))))
    return Case(argv, files)


def _parker(t):
    from qmri.models.dce.aif import parker

    return parker(np.asarray(t, dtype=np.float64))


@st.composite
def dce_case(draw):
    from qmri.models.dce import DCE

    rng = draw(seed())
    t = np.arange(FRAMES) * FRAME_S
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), 1)
    n = int(np.prod(shape))
    conc = DCE(t, _parker(t), "tofts").concentration({"Ktrans": rng.uniform(0.05, 0.5, n),
                                                        "ve": rng.uniform(0.1, 0.5, n)}).reshape(shape + (FRAMES,))
    series = draw(image(conc))
    name = f"dce{ext_of(series)}"
    files = {name: series}
    argv = ["dce", name, "--out-dir", "out", "--input", draw(st.sampled_from(["concentration"] * 3 + ["signal"]))]
    timing = draw(st.sampled_from(["time", "tr-frame", "sidecar", "none"]))
    if timing == "time":
        files["t.txt"] = draw(numbers_file(t))
        argv += ["--time", "t.txt"]
    elif timing == "tr-frame":
        argv += ["--tr-frame", draw(st.sampled_from([str(FRAME_S), "0", "-2", "nan", "abc", "1e400"]))]
    elif timing == "sidecar":
        files["dce.json"] = draw(sidecar({"RepetitionTime": FRAME_S, "FlipAngle": 15, "RepetitionTimeExcitation": TR}))
    aif = draw(st.sampled_from(["parker", "georgiou", "file", "roi", "nonsense"]))
    if aif == "file":
        curve = _parker(t)
        text = "\n".join(f"{a:g},{c:g}" for a, c in zip(t, curve))
        fault = draw(st.sampled_from(["ok", "ok", "one column", "garbage", "nan", "header", "empty", "zero",
                                      "unordered", "late", "binary"]))
        if fault == "one column":
            text = "\n".join(f"{c:g}" for c in curve)
        elif fault == "garbage":
            text = draw(st.text(max_size=50))
        elif fault == "nan":
            text = text.replace(f"{curve[5]:g}", "nan", 1)
        elif fault == "header":
            text = "time,conc\n" + text
        elif fault == "empty":
            text = ""
        elif fault == "zero":
            text = "\n".join(f"{a:g},0" for a in t)
        elif fault == "unordered":
            text = "\n".join(reversed(text.splitlines()))
        elif fault == "late":
            text = "\n".join(f"{a + 1000:g},{c:g}" for a, c in zip(t, curve))
        files["aif.csv"] = b"\xff\x00" if fault == "binary" else text.encode("utf-8", "replace")
        argv += ["--aif", "aif.csv"]
    elif aif == "roi":
        mname, mask = draw(mask_for(shape, "artery"))
        files[mname] = mask
        argv += ["--aif", f"roi:{mname}"]
    else:
        argv += ["--aif", aif]
    if "signal" in argv:
        flag(argv, "--t10", draw(optional(NUMBER_TEXT)))
        flag(argv, "--fa", draw(optional(NUMBER_TEXT)))
        flag(argv, "--tr", draw(optional(NUMBER_TEXT)))
    flag(argv, "--hct", draw(optional(NUMBER_TEXT)))
    flag(argv, "--baseline", draw(optional(NUMBER_TEXT)))
    flag(argv, "--model", draw(optional(st.sampled_from(["tofts", "etm", "patlak"]))))
    flag(argv, "--method", draw(optional(st.sampled_from(["lsq", "linear", "x"]))))
    flag(argv, "--bounds", draw(optional(_bounds_text(("Ktrans", "ve", "vp")))))
    if draw(st.booleans()):
        mname, mask = draw(mask_for(shape))
        files[mname] = mask
        argv += ["--mask", mname]
    return Case(argv, files)


@st.composite
def habitat_case(draw):
    rng = draw(seed())
    shape = (4, 4, 2)
    files = {}
    maps = []
    for feature in ("D", "f"):
        content = draw(image(rng.random(shape).astype(np.float32), faults=MASK_FAULTS))
        files[f"{feature}{ext_of(content)}"] = content
        maps.append(f"{feature}{ext_of(content)}")
    roi = np.ones(shape, np.float32)
    content = draw(image(roi, faults=MASK_FAULTS))
    files[f"roi{ext_of(content)}"] = content
    argv = ["habitat", "--maps", *maps, "--mask", f"roi{ext_of(content)}", "--out-dir", "out"]
    if draw(st.integers(0, 3)) == 0:
        model = {"QmriHabitatModel": 1, "Features": ["D", "f"], "Units": ["", ""],
                 "Settings": {"k": 2, "method": "kmeans", "normalise": "zscore", "spatial": "none", "beta": 0.5,
                              "supervoxel_size": 50, "compactness": 10.0, "order_by": "D", "seed": 0},
                 "Classes": {"method": "kmeans", "means": [[-1.0, 0.0], [1.0, 0.0]], "variance": 1.0}}
        key = draw(st.sampled_from(["Settings", "Classes", "Features"]))
        if draw(st.booleans()):
            inner = model[key]
            if isinstance(inner, dict):
                inner[draw(st.sampled_from(sorted(inner)))] = draw(JSON_VALUES)
            else:
                model[key] = draw(JSON_VALUES)
        files["model.json"] = draw(sidecar(model)) if draw(st.booleans()) else json.dumps(model).encode()
        argv += ["--model", "model.json"]
    else:
        flag(argv, "--k", draw(optional(st.sampled_from(["2", "auto", "1", "0", "-3", "abc", "1000"]))))
        flag(argv, "--method", draw(optional(st.sampled_from(["kmeans", "gmm", "x"]))))
        flag(argv, "--spatial", draw(optional(st.sampled_from(["none", "mrf", "supervoxels", "x"]))))
        flag(argv, "--beta", draw(optional(NUMBER_TEXT)))
        flag(argv, "--supervoxel-size", draw(optional(NUMBER_TEXT)))
        flag(argv, "--normalise", draw(optional(st.sampled_from(["zscore", "robust", "population", "none", "x"]))))
        flag(argv, "--order-by", draw(optional(st.sampled_from(["D", "f", "K"]))))
    return Case(argv, files)


@st.composite
def stats_case(draw):
    rng = draw(seed())
    shape = (3, 3, 2)
    files = {}
    content = draw(image(rng.random(shape).astype(np.float32), faults=MASK_FAULTS))
    files[f"D{ext_of(content)}"] = content
    labels = rng.integers(0, 3, shape).astype(np.float32)
    lab = draw(image(labels, faults=MASK_FAULTS + ["fraction"]))
    files[f"lab{ext_of(lab)}"] = lab
    argv = ["stats", f"D{ext_of(content)}", "--labels", f"lab{ext_of(lab)}", "--out",
            draw(st.sampled_from(["t.csv", "out/t.csv"]))]
    if draw(st.booleans()):
        files["names.tsv"] = draw(st.one_of(
            st.sampled_from(["index\tname\n1\tcore\n2\trim\n", "index\tname\n", "", "1\tcore\n",
                             "index\tname\nx\ty\n", "index\tname\n1\n"]).map(str.encode),
            st.text(max_size=40).map(str.encode), st.binary(max_size=40)))
        argv += ["--names", "names.tsv"]
    argv += draw(st.sampled_from([[], ["--wide"], ["--quiet"]]))
    return Case(argv, files)


_FIT_CACHE: dict = {}


def _fitted_adc() -> dict:
    """The files of one small ADC fit (series, b-values, its maps), made once."""
    if not _FIT_CACHE:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            data = np.random.default_rng(0).uniform(500, 1500, (2, 2, 1, 1)) * np.exp(-np.array(B) * 1e-3)
            (tmp / "dwi.nii.gz").write_bytes(_nifti_bytes(data.astype(np.float32)))
            (tmp / "dwi.bval").write_text(" ".join(f"{b:g}" for b in B))
            assert main(["adc", str(tmp / "dwi.nii.gz"), "--out-dir", str(tmp / "maps"), "--quiet"]) == 0
            _FIT_CACHE.update({str(p.relative_to(tmp)): p.read_bytes() for p in tmp.rglob("*") if p.is_file()})
            _FIT_CACHE["data"] = data
    return _FIT_CACHE


@st.composite
def plot_fit_case(draw):
    fit = dict(_fitted_adc())
    data = fit.pop("data")
    files = {k: v for k, v in fit.items() if k != "dwi.nii.gz"}
    series = draw(image(data))
    if series[:2] == b"\x1f\x8b" and draw(st.booleans()):
        series = draw(image(data, faults=["ok"]))
    files[f"dwi{ext_of(series)}"] = series
    fault = draw(st.sampled_from(["ok", "ok", "sidecar", "missing map", "empty folder"]))
    if fault == "sidecar":
        files["maps/ADC.json"] = draw(sidecar(json.loads(fit["maps/ADC.json"])))
    elif fault == "missing map":
        del files["maps/ADC.nii.gz"]
    elif fault == "empty folder":
        files = {k: v for k, v in files.items() if not k.startswith("maps/")}
        files["maps/"] = b""
    voxel = draw(st.sampled_from(["0,0,0", "1,1,0", "2,0,0", "-1,0,0", "0,0", "a,b,c", "0,0,0,0", "1e9,0,0", ""]))
    argv = ["plot-fit", f"dwi{ext_of(series)}", "--maps", "maps", "--voxel", voxel,
            "--out", draw(st.sampled_from(["fit.png", "out/fit.png"]))]
    return Case(argv, files)


@st.composite
def phantom_case(draw):
    family = draw(st.sampled_from(["ivim", "adc", "stretched", "dki", "dce", "habitat", "cohort"]))
    argv = ["phantom", family, "--out-dir", "out"]
    files = {}
    if family in ("habitat", "cohort"):
        flag(argv, "--subjects", draw(optional(st.sampled_from(["1", "0", "-1", "abc", "2"]))))
        flag(argv, "--voxels", draw(optional(st.sampled_from(["200", "0", "-5", "abc", "1e3"]))))
        if "--voxels" not in argv:
            argv += ["--voxels", "200"]
        if "--subjects" not in argv:
            argv += ["--subjects", "1"]
        if family == "cohort":
            flag(argv, "--sessions", draw(optional(st.sampled_from(["1", "0", "-1", "x"]))))
    else:
        flag(argv, "--snr", draw(optional(NUMBER_TEXT)))
        block = draw(st.lists(st.sampled_from(["1", "2", "0", "-1", "x"]), min_size=3, max_size=3))
        argv += ["--block", *block]
        if family in ("ivim", "adc", "stretched") and draw(st.booleans()):
            files["p.bval"] = draw(numbers_file(B))
            argv += ["--bval", "p.bval"]
    flag(argv, "--seed", draw(optional(st.sampled_from(["0", "-1", "abc", "99999999999999999999"]))))
    return Case(argv, files)


@st.composite
def train_case(draw):
    model = draw(st.sampled_from(["adc", "ivim", "stretched", "dce"]))
    argv = ["train", model, "--out", draw(st.sampled_from(["w.pt", "out/w.pt"])), "--quiet"]
    files = {}
    if model == "dce":
        argv += ["--aif", draw(st.sampled_from(["parker", "nonsense"]))]
        argv += ["--tr-frame", draw(st.sampled_from([str(FRAME_S), "0", "nan", "x"]))]
        flag(argv, "--frames", draw(st.sampled_from(["16", "0", "-1", "x", "1"])))
    else:
        files["t.bval"] = draw(numbers_file(B))
        argv += ["--bval", "t.bval"]
    flag(argv, "--snr", draw(optional(st.sampled_from(["10:50", "50:10", "0:0", "nan:1", "x", "5", "-1:2"]))))
    flag(argv, "--bounds", draw(optional(_bounds_text(DIFFUSION_PARAMS.get(model, ("Ktrans", "ve"))))))
    flag(argv, "--prior", draw(optional(_bounds_text(DIFFUSION_PARAMS.get(model, ("Ktrans", "ve"))))))
    flag(argv, "--ensemble", draw(optional(st.sampled_from(["1", "0", "-1", "x"]))))
    flag(argv, "--data-consistency", draw(optional(st.sampled_from(["0", "0.5", "-1", "nan", "x"]))))
    # training itself stays small: a few signals, one epoch
    argv += ["--n-signals", draw(st.sampled_from(["64", "0", "-1", "x", "1"])),
             "--epochs", draw(st.sampled_from(["1", "0", "-1", "x"])), "--device", "cpu"]
    return Case(argv, files)


@st.composite
def validate_case(draw):
    argv = ["validate", "--out-dir", draw(st.sampled_from(["out", "reports/out", "afile"]))]
    argv += ["--suite", draw(st.sampled_from(["osipi-aif", "osipi-t1", "nonsense", ""]))]
    files = {"reports/": b"", "afile": b"not a folder"} if draw(st.booleans()) else {"afile": b""}
    return Case(argv, files)


@st.composite
def cohort_case(draw):
    """A configuration (valid, wrong values or structure, not TOML, deeply nested) on a dataset that is
    missing, empty or without matching series: refused before any task runs."""
    steps = draw(st.sampled_from([
        '[fit.ivim]\nmodel = "ivim"\nseries = { datatype = "dwi", suffix = "dwi" }\n',
        '[fit.a]\nmodel = "nonsense"\nseries = { suffix = "dwi" }\n',
        '[fit.a]\nmodel = "adc"\n',
        '[fit.a]\nmodel = "adc"\nseries = "dwi"\nbounds = "ADC=1:0"\n',
        '[fit.a]\nmodel = "adc"\nseries = { suffix = "dwi" }\n[fit.a.options]\nbmin = "abc"\n',
        '[fit.a]\nmodel = "adc"\nseries = { suffix = "dwi" }\nmethod = 3\n',
        '[fit."a b"]\nmodel = "adc"\nseries = { suffix = "dwi" }\n',
        '[nonsense]\nx = 1\n',
        '',
    ]))
    extra = draw(st.sampled_from(["", '[habitat]\nmaps = ["a.D"]\nk = "x"\n', '[roi]\nstatistics = ["mode"]\n',
                                  "x = [" * 3000 + "]" * 3000 + "\n", "not toml ]]\n"]))
    files = {"c.toml": (steps + extra).encode()}
    dataset = draw(st.sampled_from(["missing", "empty", "no subjects", "one subject", "file"]))
    if dataset in ("empty", "no subjects", "one subject"):
        files["bids/"] = b""
    if dataset in ("no subjects", "one subject"):
        files["bids/dataset_description.json"] = draw(sidecar({"Name": "x", "BIDSVersion": "1.8.0"}))
    if dataset == "one subject":
        files["bids/sub-01/"] = b""
    if dataset == "file":
        files["bids"] = b"x"
    argv = ["cohort", "--config", "c.toml", "bids", "out", draw(st.sampled_from(["participant", "group", "x"]))]
    flag(argv, "--participant-label", draw(optional(st.sampled_from(["01", "02", "../x"]))))
    return Case(argv, files)

@st.composite
def predict_case(draw):
    """``qmri predict --table``: feature tables and outcome files, well formed or not."""
    rng = draw(seed())
    n = draw(st.sampled_from([0, 1, 3, 12, 20]))
    ids = [f"sub-{i:02d}" for i in range(n)]
    header = draw(st.sampled_from(["id,a,b", "participant_id,a,b", "a,b", "id,a,a", ""]))
    second = draw(st.lists(st.sampled_from(["1.5", "0.2", "nan", "inf", "x", ""]), min_size=n, max_size=n))
    rows = [f"{s},{x:.3f},{y}" for s, x, y in zip(ids, rng.normal(size=n), second)]
    table = (header + "\n" + "\n".join(rows) + "\n").encode()
    if draw(st.booleans()):
        table = draw(st.binary(max_size=60))
    labels = draw(st.lists(st.sampled_from(["0", "1", "1", "0", "2", "yes", "", "nan"]), min_size=n, max_size=n))
    outcome = ("id,y\n" + "".join(f"{s},{v}\n" for s, v in zip(ids, labels))).encode()
    column = draw(st.sampled_from(["y", "y", "missing", ""]))
    argv = ["predict", "--table", "F.csv", "--outcome", f"O.csv:{column}", "--out-dir", "out",
            "--folds", draw(st.sampled_from(["2", "0", "1", "x"])), "--repeats", draw(st.sampled_from(["1", "0"])),
            "--inner-folds", "2", "--no-plot", "--quiet"]
    argv += draw(st.sampled_from([[], ["--classifier", "logistic"], ["--select", "0"], ["--k", "auto"]]))
    return Case(argv, {"F.csv": table, "O.csv": outcome})



# ---------------------------------------------------------------------------------------------
# The tests: one pair per command
# ---------------------------------------------------------------------------------------------
test_ivim, test_ivim_long = fuzz(diffusion_case("ivim"))
test_adc, test_adc_long = fuzz(diffusion_case("adc"))
test_stretched, test_stretched_long = fuzz(diffusion_case("stretched"))
test_dki, test_dki_long = fuzz(diffusion_case("dki"))
test_ivimk, test_ivimk_long = fuzz(diffusion_case("ivimk"))
test_t1, test_t1_long = fuzz(t1_case())
test_dce, test_dce_long = fuzz(dce_case())
test_habitat, test_habitat_long = fuzz(habitat_case())
test_stats, test_stats_long = fuzz(stats_case())
test_plot_fit, test_plot_fit_long = fuzz(plot_fit_case())
test_cohort, test_cohort_long = fuzz(cohort_case())
test_phantom, test_phantom_long = fuzz(phantom_case())
test_train, test_train_long = fuzz(train_case())
test_validate, test_validate_long = fuzz(validate_case())
test_predict, test_predict_long = fuzz(predict_case())

#: Commands not fuzzed: ``demo`` takes no input but an output folder (its failures are the output
#: folder's, tested with it).
NOT_FUZZED = {"demo"}


def test_every_command_is_fuzzed():
    from qmri.cli.main import COMMANDS, _command
    from qmri.models import MODULES

    commands = set(MODULES) | {_command(c) for c in COMMANDS}
    fuzzed = {name[len("test_"):].replace("_", "-") for name in globals()
              if name.startswith("test_") and not name.endswith("_long") and name != "test_every_command_is_fuzzed"}
    assert commands - NOT_FUZZED == fuzzed

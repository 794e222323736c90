"""The validation report: ``validation.md`` (pass rates, failures, accuracy, installation) and one
PNG per suite (measured against reference values)."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
from pathlib import Path

import numpy as np

from qmri import __version__, io
from qmri.validation.runner import EXPECTED, FAILED, PASSED, UNEXPECTED_PASS

REPORT = "validation.md"
#: Packages whose versions the report records.
PACKAGES = ("numpy", "scipy", "numba", "torch", "nibabel", "dipy", "matplotlib")


def file_names(suites) -> list[str]:
    """Files the report of ``suites`` consists of."""
    return [REPORT] + [f"{name}.png" for name in suites]


def environment() -> dict[str, str]:
    """What the suites ran on: qmri and package versions, Python, platform, CPUs, date (UTC)."""
    env = {"qmri": __version__, "Python": platform.python_version(),
           "platform": f"{platform.platform()} ({platform.machine()})"}
    for name in PACKAGES:
        try:
            env[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            env[name] = "not installed"
    try:
        import numba

        threads = f", Numba threads {numba.get_num_threads()}"
    except ImportError:  # pragma: no cover - numba is a dependency
        threads = ""
    env["CPUs"] = f"{os.cpu_count()}{threads}"
    env["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return env


def method_declarations() -> list[tuple[str, str, object]]:
    """``(model, method, Validation)`` of every method of every registered model."""
    from qmri.models import COMMANDS

    return [(cls.__name__, name, m.validation) for cls in COMMANDS.values() for name, m in cls.methods.items()]


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _rate(passed: int, total: int) -> str:
    return f"{100.0 * passed / total:.1f} %" if total else "-"


def _metric(key: str, value) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if not np.isfinite(value):
        return "-"
    if key.startswith("bias "):
        return f"{100 * value:+.1f} %"
    if key.startswith("recovery"):
        return f"{value:.2g}"
    if key in ("SNR", "voxels"):
        return f"{value:g}"
    if key.endswith("%"):
        return f"{value:.1f}"
    return f"{value:.3f}"


def markdown(runs, seconds: float, env: dict | None = None) -> str:
    """The report's text for suite runs ``runs`` (:class:`qmri.validation.runner.SuiteRun`)."""
    env = env or environment()
    results = [r for run in runs for r in run.results]
    n_failed = sum(r.status == FAILED for r in results)
    n_expected = sum(r.status == EXPECTED for r in results)
    n_passed = len(results) - n_failed - n_expected
    verdict = "FAILED" if n_failed else "PASSED"
    out = ["# qmri validation report", "",
           f"**{verdict}**: {len(results)} cases, {n_passed} passed, {n_expected} expected failures, "
           f"{n_failed} failed ({seconds:.1f} s).", "",
           "Reference cases (OSIPI code collections, shipped with qmri in `qmri/validation/data/osipi`: sources, "
           "commits and licence in its `NOTICE`) judged by OSIPI's rules and tolerances, and the phantoms of every "
           "model fitted by every method. An expected failure is a case known not to pass, with the measured value "
           "and the reason; it is not counted as a failure.", ""]
    out += _table(["", ""], [[k, v] for k, v in env.items()]) + [""]
    out += ["## Summary", ""]
    out += _table(["suite", "cases", "passed", "expected failures", "failed", "pass rate", "time (s)"],
                  [[f"[{run.title}](#{run.name})", len(run.results), run.count(PASSED) + run.count(UNEXPECTED_PASS),
                    run.count(EXPECTED), run.count(FAILED),
                    _rate(run.count(PASSED) + run.count(UNEXPECTED_PASS), len(run.results)), f"{run.seconds:.1f}"]
                   for run in runs]) + [""]
    for run in runs:
        out += _suite_section(run)
    out += ["## How each method is validated", "",
            "Declared by each method (`Method.validation`): the largest NRMSE allowed on the noise-free phantom, "
            "options used when validating, and whether the method is held to the reference (OSIPI) cases.", ""]
    out += _table(["model", "method", "noise-free NRMSE tolerance", "options", "reference cases", "note"],
                  [[model, f"`{name}`", "not checked" if v.recovery is None else f"{v.recovery:g}",
                    ", ".join(f"{k}={val}" for k, val in v.options.items()) or "-",
                    "yes" if v.reference_cases else "no", v.note or "-"]
                   for model, name, v in method_declarations()])
    return "\n".join(out) + "\n"


def _suite_section(run) -> list[str]:
    out = [f'<a id="{run.name}"></a>', "", f"## {run.title} (`{run.name}`)", "", run.rules, ""]
    rows = []
    for g in run.groups():
        n = sum(r.case.group == g for r in run.results)
        passed = run.count(PASSED, g) + run.count(UNEXPECTED_PASS, g)
        rows.append([g, n, passed, run.count(EXPECTED, g), run.count(FAILED, g), _rate(passed, n)])
    out += _table(["model / method or reference", "cases", "passed", "expected failures", "failed", "pass rate"],
                  rows) + [""]
    out += _accuracy(run)
    out += [f"![{run.title}: measured against reference]({run.name}.png)", ""]
    for title, status, text in (("Failures", FAILED, lambda r: r.outcome.message),
                                ("Expected failures", EXPECTED, lambda r: r.case.expected_failure),
                                ("Expected to fail, passed", UNEXPECTED_PASS, lambda r: r.case.expected_failure)):
        listed = [r for r in run.results if r.status == status]
        if listed:
            out += [f"**{title}** ({len(listed)}):", ""]
            out += [f"- `{r.case.id}`: {_cell(text(r))}" for r in listed] + [""]
    return out


def _accuracy(run) -> list[str]:
    """Tables of the cases' metrics (one table per set of columns, e.g. per model's parameters)."""
    out = []
    tables: dict[tuple, list] = {}
    for r in run.results:
        if r.outcome.metrics:
            tables.setdefault(tuple(r.outcome.metrics), []).append(r)
    for keys, results in tables.items():
        out += _table(["model / method", *keys],
                      [[r.case.group, *(_metric(k, r.outcome.metrics[k]) for k in keys)] for r in results]) + [""]
    if tables:
        out = ["Accuracy: NRMSE = RMS error / mean |truth|, bias = mean error / mean |truth|, over the phantom's "
               "voxels at its SNR; recovery NRMSE = the largest over the parameters, without noise.", ""] + out
    return out


def figure(run, path) -> None:
    """Scatter plots of measured against reference values, one panel per quantity, one colour per
    group; the points of failed cases are red crosses, those of expected failures open squares.
    Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, dict[str, list]] = {}
    for r in run.results:
        for key, (measured, reference) in r.outcome.values.items():
            series = panels.setdefault(key, {}).setdefault(r.case.group, [[], [], []])
            series[0].append(np.asarray(reference, dtype=float).ravel())
            series[1].append(np.asarray(measured, dtype=float).ravel())
            series[2].append(np.full(np.size(measured), r.status))
    ncols = min(4, max(len(panels), 1))
    nrows = max(1, -(-len(panels) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4.0 * nrows), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no values", ha="center", va="center")
    for ax, (key, groups) in zip(axes.ravel(), panels.items()):
        lo, hi = np.inf, -np.inf
        for group, (ref, meas, status) in groups.items():
            ref, meas, status = np.concatenate(ref), np.concatenate(meas), np.concatenate(status)
            bad, expected = status == FAILED, status == EXPECTED
            ok = ~bad & ~expected
            if ok.any():
                ax.scatter(ref[ok], meas[ok], s=6, alpha=0.5, label=group)
            if expected.any():
                ax.scatter(ref[expected], meas[expected], s=24, marker="s", facecolors="none", edgecolors="black",
                           label=f"{group}: expected failure")
            if bad.any():
                ax.scatter(ref[bad], meas[bad], s=24, marker="x", color="red", label=f"{group}: failed")
            finite = np.concatenate([ref[np.isfinite(ref)], meas[np.isfinite(meas)]])
            if finite.size:
                lo, hi = min(lo, finite.min()), max(hi, finite.max())
        if np.isfinite(lo):
            ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("reference")
        ax.set_ylabel("measured")
        ax.legend(fontsize=6, loc="upper left")
    fig.suptitle(run.title)
    fig.tight_layout()
    with io.atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)

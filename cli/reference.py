"""The README's table of commands, generated from the declarations.

``python -m qmri.cli.reference README.md`` rewrites the part of the README between
``<!-- commands -->`` and ``<!-- /commands -->``; a test checks that the README is up to date, so a
new model's row appears by running this, never by editing the table by hand.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from qmri.cli.main import COMMANDS as MAIN_COMMANDS
from qmri.cli.phantom import OTHER_PHANTOMS
from qmri.workflows import workflow
from qmri.workflows.train import trainable

START, END = "<!-- commands -->", "<!-- /commands -->"


def commands_table() -> str:
    """Markdown table: one row per fitting command (usage, outputs with units, methods), then the other
    commands that declare ``USAGE`` and ``SUMMARY`` (``habitat``), the phantoms, ``train`` and ``demo``."""
    from qmri.models import COMMANDS

    rows = ["| command | fits | methods (first = default) |", "|---|---|---|"]
    for cls in COMMANDS.values():
        wf = workflow(cls.workflow)
        required = " ".join(f"{o.cli_flag} {o.name.upper()}" for o in wf.inputs(cls) if o.required and not o.group)
        groups = sorted({o.group for o in wf.inputs(cls) if o.group and o.required})
        for g in groups:
            required += " " + "\\|".join(o.cli_flag for o in wf.inputs(cls) if o.group == g) + " ..."
        usage = f"`qmri {cls.command} {wf.series.upper()} {required}".replace("  ", " ").rstrip() + "`"
        methods = ", ".join(f"`{m}`" for m in sorted(cls.methods, key=lambda k: k != cls.default_method))
        rows.append(f"| {usage} | {cls.cli.summary} | {methods} |")
    phantoms = "\\|".join(cls.command for cls in COMMANDS.values() if cls.has_phantom())
    for name in MAIN_COMMANDS:  # other commands that declare a table row
        module = importlib.import_module(f"qmri.cli.{name}")
        if hasattr(module, "USAGE"):
            rows.append(f"| `{module.USAGE}` | {module.SUMMARY} | |")
    rows.append(f"| `qmri phantom {phantoms} --out-dir OUT [--snr S]` | phantoms (digital reference objects) with "
                "ground truth | |")
    for module in map(importlib.import_module, OTHER_PHANTOMS):
        flags = " ".join(f"[{o.cli_flag}]" if o.is_switch else f"[{o.cli_flag} {o.name.upper()}]"
                         for o in module.PHANTOM_OPTIONS)
        rows.append(f"| `qmri phantom {module.PHANTOM_NAME} --out-dir OUT {flags}` | {module.PHANTOM_HELP} | |")

    nets = "\\|".join(cls.command for cls in COMMANDS.values() if trainable(cls))
    rows.append(f"| `qmri train {nets} ... --out WEIGHTS.pt [--snr 10:50]` | networks for `--method dnn --weights`, "
                "trained on simulated signals | |")
    rows.append("| `qmri demo [--out-dir demo_out] [--force]` | every phantom, every method: accuracy and speed | |")
    return "\n".join(rows)


def update(readme: Path) -> bool:
    """Rewrite the table in ``readme``; True if it changed."""
    text = readme.read_text()
    a, b = text.index(START) + len(START), text.index(END)
    new = text[:a] + "\n" + commands_table() + "\n" + text[b:]
    if new != text:
        readme.write_text(new)
    return new != text


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    print(f"{path}: {'updated' if update(path) else 'already up to date'}")

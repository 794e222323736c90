"""Regenerate the networks shipped with qmri (``qmri/fitting/net/pretrained/*.pt``), exactly.

Each network a model declares (the ``pretrained`` training keywords of its ``network`` facet) is trained, supervised, on
signals simulated for one built-in phantom's protocol
(``qmri phantom <name>``; its b-values / gradient directions, or its frame times with its AIF as one
of the varied training AIFs), over the model's default bounds, with the seeds below, in one torch
thread: on the same torch version and CPU the files come out byte for byte the same (``--check``
retrains and compares with the shipped files without writing).

Usage::

    python tools/make_pretrained.py [--only NAME ...] [--check]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "qmri" / "fitting" / "net" / "pretrained"


def recipes() -> dict:
    """``{name: (model factory, training keywords)}``: every model's declared shipped networks
    (``cls.network.recipes()``, :meth:`qmri.models.network.Network.recipes`; the ``pretrained``
    keywords of the classes' network facets and of the DCE models of :mod:`qmri.models.dce.pk`), in
    the commands' order. SNR ranges bracket the phantoms' default SNR."""
    from qmri.models import commands

    return {name: recipe for cls in commands().values() for name, recipe in cls.network.recipes().items()}


def main(argv=None) -> int:
    from qmri.fitting.net import train

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    table = recipes()
    ap.add_argument("--only", nargs="+", choices=list(table), help="regenerate these only")
    ap.add_argument("--check", action="store_true", help="retrain and compare with the shipped files; write nothing")
    args = ap.parse_args(argv)
    status = 0
    for name in args.only or list(table):
        make, kw = table[name]
        t0 = time.perf_counter()
        trained = train(make(), seed=0, threads=1, device="cpu", **kw)
        data = trained.to_bytes()
        path = OUT / f"{name}.pt"
        if args.check:
            same = path.exists() and path.read_bytes() == data
            status |= not same
            print(f"{name}: {'identical' if same else 'DIFFERENT'} ({time.perf_counter() - t0:.0f} s)")
            continue
        OUT.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        h = trained.histories
        print(f"{name}: {len(data) / 1024:.0f} KB, {trained.n_networks} network(s), epochs {[x['epochs_run'] for x in h]}, "
              f"best validation loss {[round(min(x['val_loss']), 5) for x in h]}, {time.perf_counter() - t0:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())

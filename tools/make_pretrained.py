"""Regenerate the networks shipped with qmri (``qmri/fitting/net/pretrained/*.pt``), exactly.

Each network is trained, supervised, on signals simulated for one built-in phantom's protocol
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

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "qmri" / "fitting" / "net" / "pretrained"

#: name -> (model factory, training keywords). SNR ranges bracket the phantoms' default SNR. The DCE
#: recipes come from the pharmacokinetic models' declarations (``PKModel.pretrained``).
RECIPES = {
    "ivim": (lambda: _diffusion("ivim"), dict(n=100_000, snr="10:60", ensemble=3)),
    "ivimk": (lambda: _diffusion("ivimk"), dict(n=100_000, snr="10:60", ensemble=3)),
    "adc": (lambda: _diffusion("adc"), dict(n=50_000, snr="10:60", ensemble=3)),
    "stretched": (lambda: _diffusion("stretched"), dict(n=50_000, snr="10:60", ensemble=3)),
    "dki-trace": (lambda: _dki(trace=True), dict(n=50_000, snr="10:60", ensemble=3)),
    "dki": (lambda: _dki(trace=False), dict(n=100_000, snr="10:60", ensemble=1)),
}


def _dce_recipes():
    """``dce-<name>`` for every pharmacokinetic model that declares a shipped network."""
    from qmri.models.dce.pk import PK_MODELS

    return {f"dce-{pk.name}": (lambda name=pk.name: _dce(name), dict(pk.pretrained))
            for pk in PK_MODELS.values() if pk.pretrained is not None}


RECIPES.update(_dce_recipes())


def _diffusion(command):
    from qmri.models import COMMANDS

    cls = COMMANDS[command]
    return cls.for_phantom(cls.phantom(snr=np.inf, block=(1, 1, 1)))


def _dki(trace: bool):
    from qmri.models import DKI

    ph = DKI.phantom(snr=np.inf, block=(1, 1, 1))
    return DKI.from_acquisition(ph.acquisition["bvals"], ph.acquisition["bvecs"], trace=trace)


def _dce(pk: str):
    from qmri.models import DCE

    ph = DCE.phantom(snr=np.inf, block=(1, 1, 1))
    return DCE(np.asarray(ph.acquisition["times"]), np.asarray(ph.acquisition["aif"]), pk,
               aif_times=np.asarray(ph.acquisition["aif_times"]))


def main(argv=None) -> int:
    from qmri.fitting.net import train

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(RECIPES), help="regenerate these only")
    ap.add_argument("--check", action="store_true", help="retrain and compare with the shipped files; write nothing")
    args = ap.parse_args(argv)
    status = 0
    for name in args.only or list(RECIPES):
        make, kw = RECIPES[name]
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

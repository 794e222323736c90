"""What the network estimator needs to know about DCE: varied AIFs to train on, and a tissue prior.

A DCE network reads each voxel's concentration curve with the AIF (and the frame times) as input
channels (:meth:`qmri.models.dce.model.DCENetwork.channels`), so that one network serves any AIF
on the frame times it was trained for. It is therefore trained on curves simulated with many AIFs
(:func:`aif_variants`): the model's own AIF and the Parker and Georgiou population AIFs, each with
a random amplitude, bolus arrival and time dilation, as DCE-NET varied its training AIFs
(Ottens et al., Med Image Anal 2022;80:102512). Each model declares the ranges of its training
parameters (:attr:`qmri.models.dce.pk.PKModel.prior`).
"""

from __future__ import annotations

import numpy as np

from qmri.models.dce import aif as A

#: AIFs simulated for supervised training (an equal share of the training curves each).
N_AIFS = 64

def aif_variants(t, cp, rng, n: int = N_AIFS) -> list[np.ndarray]:
    """``n`` plasma AIFs (mM) at times ``t`` (s; the AIF's own grid): ``cp`` itself first, then random
    variants.

    Each variant is ``cp``, the Parker AIF or the Georgiou AIF (a third each; Hct 0.35–0.5),
    scaled by 0.5–1.5, with its time axis dilated by 0.7–1.4 about a bolus arrival drawn between
    the first frame and 25% of the acquisition (the model's own AIF: shifted by ±10 s instead).
    """
    t = np.asarray(t, dtype=np.float64)
    span = t[-1] - t[0]
    out = [np.asarray(cp, dtype=np.float64)]
    for k in range(1, n):
        kind = k % 3
        amp = rng.uniform(0.5, 1.5)
        if kind == 0:
            out.append(amp * A.shift(t, cp, rng.uniform(-10.0, 10.0)))
            continue
        onset = t[0] + rng.uniform(0.0, 0.25) * span
        warped = onset + (t - onset) * rng.uniform(0.7, 1.4)
        curve = A.parker if kind == 1 else A.georgiou
        out.append(amp * curve(warped, hct=rng.uniform(0.35, 0.5), delay=onset))
    return out


def tissue_prior(declared: dict, names, lower, upper, prior: dict | None = None) -> dict:
    """A model's declared training ranges (``declared``; :attr:`qmri.models.dce.pk.PKModel.prior`)
    for its parameters ``names``, each clipped to the bounds (the bounds where the clipped range is
    empty), with ``prior`` on top."""
    out = {}
    for name, lo, hi in zip(names, lower, upper):
        if name in declared:
            a, b = declared[name]
            out[name] = (max(a, lo), min(b, hi)) if max(a, lo) < min(b, hi) else (lo, hi)
    out.update(prior or {})
    return out

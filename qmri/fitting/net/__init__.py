"""Network estimators (PyTorch) for any declared model: the ``dnn`` method, training, weights files.

=================  ============================================================================
module             holds
=================  ============================================================================
``method``         the ``dnn`` method (:data:`DNN`) and its options; training on the fitted voxels
``data``           network inputs: normalised voxel signals, simulated training signals
``networks``       the torch networks (per-parameter nets, a temporal net), bounded outputs
``training``       self-supervised and supervised training, early stopping, inference, devices
``weights``        trained networks with their contract (model, protocol, ranges, training)
``pretrained/``    networks shipped for the phantoms' protocols (made by tools/make_pretrained.py)
=================  ============================================================================

Only ``method`` and ``data`` are imported without torch; torch is imported when a network is
trained or used.
"""

from __future__ import annotations

import numpy as np

from qmri.errors import QMRIInputError
from qmri.fitting.net.method import DNN, NetworkMethod

# A model offers the network estimator by listing DNN in its methods table; nothing here names a model.


def train(model, data=None, *, mask=None, n: int = 200_000, snr=(10.0, 50.0), prior: dict | None = None,
          ensemble: int = 1, epochs: int = 100, seed: int = 0, data_consistency: float = 0.0,
          device: str = "auto", threads: int | None = None, progress: bool = False):
    """Train networks for ``model`` (bound to its acquisition).

    Parameters
    ----------
    model : qmri.models.model.Model
    data : array_like, shape (..., n_measurements), optional
        Measured signals: train self-supervised on them (inside ``mask``). Without ``data``:
        supervised on ``n`` simulated signals (:func:`qmri.fitting.net.data.simulated_inputs`).
    mask : array_like of bool, optional
    n : int
        Simulated training signals (supervised; 10% of them validate).
    snr : (float, float) or str
        SNR range of the simulated noise (``"10:50"`` also accepted).
    prior : dict, optional
        ``{name: (low, high)}``: ranges of the simulated parameters replacing the model's
        network ranges (the outputs stay within the ranges).
    ensemble : int
        Networks, trained from seeds ``seed``, ``seed + 1``, ...
    epochs : int
        Most epochs (early stopping on the validation loss).
    seed : int
        Seed of the simulation and the training.
    data_consistency : float
        Weight of the signal loss added to the supervised parameter loss (0: none).
    device : {"auto", "cpu", "cuda"}
    threads : int, optional
        Torch CPU threads during training (default: the count of :func:`qmri.threads.set_threads`
        / ``--threads`` when set, else torch's choice).
    progress : bool
        Progress bars with epoch and losses.

    Returns
    -------
    qmri.fitting.net.weights.Trained
        Save with ``.save(path)``; use with ``model.fit(..., method="dnn", weights=path)``.

    Raises
    ------
    QMRIInputError
        Bad SNR range, prior, ensemble, epochs, data-consistency weight, number of signals (at
        least 2) or device; data not matching the acquisition.
    """
    from qmri.fitting.net.data import parse_range, simulated_inputs
    from qmri.fitting.net.method import train_on_voxels
    from qmri.fitting.net.training import resolve_device, train_networks
    from qmri.fitting.net.training import threads as torch_threads

    dev = resolve_device(device)
    with torch_threads(threads):
        if data is not None:
            Y = np.asarray(data)
            if Y.ndim < 1 or Y.shape[-1] != model.n_measurements:
                raise QMRIInputError(f"data have {Y.shape[-1] if Y.ndim else 0} measurements on their last axis, the "
                                     f"acquisition has {model.n_measurements}")
            flat = Y.reshape(-1, Y.shape[-1])
            index = np.flatnonzero(np.ones(flat.shape[0], bool) if mask is None else np.asarray(mask, bool).ravel())
            C = model.covariate_maps(Y.shape[:-1])
            trained = train_on_voxels(model, lambda sel: flat[sel], index, C, n_networks=ensemble, epochs=epochs, seed=seed, device=dev,
                                      progress=progress)
            if trained is None:
                raise QMRIInputError("no voxel with usable signals to train on")
            return trained
        lo_snr, hi_snr = parse_range(snr, "--snr")
        if int(n) < 2:  # batch normalisation needs two signals
            raise QMRIInputError(f"--n-signals must be at least 2, got {n}")
        inputs = simulated_inputs(model, int(n), np.random.default_rng(seed), snr=(lo_snr, hi_snr), prior=prior)
        record = {"mode": "supervised", "data": "simulated signals (qmri.fitting.net.data.simulated_inputs)",
                  "signals": inputs.n, "snr": [lo_snr, hi_snr], "noise": model.network.noise,
                  "prior": {k: [float(a), float(b)] for k, (a, b) in (prior or {}).items()},
                  "data_consistency": float(data_consistency), "simulation_seed": int(seed)}
        return train_networks(model, inputs, supervised=True, n_networks=ensemble, seed=seed, epochs=epochs,
                              data_consistency=data_consistency, device=dev, progress=progress, record=record)


__all__ = ["DNN", "NetworkMethod", "train"]

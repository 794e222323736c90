"""Training and running networks: self-supervised (physics-informed) or supervised, with early stopping.

* **Self-supervised** (IVIM-NET: Barbieri et al., MRM 2020;83:312, doi:10.1002/mrm.27910; the
  optimised settings of Kaandorp et al., MRM 2021;86:2250): the network's parameters are decoded
  through the model's torch twin (``spec.torch_signal``) and the loss is the mean squared
  difference between that signal and the (normalised) input signal. No ground truth is needed:
  the network is trained on the voxels it then fits.
* **Supervised** on simulated signals (:func:`qmri.fitting.net.data.simulated_inputs`): the loss
  is the mean squared error of the parameters, each divided by the standard deviation of its
  simulated values (so that a parameter drawn from a narrow prior inside wide bounds still
  counts), optionally plus ``data_consistency`` times the self-supervised signal loss
  (SUPER-IVIM-DC, Korngut et al., MICCAI 2022).

Adam (learning rate 1e-2, 3e-3 for the temporal network; halved whenever the validation loss has
not improved for 3 epochs),
batches of 1024 signals drawn within one acquisition group, epochs of at most 500 batches, 10% of
the signals held out for validation; training stops when the validation loss has not improved
(by 0.01%) for ``patience`` epochs, and the network of the lowest validation loss is kept. Every random choice
(initial weights, split, batches) follows ``seed``: on the CPU the result is the same for the same
seed, inputs and thread count.

This module imports torch: it is imported only when a network is used.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm import tqdm

from qmri.errors import QMRIInputError
from qmri.fitting.net.networks import Network, Stacked, architecture
from qmri.fitting.net.weights import Trained, contract
from qmri.threads import chosen

#: Batches per epoch at most (IVIM-NET_optim: 500).
STEPS_PER_EPOCH = 500
#: Signals per training batch (fewer for small training sets: a sixteenth of them, at least 32).
BATCH_SIZE = 1024
#: Adam's initial learning rate by network kind (the wide first layer of the temporal network
#: diverges at 1e-2); halved when the validation loss has not improved for :data:`LR_PATIENCE` epochs.
LEARNING_RATES = {"parameters": 1e-2, "temporal": 3e-3}
LR_PATIENCE = 3
#: Relative decrease of the validation loss that counts as an improvement.
MIN_IMPROVEMENT = 1e-4
#: Fraction of the signals held out for early stopping (IVIM-NET: 10%).
VALIDATION_FRACTION = 0.1
#: Epochs without improvement of the validation loss before training stops.
PATIENCE = 10
#: Most epochs.
MAX_EPOCHS = 100
#: Signals per batch of a validation loss (bounds its memory).
INFERENCE_BATCH = 65536
#: Signals per batch of :func:`predict`: small enough for a batch's activations to stay in the CPU's
#: caches (the 3 shipped IVIM networks: 192 units, 3 MB at 4096 signals), large enough for few torch
#: calls; on 2 threads about twice the throughput of 16384 or 65536 (``benchmarks/results/dnn.md``).
PREDICT_BATCH = 4096


class Tensors:
    """:class:`~qmri.fitting.net.data.Inputs` as tensors on a device, and the network input of a batch."""

    def __init__(self, inputs, device):
        f32 = dict(dtype=torch.float32, device=device)
        self.signals = torch.as_tensor(inputs.signals, **f32)
        self.covariates = None if inputs.covariates is None else torch.as_tensor(inputs.covariates, **f32)
        self.estimates = None if inputs.estimates is None else torch.as_tensor(inputs.estimates, **f32)
        self.targets = None if inputs.targets is None else torch.as_tensor(inputs.targets, **f32)
        # each parameter's error counts relative to the spread of its training values
        self.target_sd = None if inputs.targets is None else torch.as_tensor(
            np.maximum(inputs.targets.std(axis=0), 1e-3), **f32)
        self.acqs = [torch.as_tensor(a, **f32) for a in inputs.acqs]
        self.channels = None if inputs.channels is None else [torch.as_tensor(c, **f32) for c in inputs.channels]
        self.groups = inputs.groups

    def x(self, rows, group: int):
        """Network input of ``rows`` (all of acquisition ``group``)."""
        s = self.signals[rows]
        if self.channels is not None:
            ch = self.channels[group]
            return torch.cat([s[:, None, :], ch[None].expand(s.shape[0], *ch.shape)], dim=1)
        extra = [a[rows] for a in (self.covariates, self.estimates) if a is not None]
        return torch.cat([s, *extra], dim=1) if extra else s

    def cov(self, rows):
        return None if self.covariates is None else self.covariates[rows]


def input_statistics(inputs) -> tuple[np.ndarray, np.ndarray]:
    """Standardisation of the network input: per feature (signals, covariates and estimates), or per
    channel (signal, curves) for a network over time."""
    if inputs.channels is not None:
        curves = np.stack(inputs.channels)                               # (G, k, m)
        mean = np.r_[np.mean(inputs.signals), curves.mean(axis=(0, 2))]
        sd = np.r_[np.std(inputs.signals), curves.std(axis=(0, 2))]
        return mean[:, None], np.maximum(sd, 1e-6)[:, None]
    X = np.concatenate([a for a in (inputs.signals, inputs.covariates, inputs.estimates) if a is not None], axis=1)
    return X.mean(axis=0), np.maximum(X.std(axis=0), 1e-6)


def _batches(groups: np.ndarray, rows: np.ndarray, size: int, rng) -> list:
    """(group, row indices) batches covering ``rows`` in random order, each within one group."""
    out = []
    for g in np.unique(groups[rows]):
        r = rows[groups[rows] == g]
        r = r[rng.permutation(r.size)]
        out += [(int(g), r[i:i + size]) for i in range(0, r.size, size)]
    return [out[i] for i in rng.permutation(len(out))]


def _loss(net, spec, t: Tensors, rows, g, supervised: bool, data_consistency: float):
    s = net.scaled(t.x(rows, g))
    if supervised:
        loss = torch.mean(((net.within(s) - t.targets[rows]) / t.target_sd) ** 2)
        if not data_consistency:
            return loss
    fitted = spec.torch_signal(net.parameters_from_scaled(s), t.acqs[g], t.cov(rows))
    signal_loss = torch.mean((fitted - t.signals[rows]) ** 2)
    return loss + data_consistency * signal_loss if supervised else signal_loss


def train_network(model, inputs, *, supervised: bool, seed: int = 0, epochs: int = MAX_EPOCHS,
                  patience: int = PATIENCE, data_consistency: float = 0.0, device: str = "cpu", arch=None,
                  bar=None, ranges=None) -> tuple[Network, dict]:
    """Train one network on ``inputs`` (:class:`~qmri.fitting.net.data.Inputs`) for ``model``.

    Parameters
    ----------
    model : qmri.models.model.Model
        Its declaration (``spec.torch_signal``), network ranges and channels.
    inputs : Inputs
        Signals (and ``targets`` when ``supervised``).
    supervised : bool
        Loss on the scaled parameters (plus ``data_consistency`` × signal loss); else the
        self-supervised signal loss.
    seed : int
    epochs, patience : int
        Most epochs; epochs without improvement before stopping.
    device : str
        ``"cpu"`` or ``"cuda"``.
    arch : dict, optional
        Architecture (default :func:`qmri.fitting.net.networks.architecture`).
    bar : tqdm, optional
        Updated once per epoch with the losses.
    ranges : (ndarray, ndarray), optional
        Output ranges ``(lower, upper)``, each (n_params,), within which ``targets`` are scaled;
        default ``model.network.bounds()``.

    Returns
    -------
    network : Network
        The best network (lowest validation loss), in evaluation mode, on the CPU.
    history : dict
        ``train_loss`` and ``val_loss`` per epoch, ``best_epoch``, ``seconds``.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    lo, hi = (np.asarray(v, dtype=np.float64) for v in (model.network.bounds() if ranges is None else ranges))
    n = inputs.n
    order = rng.permutation(n)
    n_val = int(round(VALIDATION_FRACTION * n)) if n >= 20 else 0
    val_rows, train_rows = (order[:n_val], order[n_val:]) if n_val else (order, order)
    if arch is None:
        n_ch = 0 if inputs.channels is None else inputs.channels[0].shape[0]
        n_cov = sum(0 if a is None else a.shape[1] for a in (inputs.covariates, inputs.estimates))
        arch = architecture(inputs.signals.shape[1], n_cov, len(lo), n_ch)
    mean, scale = input_statistics(inputs.subset(train_rows))
    net = Network(arch, lo, hi, mean, scale).to(device)
    t = Tensors(inputs, device)
    spec = model.spec
    opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATES[arch["kind"]])
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=LR_PATIENCE, threshold=MIN_IMPROVEMENT)
    batch = int(np.clip(train_rows.size // 16, 32, BATCH_SIZE))
    best, best_state, best_epoch, wait = np.inf, None, 0, 0
    history = {"train_loss": [], "val_loss": []}
    for epoch in range(int(epochs)):
        net.train()
        total, count = 0.0, 0
        for g, rows in _batches(inputs.groups, train_rows, batch, rng)[:STEPS_PER_EPOCH]:
            if rows.size < 2:  # batch normalisation needs two signals
                continue
            loss = _loss(net, spec, t, rows, g, supervised, data_consistency)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * rows.size
            count += rows.size
        val = _evaluate(net, spec, t, inputs.groups, val_rows, supervised, data_consistency)
        history["train_loss"].append(total / max(count, 1))
        sched.step(val)
        history["val_loss"].append(val)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, train=f"{history['train_loss'][-1]:.3g}", val=f"{val:.3g}")
        if val < best:
            if val < best * (1.0 - MIN_IMPROVEMENT):
                wait = 0
            best, best_epoch = val, epoch
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            wait += 1
        if wait >= patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    history.update(best_epoch=best_epoch + 1, epochs_run=len(history["val_loss"]),
                   seconds=round(time.perf_counter() - t0, 3))
    return net.cpu().eval(), history


@torch.no_grad()
def _evaluate(net, spec, t, groups, rows, supervised, data_consistency) -> float:
    net.eval()
    total = 0.0
    for g, r in _batches(groups, rows, INFERENCE_BATCH, np.random.default_rng(0)):
        total += float(_loss(net, spec, t, r, g, supervised, data_consistency)) * r.size
    return total / max(rows.size, 1)


def predict(networks, inputs, device: str = "cpu", batch: int = PREDICT_BATCH, stacked: bool = True) -> np.ndarray:
    """Parameters estimated by each network, shape (n_networks, n, n_params), float64.

    Runs under ``torch.inference_mode`` in batches of ``batch`` signals (bounded memory). Networks
    with per-parameter bodies run together, stacked (:class:`~qmri.fitting.net.networks.Stacked`:
    the same estimates to float32 round-off, several times faster for an ensemble); ``stacked=False``
    runs each network's own ``forward``.
    """
    n = inputs.n
    out = np.empty((len(networks), n, len(networks[0].lower)))
    t = Tensors(inputs, "cpu")
    together = Stacked.of(networks) if stacked else None
    with torch.inference_mode():
        if together is not None:
            together = together.to(device)
            for i in range(0, n, batch):
                sel = slice(i, min(i + batch, n))
                # a per-parameter body reads no curves: the group plays no part in its input
                out[:, sel] = together(t.x(sel, 0).to(device)).transpose(1, 2).cpu().numpy()
            return out
        for k, net in enumerate(networks):
            net = net.to(device).eval()
            for g in np.unique(inputs.groups):
                rows = np.flatnonzero(inputs.groups == g)
                for i in range(0, rows.size, batch):
                    r = rows[i:i + batch]
                    sel = slice(r[0], r[-1] + 1) if r[-1] - r[0] + 1 == r.size else r
                    out[k, sel] = net(t.x(sel, g).to(device)).double().cpu().numpy()
            net.cpu()
    return out


def residual_sum_of_squares(model, P: np.ndarray, inputs) -> np.ndarray:
    """Sum over measurements (n,) of the squared difference between the input signals and the
    signals of parameters ``P`` (n, n_params) through the torch twin (float32, summed in float64)."""
    out = np.empty(inputs.n)
    with torch.inference_mode():
        for g in np.unique(inputs.groups):
            rows = np.flatnonzero(inputs.groups == g)
            sel = slice(rows[0], rows[-1] + 1) if rows[-1] - rows[0] + 1 == rows.size else rows
            cov = None if inputs.covariates is None else torch.as_tensor(inputs.covariates[sel])
            fitted = model.spec.torch_signal(torch.as_tensor(P[sel], dtype=torch.float32),
                                             torch.as_tensor(inputs.acqs[g], dtype=torch.float32), cov)
            out[sel] = torch.sum(torch.square(fitted - torch.as_tensor(inputs.signals[sel])), dim=1,
                                 dtype=torch.float64).numpy()
    return out


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` → ``"cuda"`` when torch sees a CUDA device, else ``"cpu"``.

    Raises
    ------
    QMRIInputError
        ``"cuda"`` asked for and none is available.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise QMRIInputError(f"--device cuda: torch {torch.__version__} sees no CUDA device (a CPU-only build, or no "
                             "GPU); use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise QMRIInputError(f"--device: {device!r} is not one of auto, cpu, cuda")
    return device


class threads:
    """Context manager: torch's CPU thread count set to ``n`` (None: the count of ``--threads``,
    :func:`qmri.threads.chosen`, when one was set, else unchanged), restored on exit."""

    def __init__(self, n: int | None = None):
        self.n = chosen() if n is None else n

    def __enter__(self):
        self.before = torch.get_num_threads()
        if self.n is not None:
            if int(self.n) < 1:
                raise QMRIInputError(f"--threads must be at least 1, got {self.n}")
            torch.set_num_threads(int(self.n))
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


def train_networks(model, inputs, *, supervised: bool, n_networks: int = 1, seed: int = 0, epochs: int = MAX_EPOCHS,
                   patience: int = PATIENCE, data_consistency: float = 0.0, device: str = "cpu",
                   progress: bool = False, record: dict | None = None, ranges=None, arch=None):
    """Train an ensemble of ``n_networks`` (seeds ``seed``, ``seed + 1``, ...) and wrap it with its contract.

    Parameters
    ----------
    model, inputs, supervised, seed, epochs, patience, data_consistency, device, ranges, arch
        As :func:`train_network` (``arch`` that of every network of the ensemble).
    n_networks : int
    progress : bool
        A progress bar per network: epoch, training and validation loss.
    record : dict, optional
        The training description written into the contract (mode, data, SNR...).

    Returns
    -------
    qmri.fitting.net.weights.Trained

    Raises
    ------
    QMRIInputError
        ``n_networks`` or ``epochs`` below 1, ``data_consistency`` negative or not finite.
    """
    if int(n_networks) < 1:
        raise QMRIInputError(f"--ensemble must be at least 1, got {n_networks}")
    if int(epochs) < 1:
        raise QMRIInputError(f"--epochs must be at least 1, got {epochs}")
    if not 0 <= float(data_consistency) < np.inf:
        raise QMRIInputError(f"--data-consistency must be a finite number >= 0, got {data_consistency}")
    nets, histories = [], []
    for k in range(int(n_networks)):
        bar = None
        if progress:
            bar = tqdm(total=int(epochs), unit="epoch", leave=False,
                       desc=f"training {type(model).__name__} network {k + 1}/{n_networks}")
        net, hist = train_network(model, inputs, supervised=supervised, seed=int(seed) + k, epochs=epochs,
                                  patience=patience, data_consistency=data_consistency, device=device, arch=arch,
                                  bar=bar, ranges=ranges)
        if bar is not None:
            bar.close()
        arch = arch or net.architecture
        nets.append(net)
        histories.append(hist)
    rec = dict(record or {})
    rec.update(seeds=[int(seed) + k for k in range(int(n_networks))], max_epochs=int(epochs), patience=int(patience),
               batch_size=BATCH_SIZE, learning_rate=LEARNING_RATES[arch["kind"]],
               validation_fraction=VALIDATION_FRACTION)
    return Trained(nets, arch, contract(model, rec), histories)

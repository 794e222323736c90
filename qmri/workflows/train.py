"""Training a network estimator for an acquisition described by files: what ``qmri train`` does.

:func:`train_files` builds the model from the acquisition alone (the workflow's ``protocol_model``:
b-values and b-vectors, or frame times and an AIF), trains networks on simulated signals
(:func:`qmri.fitting.net.train`, supervised) and writes the weights file, with its contract, and
optionally a PNG of the loss curves. Fit with the weights: ``qmri <command> ... --method dnn
--weights FILE``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from qmri.errors import QMRIInputError
from qmri.fitting.net import train
from qmri.models.model import parse_bounds
from qmri.options import Option, random_seed, resolve

#: The training options (Python keywords of :func:`train_files` and flags of ``qmri train``).
OPTIONS = (
    Option("snr", "SNR range of the simulated noise, LOW:HIGH (S0 / sigma; for DCE the peak of each curve / "
           "sigma); default 10:50", str, "10:50", metavar="LOW:HIGH"),
    Option("n_signals", "simulated training signals (10% validate); default 200000", int, 200_000, metavar="N"),
    Option("prior", "ranges of the simulated parameters, NAME=LOW:HIGH separated by commas (default: the "
           "network ranges, i.e. the bounds; DCE: tissue ranges)", str, None),
    Option("ensemble", "networks trained from successive seeds; more than 1 gives <param>_sd maps when fitting "
           "(default 1)", int, 1),
    Option("epochs", "most epochs (early stopping on the validation loss); default 100", int, 100),
    Option("seed", "seed of the simulation and the training (default 0)", random_seed, 0),
    Option("data_consistency", "weight of the signal (data-consistency) loss added to the parameter loss, as "
           "SUPER-IVIM-DC (default 0: none)", float, 0.0),
    Option("device", "auto (CUDA when available), cpu or cuda", str, "auto", choices=("auto", "cpu", "cuda")),
)


@dataclass
class TrainOutcome:
    """What :func:`train_files` did: the trained networks, the files written, the seconds it took."""

    trained: object
    written: list
    seconds: float


def trainable(model_cls) -> bool:
    """Whether ``qmri train`` can train networks for ``model_cls`` (it offers ``dnn`` and its workflow
    builds a model from acquisition files)."""
    from qmri.workflows import WORKFLOWS

    return "dnn" in model_cls.methods and WORKFLOWS[model_cls.workflow].protocol_model is not None


def train_files(model_cls, *, out, force: bool = False, plot: bool = False, progress: bool = False,
                bounds: dict | None = None, model_options: dict | None = None, training: dict | None = None,
                on_start=None, **inputs) -> TrainOutcome:
    """Train networks for the acquisition described by ``inputs`` and write the weights file ``out``.

    Parameters
    ----------
    model_cls : type
        A model class whose workflow has a ``protocol_model`` (see :func:`trainable`).
    out : path
        The weights file (``.pt``); with ``plot`` also ``<out without suffix>.png``.
    force : bool
        Overwrite existing outputs (otherwise nothing is written if one exists).
    plot : bool
        Write the training and validation loss curves as a PNG.
    progress : bool
        Progress bars (epoch, training and validation loss).
    bounds : dict, optional
        ``{name: (lower, upper)}``: the network's output ranges (fits with the weights must use them).
    model_options : dict, optional
        Keywords of the model (``threshold``, ``model``, ``fit_delay``...).
    training : dict, optional
        Values of :data:`OPTIONS` (``snr``, ``n_signals``, ``prior``, ``ensemble``...).
    on_start : callable, optional
        Called with a one-line description once the inputs are checked.
    **inputs
        The workflow's acquisition inputs (``bval=``, ``time=``, ``aif=``...).

    Returns
    -------
    TrainOutcome

    Raises
    ------
    QMRIInputError
        Bad inputs or options (one line); nothing is written.
    OutputExistsError
        An output exists and ``force`` is False.
    """
    from qmri.resultset import refuse_existing
    from qmri.workflows import WORKFLOWS

    t0 = time.perf_counter()
    if not trainable(model_cls):
        raise QMRIInputError(f"qmri train: no network estimator for {model_cls.__name__}")
    wf = WORKFLOWS[model_cls.workflow]
    inputs = resolve(wf.protocol_inputs(model_cls), inputs, f"qmri train {model_cls.command}")
    opts = resolve(OPTIONS, training or {}, f"qmri train {model_cls.command}")
    model_opts = dict(resolve(model_cls.options, model_options or {}, model_cls.__name__))
    if bounds:
        model_opts["bounds"] = bounds
    model = wf.protocol_model(model_cls, inputs, model_opts)
    if "dnn" not in type(model).methods:
        raise QMRIInputError(f"qmri train: no network estimator for {type(model).__name__}")
    out = Path(out)
    png = out.with_suffix(".png")
    refuse_existing([out] + ([png] if plot else []), force)
    if on_start is not None:
        on_start(f"{model.describe('dnn')}; {opts['n_signals']} simulated signals, SNR {opts['snr']}, "
                 f"{opts['ensemble']} network(s)")
    trained = train(model, n=opts["n_signals"], snr=opts["snr"], prior=parse_bounds(opts["prior"]) or None,
                    ensemble=opts["ensemble"], epochs=opts["epochs"], seed=opts["seed"],
                    data_consistency=opts["data_consistency"], device=opts["device"],
                    progress=progress)
    written = [trained.save(out, force=force)]
    if plot:
        plot_training(trained, png)
        written.append(png)
    return TrainOutcome(trained, written, time.perf_counter() - t0)


def plot_training(trained, path) -> Path:
    """PNG of each network's training and validation loss per epoch (log scale), best epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qmri import io

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, h in enumerate(trained.histories):
        epochs = range(1, len(h["val_loss"]) + 1)
        line = ax.plot(epochs, h["train_loss"], "-", lw=1, label=f"network {k + 1} training")[0]
        ax.plot(epochs, h["val_loss"], "--", lw=1, color=line.get_color(), label=f"network {k + 1} validation")
        ax.axvline(h["best_epoch"], color=line.get_color(), lw=0.5, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    c = trained.contract
    ax.set_title(f"{c['model']} ({c['signal_model']}), {c['training'].get('mode')}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path

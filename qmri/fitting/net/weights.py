"""Trained networks as files with a contract, and their estimates as a :class:`~qmri.fitting.FitResult`.

A weights file (``torch.save`` of plain data, read back with ``weights_only=True``) holds:

``contract``
    What the networks were trained for and how: the model class and declaration
    (``signal_model``), its parameters, the **protocol** (:meth:`~qmri.models.network.Network.protocol`:
    b-values, gradient directions or frame times), the output **ranges**
    (:meth:`~qmri.models.network.Network.bounds`), the **training** (mode, data, SNR range,
    prior, seeds, epochs) and the qmri and torch versions.
``architecture``, ``networks``, ``histories``
    The body's keywords, the state of each network of the ensemble and its loss curves.

:meth:`Trained.check` refuses a model whose declaration, protocol or ranges differ, with a one-line
:class:`~qmri.errors.QMRIInputError`. Networks shipped with qmri (``pretrained/*.pt``, package
data made by ``tools/make_pretrained.py``) are found by :func:`builtin`.
"""

from __future__ import annotations

import functools
import io as _io
import json
import math
from importlib import resources
from pathlib import Path

import numpy as np

from qmri import __version__, io
from qmri.errors import OutputExistsError, QMRIInputError
from qmri.fitting.net.data import voxel_inputs
from qmri.fitting.net.pilot import with_pilot
from qmri.fitting.result import STATUS_CONVERGED, STATUS_FAILED, FitResult

FORMAT = "qmri-network"
FORMAT_VERSION = 1


def contract(model, training: dict) -> dict:
    """The contract of networks trained for ``model`` as ``training`` describes (JSON-able)."""
    import torch

    lo, hi = model.network.bounds()
    names = model.spec.names
    c = {"model": type(model).__name__, "signal_model": model.spec.name, "parameters": list(names),
         "protocol": {k: np.asarray(v, dtype=np.float64).tolist() for k, v in model.network.protocol().items()},
         "bounds": {k: [float(a), float(b)] for k, a, b in zip(names, lo, hi)},
         "training": training, "qmri_version": __version__, "torch_version": str(torch.__version__)}
    return json.loads(json.dumps(c, default=float))  # plain types only: the file loads with weights_only=True


def _short(a: np.ndarray) -> str:
    if a.ndim != 1:
        return f"an array of shape {a.shape}"
    text = ", ".join(f"{v:g}" for v in (a if a.size <= 8 else a[:6]))
    return f"{text}{f', ..., {a[-1]:g}' if a.size > 8 else ''} ({a.size} values)"


class Trained:
    """An ensemble of trained networks with its contract.

    Parameters
    ----------
    networks : list of qmri.fitting.net.networks.Network
    architecture : dict
    contract : dict
        See :func:`contract`.
    histories : list of dict
        Loss curves of each network.
    source : str
        Where the networks come from (a file name), for messages.
    """

    def __init__(self, networks, architecture: dict, contract: dict, histories: list, source: str = ""):
        self.networks = list(networks)
        self.architecture = dict(architecture)
        self.contract = contract
        self.histories = list(histories)
        self.source = source

    @property
    def n_networks(self) -> int:
        return len(self.networks)

    @property
    def reads_estimates(self) -> bool:
        """Whether the networks read each signal's least-squares estimate beside it (trained on a
        pilot fit, :mod:`qmri.fitting.net.pilot`; the contract's training ``reads`` is ``"lsq"``)."""
        return self.contract["training"].get("reads") == "lsq"

    # Files --------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The weights file's content: the same training gives the same bytes (the training's
        wall-clock seconds stay in memory, out of the file)."""
        import torch

        buf = _io.BytesIO()
        histories = [{k: v for k, v in h.items() if k != "seconds"} for h in self.histories]
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "contract": self.contract,
                    "architecture": self.architecture, "networks": [n.state_dict() for n in self.networks],
                    "histories": histories}, buf)
        return buf.getvalue()

    def save(self, path, *, force: bool = False) -> Path:
        """Write the weights file atomically.

        Raises
        ------
        OutputExistsError
            ``path`` exists and ``force`` is False.
        """
        path = Path(path)
        if path.exists() and not force:
            raise OutputExistsError(f"{path} exists; use --force to overwrite")
        data = self.to_bytes()
        with io.atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return path

    @classmethod
    def load(cls, path) -> "Trained":
        """Read a weights file.

        Raises
        ------
        QMRIInputError
            Missing file, not a qmri weights file, or one that does not follow the format: a
            missing or mistyped field, no network, tensors of other names or shapes than the
            architecture builds, non-finite values (one line naming the file and the field).
        """
        import torch

        path = Path(path)
        if not path.is_file():
            raise QMRIInputError(f"weights file {path} not found")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a file that is not its own
            raise QMRIInputError(f"{path}: not a qmri weights file ({type(exc).__name__})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise QMRIInputError(f"{path}: not a qmri weights file")
        if d.get("format_version") != FORMAT_VERSION:
            raise QMRIInputError(f"{path}: weights format version {d.get('format_version')}, this qmri reads "
                                 f"{FORMAT_VERSION}")
        _check_schema(d, path)
        nets = [_network(d["architecture"], state, f"{path}: networks[{i}]") for i, state in enumerate(d["networks"])]
        return cls(nets, d["architecture"], d["contract"], d["histories"], source=str(path))

    # Contract -----------------------------------------------------------------------------------
    def check(self, model) -> None:
        """Refuse ``model`` unless it is the model, protocol and ranges the networks were trained for.

        Raises
        ------
        QMRIInputError
            One line naming the file and the first difference.
        """
        c = self.contract
        where = self.source or "network"
        if (c["model"], c["signal_model"]) != (type(model).__name__, model.spec.name):
            raise QMRIInputError(f"{where}: trained for {c['model']} ({c['signal_model']}), not for "
                                 f"{type(model).__name__} ({model.spec.name})")
        proto = model.network.protocol()
        for label in sorted(set(proto) | set(c["protocol"])):
            if label not in proto or label not in c["protocol"]:
                raise QMRIInputError(f"{where}: protocol entries differ ({label!r})")
            a = np.asarray(proto[label], dtype=np.float64)
            b = np.asarray(c["protocol"][label], dtype=np.float64)
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-6, atol=1e-9 * max(1.0, float(np.abs(b).max()))):
                raise QMRIInputError(f"{where}: trained for {label} {_short(b)}, the data have {_short(a)}; "
                                     "train a network for this protocol (qmri train)")
        lo, hi = model.network.bounds()
        for name, a, b in zip(model.spec.names, lo, hi):
            ca, cb = c["bounds"][name]
            if not (np.isclose(a, ca) and np.isclose(b, cb)):
                raise QMRIInputError(f"{where}: trained with {name} in [{ca:g}, {cb:g}], the model has [{a:g}, {b:g}] "
                                     "(use the bounds it was trained with, or train with these)")

    def describe(self) -> dict:
        """Provenance: the contract's training record, versions and the loss curves' summary."""
        c = self.contract
        return {"network_source": self.source or "trained for this fit", "network_training": c["training"],
                "networks": self.n_networks,
                "network_versions": {"qmri": c["qmri_version"], "torch": c["torch_version"]},
                "network_epochs": [h.get("epochs_run") for h in self.histories],
                "network_val_loss": [min(h["val_loss"]) if h.get("val_loss") else None for h in self.histories]}

    # Estimates ----------------------------------------------------------------------------------
    def estimate(self, model, Y, C, device: str = "cpu") -> FitResult:
        """Estimates for signals ``Y`` (n, m) with covariates ``C`` (n, k) or None.

        Each network's parameters are decoded through the model's torch twin; the estimate is the
        ensemble mean of the parameters, completed by the model (amplitude scaled back, derived
        outputs); ``rmse`` and ``r2`` are those of its decoded signal. With more than one network,
        ``<output>_sd`` is the standard deviation over the networks of each completed output.
        Status: converged (0) for every voxel with finite normalised signals and finite estimates
        (parameters and fit quality), else failed (2, NaN). Networks trained on a pilot fit
        (:mod:`qmri.fitting.net.pilot`) give each voxel's ``lsq`` estimate, fitted here first, for
        the parameters their contract's training lists in ``lsq_for``; those trained on an ``lsq``
        pilot (:attr:`reads_estimates`) also read it.
        """
        from qmri.fitting.net.training import predict

        inputs, scale, good = voxel_inputs(model, Y, C)
        lsq_for = self.contract["training"].get("lsq_for", [])
        read = with_pilot(model, inputs, Y, C, scale) if self.reads_estimates or lsq_for else inputs
        P_all = predict(self.networks, read if self.reads_estimates else inputs, device)
        for name in lsq_for:  # where lsq was closer (pilot training)
            P_all[:, :, model.spec.names.index(name)] = read.estimates[:, model.spec.names.index(name)]
        res = self._result(model, P_all.mean(axis=0), inputs, scale, good, quality=True)
        if self.n_networks > 1:
            members = [self._result(model, P, inputs, scale, good, quality=False) for P in P_all]
            for name in list(res.params):
                res.params[f"{name}_sd"] = np.std([m.params[name] for m in members], axis=0, ddof=1)
        return res

    @staticmethod
    def _result(model, P, inputs, scale, good, quality: bool) -> FitResult:
        from qmri.fitting.net.training import residual_sum_of_squares

        n, m = inputs.signals.shape
        good = good & np.all(np.isfinite(P), axis=1)
        rmse = np.zeros(n)
        r2 = np.zeros(n)
        if quality:
            y = inputs.signals
            ssr = residual_sum_of_squares(model, P, inputs)
            sst = np.sum(np.square(y - y.mean(axis=1, keepdims=True)), axis=1, dtype=np.float64)
            rmse = np.sqrt(ssr / m)
            with np.errstate(divide="ignore", invalid="ignore"):
                r2 = np.where(sst > 0, 1.0 - ssr / sst, np.nan)
        res = FitResult(params={k: P[:, j].copy() for j, k in enumerate(model.spec.names)},
                        status=np.where(good, STATUS_CONVERGED, STATUS_FAILED).astype(np.int8),
                        n_iter=np.zeros(n, np.int32), rmse=rmse, r2=r2)
        if quality:
            good = good & np.isfinite(rmse)
        model.complete(res, scale, good)
        finite = np.all([np.isfinite(res.params[k]) for k in model.spec.names if k in res.params], axis=0)
        if np.any(good & ~finite):
            res.mark_failed(good & ~finite)
        return res


def _field(d: dict, key: str, types, where: str):
    """``d[key]``, refused unless present and of ``types``."""
    if not isinstance(d, dict) or key not in d:
        raise QMRIInputError(f"{where}: field {key!r} missing")
    v = d[key]
    types = types if isinstance(types, tuple) else (types,)
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in types):
        kinds = " or ".join(t.__name__ for t in types)
        raise QMRIInputError(f"{where}: field {key!r} must be {kinds}, got {type(v).__name__}")
    return v


def _check_schema(d: dict, path) -> None:
    """Refuse a weights file whose plain fields do not follow the format (see the module's docstring)."""
    c = _field(d, "contract", dict, f"{path}")
    for key in ("model", "signal_model", "qmri_version", "torch_version"):
        _field(c, key, str, f"{path}: contract")
    _field(c, "training", dict, f"{path}: contract")
    names = _field(c, "parameters", list, f"{path}: contract")
    if not names or not all(isinstance(n, str) for n in names):
        raise QMRIInputError(f"{path}: contract: 'parameters' must be a non-empty list of names")
    for label, values in _field(c, "protocol", dict, f"{path}: contract").items():
        try:
            ok = np.all(np.isfinite(np.asarray(values, dtype=np.float64)))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise QMRIInputError(f"{path}: contract: protocol {label!r} must be finite numbers")
    bounds = _field(c, "bounds", dict, f"{path}: contract")
    for name in names:
        pair = _field(bounds, name, list, f"{path}: contract: bounds")
        if len(pair) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                     for v in pair) or not pair[0] < pair[1]:
            raise QMRIInputError(f"{path}: contract: bounds of {name} must be two finite numbers, lower < upper")
    arch = _field(d, "architecture", dict, f"{path}")
    if _field(arch, "kind", str, f"{path}: architecture") not in ("parameters", "temporal"):
        raise QMRIInputError(f"{path}: architecture: unknown kind {arch['kind']!r} (parameters or temporal)")
    for key, v in arch.items():
        if key != "kind" and (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)):
            raise QMRIInputError(f"{path}: architecture: {key!r} must be a finite number, got {v!r}")
    nets = _field(d, "networks", list, f"{path}")
    if not nets:
        raise QMRIInputError(f"{path}: no network in field 'networks'")
    histories = _field(d, "histories", list, f"{path}")
    for i, h in enumerate(histories):
        if not isinstance(h, dict):
            raise QMRIInputError(f"{path}: histories[{i}] must be a dict")
        losses = h.get("val_loss")
        if losses is not None and not (isinstance(losses, list)
                                       and all(isinstance(v, (int, float)) for v in losses)):
            raise QMRIInputError(f"{path}: histories[{i}]: 'val_loss' must be a list of numbers")
    for i, state in enumerate(nets):
        where = f"{path}: networks[{i}]"
        if not isinstance(state, dict):
            raise QMRIInputError(f"{where} must be a dict of tensors")
        for key in ("lower", "span", "in_mean", "in_scale"):
            _field(state, key, _tensor_type(), where)
        for key in ("lower", "span"):
            if tuple(state[key].shape) != (len(names),):
                raise QMRIInputError(f"{where}: {key!r} has shape {tuple(state[key].shape)}, the contract names "
                                     f"{len(names)} parameters")
        for key in ("span", "in_scale"):
            if not bool((state[key] > 0).all()):
                raise QMRIInputError(f"{where}: {key!r} must be positive")
    # each hidden layer has tensors of its own: a larger depth cannot be these networks' (and would
    # only make building the network to compare with take long)
    depth = arch.get("depth", 1)
    if depth != int(depth) or not 1 <= depth <= min(len(s) for s in nets):
        raise QMRIInputError(f"{path}: architecture: 'depth' {depth!r} is not a layer count of these networks")


def _tensor_type():
    import torch

    return torch.Tensor


def _network(architecture: dict, state: dict, where: str):
    """The network of one entry of ``networks``, its tensors checked against what the architecture
    builds (names, shapes: compared on torch's ``meta`` device first, so that an architecture asking
    for huge layers allocates nothing) and for finite values."""
    import torch

    from qmri.fitting.net.networks import Network

    def build():
        return Network(architecture, state["lower"], state["lower"] + state["span"], state["in_mean"],
                       state["in_scale"])

    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    except (TypeError, ValueError, RuntimeError) as exc:
        raise QMRIInputError(f"{where}: the architecture does not build a network ({exc})") from None
    for key, shape in expected.items():
        value = _field(state, key, torch.Tensor, where)
        if key in ("lower", "span", "in_mean", "in_scale"):
            continue  # the buffers are the file's own
        if tuple(value.shape) != shape:
            raise QMRIInputError(f"{where}: {key!r} has shape {tuple(value.shape)}, the architecture needs {shape}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise QMRIInputError(f"{where}: unknown field {extra[0]!r}")
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise QMRIInputError(f"{where}: {key!r} holds NaN or infinite values")
    net = build()
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise QMRIInputError(f"{where}: {str(exc).splitlines()[0]}") from None
    return net.eval()


def builtin_paths() -> list[Path]:
    """The weights files shipped with qmri (package data)."""
    folder = resources.files("qmri.fitting.net").joinpath("pretrained")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".pt")) if folder.is_dir() else []


def builtin(model) -> Trained:
    """The shipped networks trained for ``model``'s declaration, protocol and ranges.

    Raises
    ------
    QMRIInputError
        None matches (the message lists what is shipped).
    """
    shipped = []
    for path in builtin_paths():
        stat = path.stat()
        t = _shipped(str(path), stat.st_mtime_ns, stat.st_size)
        try:
            t.check(model)
            return t
        except QMRIInputError:
            shipped.append(f"{path.stem} ({t.contract['signal_model']})")
    raise QMRIInputError(f"no network shipped with qmri is trained for {type(model).__name__} "
                         f"({model.spec.name}) with this protocol and these bounds (shipped: "
                         f"{', '.join(shipped) or 'none'}); train one with qmri train")


@functools.lru_cache(maxsize=None)
def _shipped(path: str, mtime_ns: int, size: int) -> Trained:
    """A shipped weights file, read once per process and version of the file (reading all of them took
    about 0.1 s, twice per fit: a large share of a fit's time at 10⁶ voxels/s)."""
    return Trained.load(path)


def load(weights, model) -> Trained:
    """The networks named by ``weights`` (a file, or ``"builtin"``), checked against ``model``.

    Raises
    ------
    QMRIInputError
        Missing or foreign file; another model, protocol or ranges.
    """
    t = builtin(model) if str(weights) == "builtin" else Trained.load(weights)
    t.check(model)
    return t

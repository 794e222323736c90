"""The torch networks of the network estimator: inputs standardised, a body, outputs bounded.

Two bodies, chosen by what the model declares (:meth:`qmri.models.network.Network.channels`):

* :class:`ParameterNets` (signals only): one fully connected sub-network per parameter, each with
  ``depth`` hidden layers of ``width`` units, batch normalisation, ELU and dropout: the "parallel"
  design of IVIM-NET_optim (Kaandorp et al., MRM 2021;86:2250, doi:10.1002/mrm.28852), which
  decorrelates the parameters' errors (e.g. D* and f). The sub-networks run together as batched
  matrix products.
* :class:`TemporalNet` (signals with shared curves such as the AIF): 1-D convolutions over time
  on the channels (signal, curves), then fully connected layers (a temporal network in the spirit
  of DCE-NET, Ottens et al., Med Image Anal 2022;80:102512, which feeds the AIF so that one network
  serves any AIF).

Every network ends in a scaled sigmoid over its ranges (:meth:`qmri.models.network.Network.bounds`),
for the per-parameter networks widened by :data:`MARGIN` on each side,
``p = lower + (upper - lower) · ((1 + 2m) sigmoid(z) - m)``, then clipped to the ranges (with the
gradient passed straight through): outputs always lie within them, and values near a bound are
still learnt with a useful gradient.

This module imports torch: it is imported only when a network is used.
"""

from __future__ import annotations

import math

import torch
from torch import nn


#: Each range is widened by this fraction of it on both sides before the sigmoid and the output
#: clipped back to the range, so that values near a bound sit on the steep part of the sigmoid
#: (IVIM-NET_optim widens its ranges by 30%, Kaandorp et al. 2021).
MARGIN = 0.3


class ParameterNets(nn.Module):
    """``n_params`` fully connected sub-networks on the same input, computed at once.

    Parameters
    ----------
    n_in : int
        Input features (measurements, plus covariates).
    n_params : int
    width : int
        Units per hidden layer of each sub-network.
    depth : int
        Hidden layers per sub-network (>= 1).
    dropout : float
        Dropout probability after each hidden layer (0: none).
    """

    def __init__(self, n_in: int, n_params: int, width: int, depth: int, dropout: float):
        super().__init__()
        self.n_params, self.width = n_params, width
        self.first = nn.Linear(n_in, n_params * width)
        self.hidden = nn.ParameterList()
        self.hidden_bias = nn.ParameterList()
        for _ in range(depth - 1):
            w, b = _grouped(n_params, width, width)
            self.hidden.append(w)
            self.hidden_bias.append(b)
        self.norms = nn.ModuleList(nn.BatchNorm1d(n_params * width) for _ in range(depth))
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out_weight, self.out_bias = _grouped(n_params, width, 1)

    def _block(self, h, k):
        n = h.shape[0]
        h = self.norms[k](h.reshape(n, -1))
        return self.drop(nn.functional.elu(h)).reshape(n, self.n_params, self.width)

    def forward(self, x):
        if not self.training:
            return self._inference(x)
        h = self._block(self.first(x), 0)                                  # (N, P, w)
        for k, (w, b) in enumerate(zip(self.hidden, self.hidden_bias)):
            h = self._block(torch.einsum("npi,pio->npo", h, w) + b, k + 1)
        return torch.einsum("npi,pio->npo", h, self.out_weight)[..., 0] + self.out_bias[:, 0]

    def _folded(self, k):
        """Scale and shift (P, w) of batch normalisation ``k`` in evaluation mode."""
        bn = self.norms[k]
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        return scale.view(self.n_params, self.width), (bn.bias - bn.running_mean * scale).view(self.n_params, self.width)

    def _inference(self, x):
        """The same function in evaluation mode, with batch normalisation folded into the weights and
        the sub-networks laid out (P, N, w) for batched products: fewer, larger operations."""
        P, w = self.n_params, self.width
        a, c = self._folded(0)
        W = (self.first.weight.view(P, w, -1) * a[..., None]).reshape(P * w, -1)
        h = nn.functional.elu(nn.functional.linear(x, W, (self.first.bias.view(P, w) * a + c).reshape(-1)))
        h = h.view(-1, P, w).transpose(0, 1)                               # (P, N, w)
        for k, (wk, bk) in enumerate(zip(self.hidden, self.hidden_bias)):
            a, c = self._folded(k + 1)
            h = nn.functional.elu(torch.baddbmm((bk * a + c)[:, None, :], h, wk * a[:, None, :]))
        return torch.baddbmm(self.out_bias[:, None, :], h, self.out_weight)[..., 0].T


def _grouped(groups: int, n_in: int, n_out: int):
    """Weights (groups, n_in, n_out) and bias (groups, n_out), initialised as ``nn.Linear``."""
    bound = 1.0 / math.sqrt(n_in)
    w = nn.Parameter(torch.empty(groups, n_in, n_out).uniform_(-bound, bound))
    b = nn.Parameter(torch.empty(groups, n_out).uniform_(-bound, bound))
    return w, b


class TemporalNet(nn.Module):
    """1-D convolutions over time on (signal, curves), then fully connected layers.

    A strided convolution (kernel ``2 · stride``) summarises each stretch of the curves into
    ``channels`` features, a second one (kernel 3) mixes neighbouring stretches; the flattened
    features (the frame times are fixed by the protocol, so position is kept) pass two hidden
    layers of ``width`` units (ELU, dropout) to the parameters. Kept small so that training on a
    CPU takes minutes.

    Parameters
    ----------
    n_channels : int
        Input channels (the signal and the shared curves).
    n_times : int
        Time points.
    n_params : int
    width : int
        Hidden units.
    depth : int
        Hidden fully connected layers (>= 1).
    dropout : float
    channels : int
        Convolution channels.
    stride : int
        Stride of the first convolution (time points per feature).
    """

    def __init__(self, n_channels: int, n_times: int, n_params: int, width: int, depth: int, dropout: float,
                 channels: int = 8, stride: int = 3):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(n_channels, channels, 2 * stride, stride=stride, padding=stride),
                                  nn.ELU(), nn.Conv1d(channels, channels, 3, padding=1), nn.ELU(), nn.Flatten())
        n_flat = channels * ((n_times + 2 * stride - 2 * stride) // stride + 1)
        layers, n = [], n_flat
        for _ in range(depth):
            layers += [nn.Linear(n, width), nn.ELU()] + ([nn.Dropout(dropout)] if dropout else [])
            n = width
        self.head = nn.Sequential(*layers, nn.Linear(n, n_params))

    def forward(self, x):
        return self.head(self.conv(x))


class Network(nn.Module):
    """Standardised input, a body, bounded outputs.

    Parameters
    ----------
    architecture : dict
        ``kind`` ("parameters" or "temporal") and the body's keywords (see :func:`build`).
    lower, upper : sequence of float (n_params,)
        Output ranges.
    in_mean, in_scale : array_like
        Input standardisation, ``(x - in_mean) / in_scale``: per feature (n_in,) for
        :class:`ParameterNets`, per channel (n_channels, 1) for :class:`TemporalNet`.
    """

    def __init__(self, architecture: dict, lower, upper, in_mean, in_scale):
        super().__init__()
        self.architecture = dict(architecture)
        a = dict(architecture)
        kind = a.pop("kind")
        self.margin = float(a.pop("margin", 0.0))
        self.body = ParameterNets(**a) if kind == "parameters" else TemporalNet(**a)
        self.register_buffer("lower", torch.as_tensor(lower, dtype=torch.float32))
        self.register_buffer("span", torch.as_tensor(upper, dtype=torch.float32) - self.lower)
        self.register_buffer("in_mean", torch.as_tensor(in_mean, dtype=torch.float32))
        self.register_buffer("in_scale", torch.as_tensor(in_scale, dtype=torch.float32))

    def scaled(self, x):
        """Outputs scaled to (0, 1) within the ranges widened by ``margin`` on each side, (N, n_params)."""
        return torch.sigmoid(self.body((x - self.in_mean) / self.in_scale))

    def within(self, s):
        """Scaled outputs on the scale of the ranges (0 at lower, 1 at upper): ``(1 + 2 margin) s - margin``."""
        return (1.0 + 2.0 * self.margin) * s - self.margin if self.margin else s

    def parameters_from_scaled(self, s):
        """Parameters from scaled outputs, ``lower + (upper - lower) · within(s)``, clipped to the
        ranges when a margin widens them.

        The clipping passes the gradient straight through (its value is the clipped one, its
        gradient that of the unclipped one): an output in the margin still learns from the loss
        on the decoded signal instead of sticking at the bound, where a plain clip has zero
        gradient (self-supervised training then stalled at the bounds, e.g. DCE).
        """
        p = self.lower + self.span * self.within(s)
        if not self.margin:
            return p
        clipped = torch.minimum(torch.maximum(p, self.lower), self.lower + self.span)
        return p + (clipped - p).detach()

    def forward(self, x):
        return self.parameters_from_scaled(self.scaled(x))


def architecture(n_measurements: int, n_covariates: int, n_params: int, n_channels: int, *,
                 width: int | None = None, depth: int = 2, dropout: float = 0.1, margin: float | None = None) -> dict:
    """The default architecture for a model's inputs.

    Signals alone: :class:`ParameterNets` with ``width`` = number of inputs (at least 16, at most
    32, which keeps a 22-parameter DKI network near 250 KB; IVIM-NET uses the number of b-values),
    depth 2, dropout 0.1, outputs over ranges widened by :data:`MARGIN`. Signals with curves:
    :class:`TemporalNet` with 64 hidden units, depth 2, dropout 0.1, outputs over the ranges
    themselves (margin 0: with a margin, self-supervised DCE training on a 960-voxel DCE phantom
    fitted a median R² of 0.50 instead of 0.91).
    """
    if n_channels:
        return {"kind": "temporal", "n_channels": 1 + n_channels, "n_times": n_measurements, "n_params": n_params,
                "width": width or 64, "depth": depth, "dropout": dropout, "margin": 0.0 if margin is None else margin}
    n_in = n_measurements + n_covariates
    return {"kind": "parameters", "n_in": n_in, "n_params": n_params, "width": width or min(max(n_in, 16), 32),
            "depth": depth, "dropout": dropout, "margin": MARGIN if margin is None else margin}


class Stacked:
    """An ensemble of :class:`Network` with :class:`ParameterNets` bodies, in evaluation mode, as one
    set of batched products: the same function as each network's ``forward``, to float32 round-off.

    The batch normalisations are folded into the weights (as :meth:`ParameterNets._inference`
    does) and the ``n_networks × n_params`` sub-networks laid out as groups (G, units, voxels) with
    the voxels last, so that each layer is one batched matrix product over every network at once,
    and the activations are applied in place. The input standardisation stays a step of its own
    (folding it into the weights would cancel catastrophically where a feature barely varies, e.g.
    the normalised signal at the lowest b-value, whose scale is floored at 1e-6). Build it with :meth:`of`, which gives None for networks it does not cover (another
    body, another architecture).

    Parameters
    ----------
    in_mean, in_scale : Tensor (n_networks, n_in, 1)
        Input standardisation of each network.
    first_weight : Tensor (n_networks, P·w, n_in)
    first_bias : Tensor (n_networks, P·w, 1)
    hidden : list of (Tensor (G, w, w), Tensor (G, w, 1))
        Weight (output units first) and bias of each further hidden layer.
    out_weight : Tensor (G, 1, w)
    out_bias : Tensor (G, 1, 1)
    lower, span : Tensor (n_networks, n_params, 1)
    margin : float
    """

    def __init__(self, in_mean, in_scale, first_weight, first_bias, hidden, out_weight, out_bias, lower, span,
                 margin: float):
        self.in_mean, self.in_scale = in_mean, in_scale
        self.first_weight, self.first_bias = first_weight, first_bias
        self.hidden = list(hidden)
        self.out_weight, self.out_bias = out_weight, out_bias
        self.lower, self.span, self.margin = lower, span, float(margin)

    @classmethod
    @torch.no_grad()
    def of(cls, networks) -> "Stacked | None":
        """The stacked form of ``networks`` (a list of :class:`Network`), or None unless all have
        :class:`ParameterNets` bodies of one architecture."""
        if not networks or any(not isinstance(n.body, ParameterNets) or n.architecture != networks[0].architecture
                               for n in networks):
            return None
        firsts, biases, hidden, outs, out_biases = [], [], [], [], []
        for net in networks:
            body = net.body
            P, w = body.n_params, body.width
            a, c = body._folded(0)                                            # (P, w)
            firsts.append((body.first.weight.view(P, w, -1) * a[..., None]).reshape(P * w, -1))
            biases.append((body.first.bias.view(P, w) * a + c).reshape(-1, 1))
            layers = []
            for k, (wk, bk) in enumerate(zip(body.hidden, body.hidden_bias)):
                a, c = body._folded(k + 1)
                layers.append(((wk * a[:, None, :]).transpose(1, 2), (bk * a + c)[..., None]))
            hidden.append(layers)
            outs.append(body.out_weight.transpose(1, 2))                      # (P, 1, w)
            out_biases.append(body.out_bias[..., None])                       # (P, 1, 1)
        stack = [(torch.cat([h[k][0] for h in hidden]).contiguous(), torch.cat([h[k][1] for h in hidden]))
                 for k in range(len(hidden[0]))]
        return cls(torch.stack([n.in_mean for n in networks])[..., None],
                   torch.stack([n.in_scale for n in networks])[..., None], torch.stack(firsts), torch.stack(biases), stack, torch.cat(outs).contiguous(),
                   torch.cat(out_biases), torch.stack([n.lower for n in networks])[..., None],
                   torch.stack([n.span for n in networks])[..., None], networks[0].margin)

    def to(self, device) -> "Stacked":
        """A copy on ``device``."""
        return Stacked(self.in_mean.to(device), self.in_scale.to(device), self.first_weight.to(device), self.first_bias.to(device),
                       [(w.to(device), b.to(device)) for w, b in self.hidden], self.out_weight.to(device),
                       self.out_bias.to(device), self.lower.to(device), self.span.to(device), self.margin)

    def __call__(self, x):
        """Parameters (n_networks, n_params, N) of inputs ``x`` (N, n_in): each network's ``forward``."""
        G, w = self.out_weight.shape[0], self.out_weight.shape[2]
        z = (x.T - self.in_mean) / self.in_scale                            # (n_networks, n_in, N)
        h = nn.functional.elu_(torch.baddbmm(self.first_bias, self.first_weight, z)).view(G, w, -1)
        for wk, bk in self.hidden:
            h = nn.functional.elu_(torch.baddbmm(bk, wk, h))
        s = torch.sigmoid_(torch.baddbmm(self.out_bias, self.out_weight, h))  # (G, 1, N)
        s = s.view(self.lower.shape[0], self.lower.shape[1], -1)
        if self.margin:
            s = s.mul_(1.0 + 2.0 * self.margin).sub_(self.margin)
        p = torch.addcmul(self.lower, self.span, s)
        if self.margin:
            p = torch.minimum(torch.maximum(p, self.lower), self.lower + self.span)
        return p

"""The network facet: what the network estimators (:mod:`qmri.fitting.net`) read of a model.

:class:`Network` is attached to every model class as ``network`` (:class:`qmri.models.facets.Facet`):
``model.network`` is the facet bound to that model, whose methods give a network's output ranges
(:meth:`~Network.bounds`), the curves it reads beside each voxel (:meth:`~Network.channels`), its
simulated training data (:meth:`~Network.training_models`, :meth:`~Network.sample`,
:attr:`~Network.noise`), what its weights are bound to (:meth:`~Network.protocol`), and the
networks shipped with qmri for the class (:attr:`~Network.pretrained`, :meth:`~Network.recipes`,
read as ``cls.network.recipes()`` by ``tools/make_pretrained.py``).

A family whose hooks differ declares a subclass with the methods it overrides (diffusion models:
``DiffusionNetwork``; full-tensor DKI, trace DKI, DCE: their own, each in its model's module); one
whose values differ declares an instance with other fields (``network = DiffusionNetwork(pretrained=...)``).
Nothing here imports torch; of :mod:`qmri.fitting.net` only its method (:data:`~qmri.fitting.net.method.TRAININGS`,
:data:`~qmri.fitting.net.method.PILOTS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from qmri.fitting.net.method import PILOTS, TRAININGS
from qmri.models.facets import Facet

#: Noise models of simulated training signals (:attr:`Network.noise`).
NOISES = ("rician", "gaussian")


@dataclass(frozen=True)
class Network(Facet):
    """The hooks of the network estimators, bound to a model (``model.network``).

    The defaults suit a model with finite bounds, magnitude signals and no curves shared by the
    voxels, bound to its acquisition array ``acq``.

    Attributes
    ----------
    noise : {"rician", "gaussian"}
        Noise of the simulated signals that train a network: ``"rician"`` (magnitude images,
        default) or ``"gaussian"`` (e.g. DCE concentrations); also the noise of the model's
        parametric bootstrap (:class:`qmri.fitting.methods.LeastSquares`), of its network CRLB and
        of the coverage simulations (:mod:`qmri.validation.coverage`).
    pretrained : mapping or None
        Training keywords (``n``, ``snr``, ``ensemble`` of :func:`qmri.fitting.net.train`) of the
        network shipped for the class's phantom (:meth:`recipes`); None (default): none is shipped.
    training : {"self", "pilot"}
        How ``--method dnn`` trains networks for a fit given no weights (its ``--training``
        default): ``"self"`` (default) self-supervised on the voxels
        (:func:`qmri.fitting.net.method.train_on_voxels`), ``"pilot"`` supervised on signals
        simulated from a pilot fit of the voxels (:mod:`qmri.fitting.net.pilot`; DCE, IVIM).
    pilot : {"lsq", "self"}
        The estimator of that pilot fit: ``"lsq"`` (default) the least-squares method, whose
        estimate the network then also reads (DCE), or ``"self"`` a self-supervised network trained
        on the voxels (IVIM: least squares scatters D* and f too widely to serve as a prior).

    Raises
    ------
    ValueError
        ``noise`` not one of :data:`NOISES`, ``training`` not one of :data:`TRAININGS`, ``pilot``
        not one of :data:`PILOTS` (a declaration error).
    """

    noise: str = "rician"
    pretrained: Mapping | None = None
    training: str = "self"
    pilot: str = "lsq"

    def __post_init__(self):
        if self.noise not in NOISES:
            raise ValueError(f"Network noise must be one of {NOISES}, got {self.noise!r}")
        if self.training not in TRAININGS:
            raise ValueError(f"Network training must be one of {TRAININGS}, got {self.training!r}")
        if self.pilot not in PILOTS:
            raise ValueError(f"Network pilot must be one of {PILOTS}, got {self.pilot!r}")

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Ranges ``(lower, upper)``, each (n_params,) in the units of the ``spec`` parameters, into
        which a network maps its outputs (a scaled sigmoid) and from which simulated training
        parameters are drawn; default the model's bounds. A model with infinite bounds overrides
        this with finite ranges."""
        return self.model.lower, self.model.upper

    def channels(self) -> np.ndarray | None:
        """Curves shared by every voxel that a network reads beside each voxel's signal, shape
        (n_channels, n_measurements) (e.g. the AIF of a DCE model), or None (default): a model with
        channels is fitted by a network over time that takes them as inputs."""
        return None

    def training_models(self, rng) -> list:
        """Models whose acquisitions simulate a network's supervised training signals: their
        ``spec.evaluate(P, acq)`` gives clean signals, their ``normalise`` the network input and
        their ``network.channels()`` the curves; default ``[model]``. (DCE varies the AIF here.)

        Parameters
        ----------
        rng : numpy.random.Generator
        """
        return [self.model]

    def sample(self, n: int, rng, prior: dict | None = None) -> np.ndarray:
        """``n`` parameter vectors for simulated training signals: uniform over :meth:`bounds`,
        with ``prior`` replacing some ranges.

        Parameters
        ----------
        n : int
        rng : numpy.random.Generator
        prior : dict, optional
            ``{name: (low, high)}`` in the parameters' units.

        Returns
        -------
        ndarray, shape (n, n_params)

        Raises
        ------
        QMRIInputError
            A parameter without a finite range (:func:`qmri.simulate.sample_parameters`).
        """
        from qmri.simulate import sample_parameters

        lo, hi = self.bounds()
        return sample_parameters(self.model.spec, n, rng, prior=prior, lower=lo, upper=hi)

    def protocol(self) -> dict:
        """What a trained network is bound to, ``{label: array}`` (a network's weights record it and
        are refused for another); default the acquisition array ``{"acquisition": acq}``."""
        return {"acquisition": np.asarray(self.model.acq)}

    def recipes(self) -> dict:
        """The networks shipped for the class (read through it: ``cls.network.recipes()``):
        ``{file stem: (model factory, training keywords)}``; default one, named after the class's
        own ``command``, for the model bound to the noise-free phantom's acquisition
        (``for_phantom``) when :attr:`pretrained` is set. ``tools/make_pretrained.py`` trains them
        (seed 0, one torch thread) into ``qmri/fitting/net/pretrained/<stem>.pt``."""
        cls = self.owner
        if self.pretrained is None or not cls.__dict__.get("command"):
            return {}
        return {cls.command: (lambda: cls.for_phantom(cls.phantom(snr=np.inf, block=(1, 1, 1))), dict(self.pretrained))}

"""What every diffusion model shares: b-value and b-vector checks, shells, normalisation, and
:class:`DiffusionModel`, the base of the models fitted to a b-value series.

b is in s/mm² and diffusivities in mm²/s at every interface.
"""

from __future__ import annotations

from dataclasses import dataclass
import dataclasses

import numpy as np

from qmri.errors import QMRIInputError
from qmri.fitting.lm import LMOptions
from qmri.models.facets import Demo
from qmri.models.model import Model
from qmri.models.network import Network
from qmri.options import Option


def read_bvals_option(path) -> np.ndarray:
    """Command-line type of ``--bval``: the b-values of an FSL ``.bval`` file (s/mm²)."""
    from qmri import io

    return io.read_bvals(path)

#: b-values at or below this (s/mm²) are treated as b=0 (their b-vectors are ignored); dipy's default
#: (``gradient_table(b0_threshold=50)``); ``--b0-threshold`` of DKI and IVIM changes it.
B0_THRESHOLD = 50.0
#: b-values are grouped into shells after rounding to a multiple of this (s/mm²).
SHELL_ROUNDING = 50.0
#: Largest b-value (s/mm²) read as s/mm²: clinical and preclinical scanners reach about 1e4 s/mm², so a
#: larger one means the file is in s/m² (b × 1e6), as some converters write it.
MAX_PLAUSIBLE_B = 1e5
#: A largest non-zero b-value below this (s/mm²) gives no measurable diffusion weighting (b·D < 0.03
#: for D = 3e-3 mm²/s): the file is in ms/µm² (b / 1000).
MIN_PLAUSIBLE_BMAX = 10.0


def check_bvals(bvals) -> np.ndarray:
    """b-values as a float64 1-D array.

    Raises
    ------
    QMRIInputError
        Not 1-D, empty, non-finite or negative; evidently not in s/mm² (:func:`check_bval_units`).
    """
    b = np.asarray(bvals, dtype=np.float64)
    if b.ndim != 1 or b.size == 0:
        raise QMRIInputError(f"b-values must be a 1-D list, got shape {b.shape}")
    if not np.all(np.isfinite(b)) or np.any(b < 0):
        raise QMRIInputError("b-values must be finite and >= 0 s/mm2")
    return check_bval_units(b)


def check_bval_units(bvals, where: str = "b-values") -> np.ndarray:
    """Refuse b-values that are evidently not in s/mm² (every diffusion model and file workflow calls it).

    There is no override: such b-values are not s/mm² on any scanner, and a file in other units is
    converted by one multiplication (the message says which).

    Parameters
    ----------
    bvals : ndarray (n,)
        b-values, finite and >= 0.
    where : str
        Named in the error (the ``.bval`` file).

    Returns
    -------
    ndarray: ``bvals`` unchanged.

    Raises
    ------
    QMRIInputError
        Largest b above :data:`MAX_PLAUSIBLE_B` (s/m², × 1e6) or non-zero and below
        :data:`MIN_PLAUSIBLE_BMAX` (ms/µm², / 1000).
    """
    b = np.asarray(bvals, dtype=np.float64)
    top = float(b.max()) if b.size else 0.0
    if top > MAX_PLAUSIBLE_B:
        raise QMRIInputError(f"{where}: largest b-value {top:g} is not plausible in s/mm2 (above {MAX_PLAUSIBLE_B:g}); "
                             "the b-values look like s/m2: divide them by 1e6 to give s/mm2")
    if 0 < top < MIN_PLAUSIBLE_BMAX:
        raise QMRIInputError(f"{where}: largest b-value {top:g} s/mm2 gives no diffusion weighting (below "
                             f"{MIN_PLAUSIBLE_BMAX:g}); the b-values look like ms/um2: multiply them by 1000 to give "
                             "s/mm2")
    return b


def shells(bvals, b0_threshold: float = B0_THRESHOLD) -> np.ndarray:
    """b-values rounded to the nearest :data:`SHELL_ROUNDING` s/mm² (b <= ``b0_threshold`` → 0)."""
    b = np.asarray(bvals, dtype=np.float64)
    r = np.round(b / SHELL_ROUNDING) * SHELL_ROUNDING
    return np.where(b <= b0_threshold, 0.0, r)


def n_directions(bvals, bvecs, b0_threshold: float = B0_THRESHOLD) -> int:
    """Distinct (non-collinear, antipodes identified) directions among b > ``b0_threshold`` (s/mm²)."""
    b = np.asarray(bvals, dtype=np.float64)
    g = np.asarray(bvecs, dtype=np.float64)[b > b0_threshold]
    if g.size == 0:
        return 0
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    sign = np.where((g[:, 2] < -1e-9) | ((np.abs(g[:, 2]) <= 1e-9) & (g[:, 1] < 0)), -1.0, 1.0)
    return int(np.unique(np.round(g * sign[:, None], 3), axis=0).shape[0])


def describe_shells(bvals, bvecs, b0_threshold: float = B0_THRESHOLD) -> str:
    """The acquisition in words: ``"63 volumes: 3 b=0, 2 shells (b=1000: 30 directions, b=2000: 30)"``.

    Volumes with b <= ``b0_threshold`` count as b=0; the others are grouped into shells
    (:func:`shells`), each with its number of distinct directions (:func:`n_directions`).
    """
    b = np.asarray(bvals, dtype=np.float64)
    g = np.asarray(bvecs, dtype=np.float64)
    sh = shells(b, b0_threshold)
    values = np.unique(sh[sh > 0])
    counts = [f"b={v:g}: {n_directions(b[sh == v], g[sh == v], b0_threshold)}" for v in values]
    if counts:
        counts[0] += " directions"
    where = f"{values.size} shell{'s' if values.size != 1 else ''} ({', '.join(counts)})"
    return f"{b.size} volumes: {int(np.sum(sh == 0))} b=0, {where}"


def check_bvecs(bvals, bvecs, *, where="b-vectors", b0_threshold: float = B0_THRESHOLD) -> np.ndarray:
    """Unit-normalised b-vectors; raise if a diffusion-weighted one is not of unit length (±1%).

    The directions that were applied are kept for every volume, the low-b ones included (a b = 15
    s/mm² volume is diffusion weighted along its direction, and the DKI design matrix uses it, as
    dipy's does); :data:`B0_THRESHOLD` only decides which volumes count as b = 0 when counting
    directions and shells. A volume at or below the threshold whose vector is not of unit length
    (typically ``0 0 0``) has no known direction: its vector is zero, so a design matrix treats it
    as b = 0.

    Parameters
    ----------
    bvals : array_like (n,), s/mm²
    bvecs : array_like (n, 3)
    where : str
        Named in the error (the file, say).
    b0_threshold : float
        b (s/mm²) at or below which a volume counts as b = 0 (default :data:`B0_THRESHOLD`).

    Returns
    -------
    ndarray (n, 3): unit vectors where the given vector has unit length (±1%), zeros elsewhere
    (possible only for b <= :data:`B0_THRESHOLD`).

    Raises
    ------
    QMRIInputError
        Wrong shape, or a diffusion-weighted vector (b > :data:`B0_THRESHOLD`) whose length is
        not 1 ± 1%.
    """
    b = np.asarray(bvals, dtype=np.float64)
    g = np.asarray(bvecs, dtype=np.float64)
    if g.shape != (b.size, 3):
        raise QMRIInputError(f"{where}: expected {b.size} vectors of 3 components, got shape {g.shape}")
    norms = np.linalg.norm(g, axis=1)
    unit = np.abs(norms - 1.0) <= 1e-2
    bad = (b > b0_threshold) & ~unit
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise QMRIInputError(f"{where}: vector {i} (b={b[i]:g}) has length {norms[i]:.4f}, not 1; "
                             f"{int(bad.sum())} diffusion-weighted vector(s) are not unit length")
    out = np.zeros_like(g)
    out[unit] = g[unit] / norms[unit, None]
    return out


def fsl_bvec_frame(affine) -> np.ndarray:
    """Rotation (3, 3) from the frame of FSL b-vectors to world (scanner) coordinates.

    FSL b-vectors are given along the image axes, with x negated when the voxel-to-world matrix
    has a positive determinant (FSL's radiological voxel convention); MRtrix3 reads them the same
    way. ``M = R F`` with ``R`` the affine's rotation (columns normalised) and ``F = diag(-1, 1, 1)``
    for a positive determinant (identity otherwise).
    """
    A = np.asarray(affine, dtype=np.float64)[:3, :3]
    R = A / np.linalg.norm(A, axis=0, keepdims=True)
    F = np.diag([-1.0, 1.0, 1.0]) if np.linalg.det(A) > 0 else np.eye(3)
    return R @ F


def check_rotation(matrix, what: str) -> np.ndarray:
    """``matrix`` as a (3, 3) rotation (orthonormal to 1e-6, a reflection allowed: FSL's x flip).

    Raises
    ------
    QMRIInputError
        Not a finite (3, 3) array, or not orthonormal.
    """
    M = np.asarray(matrix, dtype=np.float64)
    if M.shape != (3, 3) or not np.all(np.isfinite(M)):
        raise QMRIInputError(f"{what} must be a finite 3 x 3 rotation, got shape {M.shape}")
    if not np.allclose(M @ M.T, np.eye(3), atol=1e-6):
        raise QMRIInputError(f"{what} is not a rotation (its rows are not orthonormal)")
    return M


def normalise_to_lowest_b(Y, bvals):
    """Divide each voxel's signals by its mean signal at the lowest b-value.

    Parameters
    ----------
    Y : ndarray, shape (n, m)
    bvals : ndarray, shape (m,)

    Returns
    -------
    Yn : ndarray (n, m), C-contiguous (NaN rows where the reference is not finite and positive)
    scale : ndarray (n,)
        The divisor (1 where unusable).
    good : ndarray of bool (n,)
    """
    low = bvals == bvals.min()
    s0 = Y[:, low].mean(axis=1)
    good = np.isfinite(s0) & (s0 > 0)
    scale = np.where(good, s0, 1.0)
    Yn = Y / scale[:, None]
    Yn[~good] = np.nan
    return np.ascontiguousarray(Yn), scale, good


def b0_threshold_option(role: str, default: float = B0_THRESHOLD):
    """``--b0-threshold``: b (s/mm²) at or below which a volume counts as b = 0; ``role`` says what that
    does in the model."""
    return Option("b0_threshold", f"b (s/mm2) at or below which a volume counts as b=0: {role}", float, default)


def check_b0_threshold(value) -> float:
    """``value`` as a float >= 0.

    Raises
    ------
    QMRIInputError
        Negative or not finite.
    """
    value = float(value)
    if not (np.isfinite(value) and value >= 0):
        raise QMRIInputError(f"--b0-threshold must be a finite b-value >= 0 s/mm2, got {value:g}")
    return value


def powder_average(data, bvals, bvecs=None, b0_threshold: float = B0_THRESHOLD):
    """Average the volumes of each b-shell (arithmetic mean over directions, as dipy's msdki).

    Parameters
    ----------
    data : ndarray, shape (..., n)
    bvals : array_like, shape (n,)
        b-values in s/mm²; shells are b rounded to :data:`SHELL_ROUNDING` (b <= ``b0_threshold`` → 0).
    bvecs : array_like, optional
        When None, each volume is kept as its own b-value (already trace-weighted images).
    b0_threshold : float
        See :func:`shells`.

    Returns
    -------
    averaged : ndarray, shape (..., n_shells)
    shell_bvals : ndarray, shape (n_shells,)
        Mean actual b-value of each shell (s/mm²), ascending.
    """
    b = check_bvals(bvals)
    data = np.asarray(data)
    if bvecs is None:
        return data, b
    key = shells(b, b0_threshold)
    uniq = np.unique(key)
    avg = np.stack([data[..., key == u].mean(axis=-1) for u in uniq], axis=-1)
    return avg, np.array([b[key == u].mean() for u in uniq])


@dataclass(frozen=True)
class DiffusionNetwork(Network):
    """The network facet of the diffusion models (:class:`qmri.models.network.Network`): networks
    bound to the b-values, training draws that keep a kurtosis term falling with b."""

    def sample(self, n: int, rng, prior: dict | None = None) -> np.ndarray:
        """Training parameters (n, n_params) of the network estimator: uniform as every model's
        (:meth:`qmri.models.network.Network.sample`); with a :attr:`DiffusionModel.kurtosis_pair`
        (D, K), K of each draw is scaled into ``[K_lo, min(K_hi, 3 / (b_max D))]`` (its draw's
        position in the range kept). The term ``exp(-b D + b² D² K / 6)`` has its minimum at
        b = 3 / (D K) and grows beyond it, which tissue does not (Jensen & Helpern, NMR Biomed
        2010;23:698): draws past that point over the protocol's b-values would train the networks on
        signals no tissue gives (with D 5e-3 mm²/s and K 3, a signal at b = 2000 s/mm² of e^40 times
        S0), and the input scaling fitted to them would squash the tissue signals together."""
        P = super().sample(n, rng, prior)
        model = self.model
        if model.kurtosis_pair is None:
            return P
        j_d, j_k = (model.spec.names.index(k) for k in model.kurtosis_pair)
        b_max = float(np.max(model.bvals))
        lower, upper = self.bounds()
        lo, hi = map(float, (prior or {}).get(model.kurtosis_pair[1], (lower[j_k], upper[j_k])))
        if b_max > 0 and hi > lo:
            with np.errstate(divide="ignore"):
                k_max = np.minimum(hi, 3.0 / (b_max * P[:, j_d]))
            P[:, j_k] = lo + (P[:, j_k] - lo) * np.clip((k_max - lo) / (hi - lo), 0.0, 1.0)
        return P

    def protocol(self) -> dict:
        """The b-values (s/mm²) a network is bound to: ``{"b-values (s/mm2)": bvals}``."""
        return {"b-values (s/mm2)": self.model.bvals}


@dataclasses.dataclass(frozen=True)
class DiffusionDemo(Demo):
    """The demo facet of a diffusion model (:class:`~qmri.models.facets.Demo`): ``qmri phantom`` also
    offers the b-values of the block phantom (:meth:`DiffusionModel.phantom`, ``--bval``)."""

    options: tuple = (Option("bvals", "FSL .bval file of the b-values to simulate (default: the phantom's "
                             "protocol)", read_bvals_option, flag="--bval"),)


class DiffusionModel(Model):
    """A model of a b-value series (IVIM, ADC, stretched exponential, trace DKI, ...).

    The constructor binds the b-values (s/mm²), the bounds (``{name: (lower, upper)}`` overriding
    the declared defaults) and the initial guess; signals are normalised per voxel by the mean
    signal at the lowest b-value before fitting (so ``S0`` bounds are relative to it) and ``S0``
    is scaled back in the output. Subclasses set ``spec`` (the declaration) and may set
    :attr:`min_distinct_b` and override :meth:`check_method`; their least-squares method is given
    its start (:class:`~qmri.fitting.methods.LeastSquares`).

    Parameters
    ----------
    bvals : array_like, shape (n_b,)
        b-values in s/mm², in the order of the data's last axis.
    bounds : dict, optional
        ``{name: (lower, upper)}`` overriding the declared bounds.
    initial_guess : dict, optional
        ``{name: value}`` overriding the declared initial guess.
    lm_options : qmri.fitting.LMOptions, optional
        Stopping rules of least-squares fits.

    Raises
    ------
    QMRIInputError
        b-values not 1-D, non-finite or negative; fewer distinct b-values than
        :attr:`min_distinct_b`; bad bounds or initial guess.
    """

    workflow = "diffusion"
    amplitude = "S0"
    #: Fewest distinct b-values (rounded into shells) the model can be fitted with.
    min_distinct_b = 2
    #: Whether the model reads b-vectors (full-tensor models); others fit b-values alone.
    uses_bvecs = False
    #: Rotation from the b-vectors' frame to world coordinates (:func:`fsl_bvec_frame`): a setting of
    #: the models that read b-vectors (:class:`~qmri.models.diffusion.dki.tensor.DKI`), given by the file
    #: workflow from the series' affine; None: the b-vectors' frame.
    bvec_frame = None
    #: Largest b (s/mm²) up to which the model describes tissue signal (None: no such limit), and why
    #: (with its source): the file workflow warns above it and names ``--bmax`` with this value.
    valid_b_max: float | None = None
    valid_b_reason: str = ""
    #: b (s/mm²) the largest b-value should reach for the model's parameters to be told apart (None: no
    #: such need), and why (with its source): named as the likely cause when a fit ends on its bounds.
    needs_b_max: float | None = None
    needs_b_reason: str = ""
    #: Names ``(D, K)`` of a diffusivity and its kurtosis in a tissue term exp(-b D + b² D² K / 6)
    #: (None: the model has none): network training draws keep that term falling with b
    #: (:meth:`DiffusionNetwork.sample`).
    kurtosis_pair: tuple[str, str] | None = None
    network = DiffusionNetwork()

    def __init__(self, bvals, *, bounds=None, initial_guess=None, lm_options: LMOptions | None = None):
        b = check_bvals(bvals)
        n_shells = np.unique(shells(b)).size
        if n_shells < self.min_distinct_b:
            raise QMRIInputError(f"{type(self).__name__} needs at least {self.min_distinct_b} distinct b-values, "
                                 f"got {n_shells}: {sorted(set(shells(b).tolist()))}")
        self.bvals = b
        super().__init__(self.spec, self.design(b), bounds=bounds, initial=initial_guess, lm_options=lm_options)

    def design(self, bvals) -> np.ndarray:
        """The acquisition array of :attr:`spec` for these b-values (s/mm²): (n, 1), the b-values
        (full-tensor DKI: its design matrix, which the b-vectors shape too)."""
        return bvals[:, None]

    @classmethod
    def from_acquisition(cls, bvals, bvecs=None, **options) -> "Model":
        """The model for a series with these b-values (s/mm²) and b-vectors (ignored unless
        :attr:`uses_bvecs`) and the model's declared options; used by the diffusion workflow."""
        return cls(bvals, **options)

    # Phantom and demo ----------------------------------------------------------------------
    demo = DiffusionDemo()

    @classmethod
    def phantom_definition(cls) -> dict | None:
        """The block phantom of this model (see :func:`qmri.simulate.block_phantom`), or None."""
        return None

    @classmethod
    def has_phantom(cls) -> bool:
        return cls.phantom_definition() is not None

    @classmethod
    def phantom(cls, *, snr: float | None = None, seed: int = 0, block=None, bvals=None):
        """A phantom with known parameters (one block of voxels per region of
        :meth:`phantom_definition`), Rician noise at ``snr`` (default the definition's).

        Parameters
        ----------
        snr : float, optional
            S0 / sigma of the Rician noise (``inf``: noise-free).
        seed : int
        block : tuple of 3 int, optional
            Voxels per region (default from the definition).
        bvals : array_like, optional
            b-values (s/mm²) to simulate (default: the definition's protocol).

        Returns
        -------
        qmri.simulate.Phantom

        Raises
        ------
        QMRIInputError
            The model has no phantom; bad SNR, block or b-values.
        """
        from qmri.simulate import bval_text, block_phantom

        d = cls.phantom_definition()
        if d is None:
            raise QMRIInputError(f"{cls.__name__} has no phantom")
        b = np.asarray(d["bvals"] if bvals is None else bvals, dtype=np.float64)
        ph = block_phantom(cls(b), d, snr=d.get("snr", 30.0) if snr is None else snr, seed=seed, block=block)
        ph.acquisition["bvals"] = b.tolist()
        ph.files = {f"{ph.name}.bval": bval_text(b)}
        ph.fit_hint = (f"qmri {cls.command} {{out}}/{ph.name}.nii.gz --bval {{out}}/{ph.name}.bval "
                       "--mask {out}/mask.nii.gz --out-dir FIT")
        return ph

    @classmethod
    def for_phantom(cls, ph) -> "Model":
        """The model bound to a phantom's acquisition."""
        return cls.from_acquisition(ph.acquisition["bvals"], ph.acquisition.get("bvecs"))

    @classmethod
    def settings_before_recorded(cls, provenance: dict) -> dict:
        """Sidecars without ``model_settings``: the recorded b-values (``bvals``, s/mm², as fitted),
        bounds and initial guess."""
        if "bvals" not in provenance:
            raise QMRIInputError(f"{cls.__name__}: the sidecars record no b-values")
        return {"bvals": provenance["bvals"], "bounds": cls.recorded_bounds(provenance, cls.spec),
                "initial_guess": provenance.get("initial_guess")}

    def axis(self):
        return self.bvals, "b (s/mm2)"

    def describe(self, method: str) -> str:
        """One line for the command line: what is fitted to what."""
        return (f"{type(self).__name__} {method}, {self.bvals.size} volumes, b = "
                f"{', '.join(f'{v:g}' for v in np.unique(self.bvals))} s/mm2")

    def signal(self, params) -> np.ndarray:
        """Noise-free signal for parameters given as a dict of scalars or arrays (the declared names):
        :meth:`~qmri.models.model.Model.predict`.

        Returns an array of shape ``broadcast(params).shape + (n_b,)``.
        """
        return self.predict(params)

    def normalise(self, Y, C):
        return normalise_to_lowest_b(Y, self.bvals)

    def provenance(self) -> dict:
        names = self.spec.names
        return {
            **super().provenance(),
            "bvals": self.bvals.tolist(),
            "units_b": "s/mm2",
            "bounds": {n: [float(a), float(b)] for n, a, b in zip(names, self.lower, self.upper)},
            "initial_guess": dict(zip(names, map(float, self.initial))),
            "bounds_note": "S0 bounds are relative to the mean signal at the lowest b-value",
            "reference": self.spec.reference,
        }

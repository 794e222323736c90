"""Diffusion kurtosis imaging: full tensor (:class:`DKI`) and trace / powder DKI (:class:`TraceDKI`).

=================  ==========================================================================
module             holds
=================  ==========================================================================
``design``         design matrix, direction polynomials, constraint directions, signals
``metrics``        scalar maps from the tensors (MD, AD, RD, FA, MK, AK, RK, MKT, KFA)
``constrained``    the constrained fit (``cwls``)
``tensor``         the full-tensor model :class:`DKI` and its methods
``trace``          the trace model :class:`TraceDKI`
``phantom``        the DKI phantom (tissue mixtures with known tensors)
=================  ==========================================================================
"""

from qmri.models.diffusion.dki.design import (apparent_kurtosis, design_matrix, dki_signal, hemisphere,
                                              tensors_from_compartments)
from qmri.models.diffusion.dki.metrics import tensor_maps
from qmri.models.diffusion.dki.tensor import DKI
from qmri.models.diffusion.dki.trace import TraceDKI

__all__ = ["DKI", "TraceDKI", "apparent_kurtosis", "design_matrix", "dki_signal", "hemisphere", "tensor_maps",
           "tensors_from_compartments"]

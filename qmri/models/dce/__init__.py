"""DCE-MRI: pharmacokinetic models, arterial input functions and signal-to-concentration conversion.

================  ===========================================================================
module            holds
================  ===========================================================================
``models``        the declarations of Tofts, extended Tofts, Patlak, 2CXM, 2CUM, AATH (with delay)
``convolution``   the exact O(n) convolution with a piecewise-linear AIF (Numba and torch)
``kernels``       Numba signal and Jacobian kernels; ``twins``: their torch twins
``linear``        linear starting values (integrated model equations)
``model``         :class:`DCE`, the model bound to frame times and an AIF
``aif``           population AIFs (Parker, Georgiou, preclinical), AIF files, ROI AIFs
``relaxation``    SPGR signal, signal <-> concentration
``phantom``       the DCE phantom
================  ===========================================================================
"""

from qmri.models.dce.model import DCE

__all__ = ["DCE"]

"""Signal models, each declared once (see :mod:`qmri.models.base`), and their user-facing classes."""

from qmri.models.base import SIGNAL_MODELS, Model, Parameter, SignalModel
from qmri.models.dce import DCE
from qmri.models.dki import DKI, TraceDKI
from qmri.models.ivim import IVIM
from qmri.models.t1 import VFA

__all__ = ["SIGNAL_MODELS", "Model", "Parameter", "SignalModel", "IVIM", "DKI", "TraceDKI", "DCE", "VFA"]

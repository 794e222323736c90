"""Signal models, each declared once, and the model classes users hold.

Each model has one module that declares it (its :class:`~qmri.models.base.SignalModel`, methods,
command and phantom); importing the module registers it. To add a model, see
``docs/adding-a-model.md``.

=============================  ===========================================  ==================
model                          module                                       command
=============================  ===========================================  ==================
:class:`IVIM`                  ``qmri/models/diffusion/ivim.py``            ``qmri ivim``
:class:`ADC`                   ``qmri/models/diffusion/adc.py``             ``qmri adc``
:class:`StretchedExponential`  ``qmri/models/diffusion/stretched.py``       ``qmri stretched``
:class:`DKI`                   ``qmri/models/diffusion/dki/tensor.py``      ``qmri dki``
:class:`TraceDKI`              ``qmri/models/diffusion/dki/trace.py``       ``qmri dki --trace``
:class:`VFA`                   ``qmri/models/t1.py``                        ``qmri t1``
:class:`DCE`                   ``qmri/models/dce/model.py``                 ``qmri dce``
=============================  ===========================================  ==================
"""

from qmri.models.base import SIGNAL_MODELS, Parameter, SignalModel
from qmri.models.model import COMMANDS, Model

# The registrations: importing a model's module adds it to COMMANDS (in this order) and SIGNAL_MODELS.
from qmri.models.diffusion.ivim import IVIM  # noqa: E402  isort: skip
from qmri.models.diffusion.adc import ADC  # noqa: E402  isort: skip
from qmri.models.diffusion.stretched import StretchedExponential  # noqa: E402  isort: skip
from qmri.models.diffusion.dki import DKI, TraceDKI  # noqa: E402  isort: skip
from qmri.models.t1 import VFA  # noqa: E402  isort: skip
from qmri.models.dce import DCE  # noqa: E402  isort: skip
from qmri.models.dce import aif, relaxation  # noqa: E402  isort: skip

# The network estimator adds itself as method "dnn" of the models it serves (torch is imported only when used).
import qmri.fitting.net  # noqa: E402, F401  isort: skip

__all__ = ["SIGNAL_MODELS", "COMMANDS", "Model", "Parameter", "SignalModel", "IVIM", "ADC", "StretchedExponential",
           "DKI", "TraceDKI", "VFA", "DCE", "aif", "relaxation"]

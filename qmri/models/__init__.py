"""Signal models, each declared once, and the model classes users hold.

Each model has one module that declares it (its :class:`~qmri.models.base.SignalModel`, methods,
command and phantom); importing the module registers it. :data:`MODULES` is the registration: a
model's command name and its module, in display order. Modules are imported when first needed
(``qmri ivim`` imports the IVIM module only); :func:`commands` imports them all. A model reached
through another's command (:class:`TraceDKI`, ``qmri dki --trace``) is declared in that family's
package and registered with it. Every model class is found by its stable id, its class name or a
former name in :data:`MODEL_IDS` (:func:`qmri.models.model.model_class`). To add a model, see
``docs/adding-a-model.md``.

=============================  ===========================================  ==================
model                          module                                       command
=============================  ===========================================  ==================
:class:`IVIM`                  ``qmri/models/diffusion/ivim.py``            ``qmri ivim``
:class:`IVIMKurtosis`          ``qmri/models/diffusion/ivimk.py``           ``qmri ivimk``
:class:`ADC`                   ``qmri/models/diffusion/adc.py``             ``qmri adc``
:class:`StretchedExponential`  ``qmri/models/diffusion/stretched.py``       ``qmri stretched``
:class:`DKI`                   ``qmri/models/diffusion/dki/tensor.py``      ``qmri dki``
:class:`TraceDKI`              ``qmri/models/diffusion/dki/trace.py``       ``qmri dki --trace``
:class:`VFA`                   ``qmri/models/t1.py``                        ``qmri t1``
:class:`DCE`                   ``qmri/models/dce/model.py``                 ``qmri dce``
=============================  ===========================================  ==================
"""

from __future__ import annotations

import importlib

from qmri.models.base import SIGNAL_MODELS, Parameter, SignalModel
from qmri.models.model import Model
from qmri.models.model import COMMANDS as _REGISTERED
from qmri.models.model import MODEL_IDS

#: The registration: command name -> module that declares the model, in display order.
MODULES = {
    "ivim": "qmri.models.diffusion.ivim",
    "ivimk": "qmri.models.diffusion.ivimk",
    "adc": "qmri.models.diffusion.adc",
    "stretched": "qmri.models.diffusion.stretched",
    "dki": "qmri.models.diffusion.dki.tensor",
    "t1": "qmri.models.t1",
    "dce": "qmri.models.dce.model",
}
#: Submodules reached as attributes (``qmri.models.aif``): helpers of the DCE model, not models.
_SUBMODULES = {"aif": "qmri.models.dce.aif", "relaxation": "qmri.models.dce.relaxation"}


def command(name: str) -> type[Model]:
    """The model class of command ``name`` (importing its module only).

    Raises
    ------
    KeyError
        No such command.
    """
    importlib.import_module(MODULES[name])
    return _REGISTERED[name]


def commands() -> dict[str, type[Model]]:
    """Every model class with a command, by command name, in display order (imports every model)."""
    return {name: command(name) for name in MODULES}


def __getattr__(name: str):
    if name == "COMMANDS":
        return commands()
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    commands()  # every model registered, those reached through another's command too (TraceDKI)
    cls = MODEL_IDS.get(name)
    if cls is not None and cls.__name__ == name:
        return cls
    raise AttributeError(f"module 'qmri.models' has no attribute {name!r}")


__all__ = ["SIGNAL_MODELS", "COMMANDS", "MODULES", "Model", "Parameter", "SignalModel", "command", "commands", "IVIM",
           "IVIMKurtosis", "ADC", "StretchedExponential", "DKI", "TraceDKI", "VFA", "DCE", "aif", "relaxation"]

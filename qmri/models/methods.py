"""The estimation methods as objects, under the name the models use: :mod:`qmri.fitting.methods`.

The :class:`Method` base, the generic least-squares method and the declared uncertainty options live
with the fitting code, below the models, so that a method serving many models (the network estimator
of :mod:`qmri.fitting.net`) builds on them without importing a model.
"""

from qmri.fitting.methods import (BOOTSTRAP_BLOCK, BOOTSTRAP_OPTION, CRLB_NAMES, CRLB_OPTIONS, INTERVAL_LEVEL,
                                  INTERVAL_OPTION, SE_OPTION, LeastSquares, Method, Validation, interval_half_width,
                                  noise_level, set_interval, table)

__all__ = ["BOOTSTRAP_BLOCK", "BOOTSTRAP_OPTION", "CRLB_NAMES", "CRLB_OPTIONS", "INTERVAL_LEVEL", "INTERVAL_OPTION",
           "SE_OPTION", "LeastSquares", "Method", "Validation", "interval_half_width", "noise_level", "set_interval",
           "table"]

"""Facets: the parts of a model's declaration that one consumer reads, attached to the model class.

A :class:`~qmri.models.model.Model` is what a fit needs (its signal declaration, acquisition,
bounds and methods). What only one consumer reads lives in a facet attached to the class as an
attribute, as :class:`~qmri.fitting.methods.Validation` is attached to a method: the network
estimators' hooks (``network``), the phantom and demo declaration (``demo``), the command line's
text (``cli``). A family that needs other behaviour declares a subclass of the facet with the
methods it overrides; one that needs other values declares an instance with other fields.

A facet is read through the class or an instance of it: ``model.network`` is the facet bound to
that model (:attr:`Facet.model`, :attr:`Facet.owner`), ``IVIM.network`` to the class alone
(``model`` None), so that a facet's methods read the model they serve without taking it as an
argument.
"""

from __future__ import annotations

import copy


class Facet:
    """Base of every facet: a declaration attached to a model class, bound to the model it is read through.

    Attributes
    ----------
    model : Model or None
        The model instance the facet was read through (None when read through the class).
    owner : type
        The model class it was read through.
    """

    model = None
    owner = None

    def __get__(self, obj, cls):
        bound = copy.copy(self)
        object.__setattr__(bound, "model", obj)  # also for a facet that is a frozen dataclass
        object.__setattr__(bound, "owner", cls)
        return bound

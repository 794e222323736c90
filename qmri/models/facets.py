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
import dataclasses


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


@dataclasses.dataclass(frozen=True)
class Demo(Facet):
    """The phantom and demo declaration of a model, read by ``qmri phantom``, ``qmri demo`` and
    ``qmri validate`` (:mod:`qmri.workflows.demo`, :mod:`qmri.validation`): ``Model.demo``.

    The phantom itself is built by the model (:meth:`~qmri.models.model.Model.phantom`,
    :meth:`~qmri.models.model.Model.for_phantom`); this says what the commands offer and score on it.
    A model whose demo fits other cases, or reports further columns, declares a subclass that
    overrides :meth:`cases` or :meth:`extra`.

    Attributes
    ----------
    options : tuple of qmri.options.Option
        Keywords of :meth:`~qmri.models.model.Model.phantom` beyond ``snr``, ``seed`` and ``block``,
        offered by ``qmri phantom`` (default none).
    parameters : tuple of str
        Parameters whose NRMSE and bias ``qmri demo`` reports (default none).
    phantom : dict
        Keywords of :meth:`~qmri.models.model.Model.phantom` for ``qmri demo`` (e.g. a larger block;
        default none).
    columns : dict of str to str
        What each column of :meth:`extra` means, printed under the demo's table (default none).
    """

    options: tuple = ()
    parameters: tuple[str, ...] = ()
    phantom: dict = dataclasses.field(default_factory=dict)
    columns: dict = dataclasses.field(default_factory=dict)

    def cases(self, ph) -> list:
        """What ``qmri demo`` fits on phantom ``ph``: ``(label, model, data, mask, method)`` tuples;
        default every method on every voxel of the phantom."""
        model = self.owner.for_phantom(ph)
        return [(name, model, ph.data, ph.mask, name) for name in self.owner.methods]

    def extra(self, model, ph, maps, method: str, mask) -> dict:
        """Further ``{column: value}`` cells of a demo row (default none)."""
        return {}


@dataclasses.dataclass(frozen=True)
class CommandText(Facet):
    """The text the command line shows for a model's command: ``Model.cli``.

    The command's name (``Model.command``) and its constructor keywords (``Model.options``) stay on
    the model class: the library reads them too (the registry of commands, cohort configurations,
    the file workflows).

    Attributes
    ----------
    summary : str
        The command's line in ``qmri --help`` and in the README's table of commands.
    description : str
        The description ``qmri <command> --help`` prints.
    """

    summary: str = ""
    description: str = ""

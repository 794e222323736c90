"""A fit checked before it runs (:class:`FitRequest`) and the record of how it ran (:class:`Provenance`).

:meth:`qmri.models.model.Model.request` builds the request once: the method, its options resolved
and checked, every map the fit returns with its kind and unit, the facts of the inputs to record
and the geometry of the data. :meth:`~qmri.models.model.Model.fit` runs it, the file workflow names
its outputs from it (:func:`qmri.workflows.job.plan_fit`) and :meth:`qmri.maps.ParameterMaps.save`
writes the kinds it declared. The provenance every sidecar holds is assembled in one place,
:meth:`Provenance.record`, from the parts the fit gathers.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class FitRequest:
    """One fit, checked and resolved: what :meth:`~qmri.models.model.Model.fit` runs.

    Attributes
    ----------
    model : qmri.models.model.Model
    method : qmri.fitting.methods.Method
    options : dict
        The method's options, resolved (defaults filled in) and checked, without those of the
        Cramér–Rao bounds.
    crlb : dict
        The options of :data:`qmri.fitting.methods.CRLB_OPTIONS` given (``crlb``, ``noise``,
        ``sigma``); empty when none was.
    outputs : dict of str to str
        Every map the fit returns, in order, with its kind (a sidecar's ``Kind``): ``parameter``,
        ``standard_error``, ``crlb``, ``vector`` (several values per voxel: a 4-D image) or
        ``quality``.
    units : dict of str to str
        Unit of each parameter and vector output (``rmse`` in the unit of the fitted data).
    inputs : dict
        Facts of the inputs recorded in the sidecars (files and their checksums, the mask, a
        pipeline's configuration), lower-case ``snake_case`` keys.
    affine : ndarray (4, 4) or None
        Voxel-to-world transform of the data, given to the maps.
    header : nibabel header or None
        Header of the fitted image, kept in the written maps.
    """

    model: object
    method: object
    options: dict
    crlb: dict
    outputs: dict
    units: dict
    inputs: dict = dataclasses.field(default_factory=dict)
    affine: np.ndarray | None = None
    header: object = None

    @property
    def wants_crlb(self) -> bool:
        """Whether Cramér–Rao bound maps were asked for (``crlb=True``)."""
        return bool(self.crlb.get("crlb"))

    def with_inputs(self, inputs: dict | None = None, *, affine=None, header=None) -> "FitRequest":
        """This request with further input facts (merged after the present ones) and, when given, the
        data's geometry."""
        return dataclasses.replace(self, inputs={**self.inputs, **(inputs or {})},
                                   affine=self.affine if affine is None else affine,
                                   header=self.header if header is None else header)


@dataclasses.dataclass
class Provenance:
    """What a fit records in every sidecar, by where each fact comes from; :meth:`record` is the one
    place where they become the maps' provenance (:attr:`qmri.maps.ParameterMaps.provenance`).

    Attributes
    ----------
    fit : dict
        The model and method (ids, description, reference), voxels fitted, seconds, the options given
        and how the Cramér–Rao bounds took the noise level.
    method : dict
        What the method recorded while preparing (a network's training, its device).
    model : dict
        The model's own facts (:meth:`qmri.models.model.Model.provenance`: settings, acquisition,
        bounds, references).
    quality : dict
        Fractions of voxels at a bound, converged and failed.
    inputs : dict
        The inputs' facts (:attr:`FitRequest.inputs`).
    """

    fit: dict
    method: dict
    model: dict
    quality: dict
    inputs: dict

    def record(self) -> dict:
        """The flat provenance (lower-case ``snake_case`` keys): the fit, then the method's, the
        model's, the quality and the inputs' facts (a later part's key replaces an earlier one's)."""
        return {**self.fit, **self.method, **self.model, **self.quality, **self.inputs}

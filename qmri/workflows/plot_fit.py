"""``qmri plot-fit`` from Python: one voxel's measured and fitted signal, the model rebuilt from the maps'
sidecars; the figure is :func:`qmri.plot.draw_curve`."""

from __future__ import annotations

import numpy as np

from qmri import io
from qmri.errors import QMRIInputError
from qmri.maps import ParameterMaps
from qmri.models.model import model_class
from qmri.plot import draw_curve
from qmri.resultset import refuse_existing
from qmri.workflows import workflow


def plot_fit(series, maps_dir, voxel, out, *, prefix: str = "", force: bool = False) -> dict:
    """Measured and fitted signal of one voxel: what ``qmri plot-fit`` draws.

    The maps are read with :meth:`qmri.maps.ParameterMaps.load`; the model is rebuilt from their
    sidecars (:meth:`qmri.models.model.Model.from_provenance`); the voxel's data are taken from the
    series as the fit saw them (the workflow's ``measured``: selected volumes, DCE concentration),
    and the model's :meth:`~qmri.models.model.Model.curve` gives the fitted signal.

    Parameters
    ----------
    series : path
        The fitted 4-D series.
    maps_dir : path
        Folder of the maps (``prefix`` selects among several fits).
    voxel : tuple of 3 int
    out : path
        PNG to write (atomically).
    force : bool
        Overwrite ``out``.

    Returns
    -------
    dict
        The curve (``x``, ``measured``, ``fitted``, labels) and ``values`` (the voxel's parameters).

    Raises
    ------
    QMRIInputError
        Maps that cannot be read or rebuilt, a series not on the maps' grid or with another number
        of volumes than the fit saw, a voxel outside the grid or not fitted.
    """
    refuse_existing([out], force)
    maps = ParameterMaps.load(maps_dir, prefix)
    prov = maps.provenance
    cls = model_class(str(prov.get("model_id") or prov.get("model")))
    model = cls.from_provenance(prov)
    img = io.load_nifti(series, ndim=4, what="series")
    shape = maps.mask.shape
    if tuple(img.shape[:3]) != tuple(shape) or (maps.affine is not None and
                                                not np.allclose(img.affine, maps.affine, atol=1e-3)):
        raise QMRIInputError(f"{series}: not on the grid of the maps in {maps_dir} ({tuple(img.shape[:3])} vs {shape})")
    ijk = tuple(int(i) for i in voxel)
    if any(not 0 <= i < n for i, n in zip(ijk, shape)):
        raise QMRIInputError(f"--voxel {','.join(map(str, ijk))} is outside the grid {shape}")
    if not maps.mask[ijk] or maps.status[ijk] < 0:
        raise QMRIInputError(f"--voxel {','.join(map(str, ijk))} was not fitted (outside the mask)")
    values = np.asarray(io.series_data(img)[ijk[0], ijk[1], ijk[2], :], dtype=np.float64)  # the checked reader
    wf = workflow(cls.workflow)
    y = wf.measured(values, prov, ijk) if wf.measured is not None else values
    if y.shape != (model.n_measurements,):
        raise QMRIInputError(f"{series}: {img.shape[3]} volumes, but the maps in {maps_dir} were fitted to "
                             f"{model.n_measurements} measurements; give the series that was fitted")
    params = {k: float(v[ijk]) for k, v in maps.params.items()}
    cov = model.covariate_maps(shape)
    cov = None if cov is None else cov[np.ravel_multi_index(ijk, shape)]
    curve = model.curve(params, y, cov, prov.get("method"))
    draw_curve(curve, params, maps, ijk, out, series)
    curve["values"] = params
    return curve

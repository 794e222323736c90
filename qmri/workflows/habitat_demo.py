"""The habitat part of ``qmri demo``: simulate the habitat phantom, fit its IVIM and DCE series with
qmri, run the habitat analysis on the maps just fitted and score it against the true sub-regions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qmri import io
from qmri.habitats.files import habitats_from_files
from qmri.habitats.phantom import definition, write_habitat_phantom
from qmri.workflows.dce import fit_dce


def fit_subject(s, out_dir, *, force: bool = False) -> tuple[Path, Path]:
    """Fit one phantom subject: IVIM (``lsq``) on its ROI, Tofts (``lsq``) on its DCE mask; write both
    map sets (with their own grids) to ``out_dir/ivim`` and ``out_dir/dce``."""
    from qmri.models import IVIM

    ivim = IVIM(s.bvals).fit(s.dwi, mask=s.roi)
    a = s.dce_acquisition
    dce = fit_dce(s.dce, s.times, (s.times, s.aif), model="tofts", t10=a["T10"], fa=a["FA"], tr=a["TR"],
                  r1=a["r1"], baseline=a["n_baseline"], mask=s.dce_mask)
    out = Path(out_dir)
    ivim.save(out / "ivim", affine=s.dwi_affine, force=force)
    dce.save(out / "dce", affine=s.dce_affine, force=force)
    return out / "ivim", out / "dce"


def write_cohort_table(path, rows) -> Path:
    """Write the ``qmri habitat --cohort`` table ``id,mask,D,f,Ktrans`` of ``rows`` ``(id, mask, ivim
    folder, dce folder)`` at ``path``, with the paths relative to the table's folder (the rule
    :func:`qmri.habitats.features.read_cohort` reads them by), so the table holds wherever it is read
    from and whatever the current folder was when it was written."""
    path = Path(path)
    lines = ["id,mask,D,f,Ktrans"]
    for sid, mask, ivim, dce in rows:
        cells = [Path(p).relative_to(path.parent).as_posix() for p in (mask, ivim, ivim, dce)]
        lines.append(",".join([sid, *cells]))
    io.write_text(path, "\n".join(lines) + "\n")
    return path


def adjusted_rand(truth, labels, where) -> float:
    """Adjusted Rand index of two label maps over the voxels ``where``."""
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(np.asarray(truth)[where], np.asarray(labels)[where]))


def demo_habitats(out_dir, *, subjects: int = 4, voxels: int | None = None, force: bool = False) -> str:
    """Phantom → fitted maps → habitats; return the table (one row per subject).

    Writes ``phantom/`` (the series and truth), ``fit/<id>/{ivim,dce}`` (the maps), ``cohort.csv``
    (paths relative to its own folder, so the folder can be moved) and ``habitats/`` (the habitat
    outputs with PNGs) under ``out_dir``. ``voxels``: tumour size in diffusion voxels (default the
    phantom's, :func:`qmri.habitats.phantom.habitat_phantom`).

    Raises
    ------
    OutputExistsError
        Outputs exist and ``force`` is False.
    """
    out = Path(out_dir)
    subs = write_habitat_phantom(out / "phantom", subjects=subjects, voxels=voxels, force=force)
    rows = []
    for s in subs:
        ivim, dce = fit_subject(s, out / "fit" / s.id, force=force)
        rows.append((s.id, out / "phantom" / s.id / "roi.nii.gz", ivim, dce))
    write_cohort_table(out / "cohort.csv", rows)
    outcome = habitats_from_files(cohort=out / "cohort.csv", out_dir=out / "habitats", plot=True, force=force)
    names = [r["name"] for r in definition()["regions"]]
    rows = []
    for s, r in zip(subs, outcome.result.subjects):
        where = r.subject.usable
        meaning = [names[int(np.bincount(s.labels[r.labels == h], minlength=len(names) + 1)[1:].argmax())]
                   for h in range(1, outcome.result.model.k + 1)]
        rows.append(f"{s.id:7s} {s.shape_name:10s} {int(where.sum()):6d}  {adjusted_rand(s.labels, r.labels, where):.3f}  "
                    + " | ".join(f"h{h + 1} {100 * st['fraction']:4.1f}% = {m}"
                                 for h, (st, m) in enumerate(zip(r.stats["habitats"], meaning))))
    head = (f"habitat phantom: {len(subs)} tumours, IVIM and DCE fitted by qmri, DCE grid 2x coarser in-plane; "
            f"habitats from the fitted maps ({outcome.seconds:.1f} s)\n{outcome.result.model.settings['method']}, "
            f"k = {outcome.result.model.k}"
            f"{' (auto)' if outcome.result.model.k_selection else ''}, spatial "
            f"{outcome.result.model.settings['spatial']}\nsubject shape       voxels  ARI    habitat fraction = true "
            "sub-region it covers most")
    return head + "\n" + "\n".join(rows)

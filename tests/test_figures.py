"""Figures: the slice grid of --plot (rows = maps with R2 and status, columns = slices, colour bars with
units, orientation labels) and ``qmri plot-fit`` (measured vs fitted signal of one voxel)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from qmri.cli.main import main  # noqa: E402
from qmri.maps import ParameterMaps  # noqa: E402
from qmri.plot import orientation_labels, plot_fit, slice_figure  # noqa: E402


@pytest.fixture(scope="module")
def ivim_fit(tmp_path_factory):
    d = tmp_path_factory.mktemp("fig")
    assert main(["phantom", "ivim", "--out-dir", str(d / "ph"), "--block", "2", "2", "3"]) == 0
    assert main(["ivim", str(d / "ph" / "ivim.nii.gz"), "--mask", str(d / "ph" / "mask.nii.gz"), "--plot",
                 "--slices", "0,2", "--out-dir", str(d / "fit"), "--quiet"]) == 0
    return d


def test_plot_grid_has_the_expected_panels(ivim_fit):
    d = ivim_fit
    png = mpimg.imread(d / "fit" / "maps.png")
    assert png.ndim == 3 and png.shape[0] > png.shape[1]  # 6 rows, 2 columns
    maps = ParameterMaps.load(d / "fit")
    fig, ranges = slice_figure(maps, slices=[0, 2])
    try:
        rows = ["S0", "f", "D", "Dstar", "r2", "status"]
        assert list(ranges) == rows
        images = [ax for ax in fig.axes if ax.images]
        bars = [ax for ax in fig.axes if not ax.images]
        assert len(images) == 12 and len(bars) == 6
        assert [ax.get_title() for ax in images[:2]] == ["z = 0", "z = 2"]
        assert [images[2 * r].get_ylabel() for r in range(6)] == rows
        assert [b.get_ylabel() for b in bars][:4] == ["a.u.", "(no unit)", "mm2/s", "mm2/s"]
        assert [t.get_text() for t in bars[5].get_yticklabels()] == ["outside", "converged", "max-iter", "failed"]
        edges = {t.get_text() for t in images[0].texts}
        assert edges == set(orientation_labels(maps.affine).values()) == {"L", "R", "A", "P"}
        # robust range: 1st-99th percentile over the fitted voxels of every slice
        d_vals = maps["D"][maps.mask]
        assert ranges["D"] == pytest.approx(tuple(np.percentile(d_vals, [1, 99])))
    finally:
        plt.close(fig)


def test_plot_fit_measured_and_fitted(ivim_fit, tmp_path, capsys):
    d = ivim_fit
    out = tmp_path / "v.png"
    assert main(["plot-fit", str(d / "ph" / "ivim.nii.gz"), "--maps", str(d / "fit"), "--voxel", "1,1,0",
                 "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and mpimg.imread(out).shape[2] in (3, 4)
    curve = plot_fit(d / "ph" / "ivim.nii.gz", d / "fit", (1, 1, 0), tmp_path / "w.png")
    data = np.asarray(nib.load(d / "ph" / "ivim.nii.gz").dataobj)[1, 1, 0]
    np.testing.assert_allclose(curve["measured"], data)
    np.testing.assert_allclose(curve["x"], np.loadtxt(d / "ph" / "ivim.bval"))
    v = curve["values"]
    b = curve["x"]
    expect = v["S0"] * (v["f"] * np.exp(-b * v["Dstar"]) + (1 - v["f"]) * np.exp(-b * v["D"]))
    np.testing.assert_allclose(curve["fitted"], expect, rtol=1e-10)
    # the fitted curve reproduces the voxel's R2
    r2 = ParameterMaps.load(d / "fit")["r2"][1, 1, 0]
    ss = np.sum((data - expect) ** 2) / np.sum((data - data.mean()) ** 2)
    assert 1 - ss == pytest.approx(r2, rel=1e-4)


def test_plot_fit_refusals(ivim_fit, tmp_path, capsys):
    d = ivim_fit
    args = ["plot-fit", str(d / "ph" / "ivim.nii.gz"), "--maps", str(d / "fit"), "--out", str(tmp_path / "x.png")]
    assert main(args + ["--voxel", "1,1"]) == 2 and "three integers" in capsys.readouterr().err
    assert main(args + ["--voxel", "99,0,0"]) == 2 and "outside the grid" in capsys.readouterr().err
    mask = np.asarray(nib.load(d / "ph" / "mask.nii.gz").dataobj) > 0
    if not mask.all():
        ijk = np.argwhere(~mask)[0]
        assert main(args + ["--voxel", ",".join(map(str, ijk))]) == 2
        assert "was not fitted" in capsys.readouterr().err


def test_plot_fit_dce_concentration(tmp_path):
    d = tmp_path
    assert main(["phantom", "dce", "--out-dir", str(d / "ph"), "--block", "2", "2", "1"]) == 0
    assert main(["dce", str(d / "ph" / "dce.nii.gz"), "--time", str(d / "ph" / "times.txt"), "--aif",
                 str(d / "ph" / "aif.csv"), "--fa", "30", "--tr", "0.005", "--t10", "1.0", "--baseline", "10",
                 "--model", "etm", "--mask", str(d / "ph" / "mask.nii.gz"), "--out-dir", str(d / "fit"),
                 "--quiet"]) == 0
    maps = ParameterMaps.load(d / "fit")
    ijk = tuple(np.argwhere(maps.mask)[0])
    curve = plot_fit(d / "ph" / "dce.nii.gz", d / "fit", ijk, d / "c.png")
    conc = np.asarray(nib.load(d / "ph" / "dce_conc.nii.gz").dataobj)[ijk]
    assert curve["ylabel"] == "concentration (mM)"
    # the measured curve is the concentration the fit saw; the fit follows it
    assert np.corrcoef(curve["measured"], conc)[0, 1] > 0.95
    resid = curve["measured"] - curve["fitted"]
    r2 = 1 - np.sum(resid ** 2) / np.sum((curve["measured"] - curve["measured"].mean()) ** 2)
    assert r2 == pytest.approx(maps["r2"][ijk], rel=1e-4)


def _saved_titles(monkeypatch):
    """Titles of every figure saved from now on (suptitle and axes titles)."""
    from matplotlib.figure import Figure

    titles, save = [], Figure.savefig

    def savefig(fig, *a, **k):
        titles.append((fig._suptitle.get_text() if fig._suptitle else "", [ax.get_title() for ax in fig.axes]))
        return save(fig, *a, **k)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return titles


def test_figures_name_the_model_method_and_input(ivim_fit, tmp_path, monkeypatch):
    d = ivim_fit
    titles = _saved_titles(monkeypatch)
    assert main(["ivim", str(d / "ph" / "ivim.nii.gz"), "--method", "segmented", "--plot", "--out-dir",
                 str(tmp_path / "fit"), "--quiet"]) == 0
    assert titles[-1][0] == "IVIM segmented: ivim.nii.gz"
    assert main(["plot-fit", str(d / "ph" / "ivim.nii.gz"), "--maps", str(d / "fit"), "--voxel", "1,1,0",
                 "--out", str(tmp_path / "v.png"), "--quiet"]) == 0
    assert titles[-1][1][0].startswith("IVIM lsq: ivim.nii.gz, voxel (1, 1, 0)")


def test_plot_fit_of_another_or_a_truncated_series_is_a_one_line_error(ivim_fit, tmp_path, capsys):
    d = ivim_fit
    img = nib.load(d / "ph" / "ivim.nii.gz")
    short = tmp_path / "short.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[..., :-3], img.affine, img.header), short)
    truncated = tmp_path / "truncated.nii.gz"
    raw = (d / "ph" / "ivim.nii.gz").read_bytes()
    truncated.write_bytes(raw[: len(raw) // 2])
    n = img.shape[3]
    for series, says in ((short, f"{n - 3} volumes, but the maps in {d / 'fit'} were fitted to {n} measurements"),
                         (truncated, "corrupt gzip data")):
        code = main(["plot-fit", str(series), "--maps", str(d / "fit"), "--voxel", "1,1,0",
                     "--out", str(tmp_path / "x.png")])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith(f"qmri: error: {series}: ") and says in err, err
        assert err.count("\n") == 1 and not (tmp_path / "x.png").exists()

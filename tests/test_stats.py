"""``qmri stats``: ROI statistics equal numpy's on a phantom with labels; long and wide tables; errors."""

import csv
import io

import nibabel as nib
import numpy as np
import pytest

from qmri.cli.main import main
from qmri.roistats import label_statistics, read_label_names


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    d = tmp_path_factory.mktemp("stats")
    assert main(["phantom", "ivim", "--out-dir", str(d / "ph"), "--block", "3", "2", "1"]) == 0
    assert main(["ivim", str(d / "ph" / "ivim.nii.gz"), "--mask", str(d / "ph" / "mask.nii.gz"),
                 "--out-dir", str(d / "fit"), "--quiet"]) == 0
    return d


def _rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_numbers_equal_numpy(fitted, tmp_path, capsys):
    d = fitted
    # a label image where one label also covers voxels outside the fit's mask (NaN there)
    lab_img = nib.load(d / "ph" / "labels.nii.gz")
    labels = np.asarray(lab_img.dataobj).astype(int)
    labels[labels == 0] = 3
    nib.save(nib.Nifti1Image(labels.astype(np.int16), lab_img.affine, lab_img.header), tmp_path / "lab.nii.gz")
    (tmp_path / "names.tsv").write_text("index\tname\tcolor\n1\ttumour core\t#ff0000\n3\trim, outer\t#00ff00\n"
                                        "42\tabsent\t#0000ff\n")
    out = tmp_path / "t.csv"
    assert main(["stats", f"{d / 'fit'}:D,f", f"S=%s" % (d / "fit" / "S0.nii.gz"), "--labels",
                 str(tmp_path / "lab.nii.gz"), "--names", str(tmp_path / "names.tsv"), "--out", str(out)]) == 0
    rows = _rows(out.read_text())
    assert list(rows[0]) == ["map", "unit", "label", "name", "count", "volume_ml", "mean", "sd", "median", "q1", "q3",
                             "p10", "p90", "nan_fraction"]
    voxel_ml = float(np.prod(lab_img.header.get_zooms()[:3])) / 1000
    checked = 0
    for r in rows:
        values = np.asarray(nib.load(d / "fit" / f"{ {'S': 'S0'}.get(r['map'], r['map'])}.nii.gz").dataobj, float)
        sel = labels == int(r["label"])
        assert int(r["count"]) == sel.sum()
        if not sel.any():
            assert r["name"] == "absent" and r["mean"] == "nan"
            continue
        v = values[sel]
        fin = v[np.isfinite(v)]
        assert float(r["volume_ml"]) == pytest.approx(sel.sum() * voxel_ml)
        assert float(r["nan_fraction"]) == pytest.approx(1 - fin.size / v.size)
        expect = {"mean": fin.mean(), "sd": fin.std(ddof=1), "median": np.median(fin), "q1": np.percentile(fin, 25),
                  "q3": np.percentile(fin, 75), "p10": np.percentile(fin, 10), "p90": np.percentile(fin, 90)}
        for k, e in expect.items():
            assert float(r[k]) == pytest.approx(e, rel=1e-7), (r["map"], r["label"], k)
        checked += 1
    assert checked == 3 * (len(np.unique(labels)))
    assert {r["name"] for r in rows if r["label"] == "3"} == {"rim, outer"}
    assert any(float(r["nan_fraction"]) > 0 for r in rows if r["label"] == "3")


def test_table_gives_units_and_a_sidecar_describes_its_columns(fitted, tmp_path):
    import json

    d = fitted
    side_units = {n: json.loads((d / "fit" / f"{n}.json").read_text())["Units"] for n in ("D", "Dstar")}
    assert side_units["D"] == "mm2/s"
    out = tmp_path / "roi.csv"
    assert main(["stats", f"{d / 'fit'}:D,Dstar", "--labels", str(d / "ph" / "labels.nii.gz"), "--out", str(out),
                 "--quiet"]) == 0
    assert {r["map"]: r["unit"] for r in _rows(out.read_text())} == side_units
    meta = json.loads((tmp_path / "roi.json").read_text())
    assert meta["MapUnits"] == side_units
    assert set(meta["Columns"]) == set(_rows(out.read_text())[0])
    assert meta["Columns"]["volume_ml"]["Units"] == "mL" and meta["Columns"]["nan_fraction"]["Units"] == "1"
    wide = tmp_path / "wide.csv"
    assert main(["stats", f"{d / 'fit'}:D,Dstar", "--labels", str(d / "ph" / "labels.nii.gz"), "--out", str(wide),
                 "--wide", "--quiet"]) == 0
    meta = json.loads((tmp_path / "wide.json").read_text())
    assert set(meta["Columns"]) == set(_rows(wide.read_text())[0])
    assert meta["Columns"]["D_median"]["Units"] == "mm2/s" and meta["Columns"]["Dstar_p90"]["Units"] == "mm2/s"


def test_binary_names_file_and_a_folder_as_out_are_one_line_errors(fitted, tmp_path, capsys):
    d = fitted
    names = tmp_path / "names.tsv"
    names.write_bytes(bytes(range(128, 256)) * 4)
    base = ["stats", str(d / "fit" / "D.nii.gz"), "--labels", str(d / "ph" / "labels.nii.gz")]
    assert main(base + ["--names", str(names), "--out", str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"qmri: error: {names}: ") and "UTF-8" in err and err.count("\n") == 1
    folder = tmp_path / "existing"
    (folder / "inside").mkdir(parents=True)
    assert main(base + ["--out", str(folder), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"qmri: error: {folder}: is a folder") and err.count("\n") == 1
    assert [p.name for p in folder.iterdir()] == ["inside"]
    assert not (tmp_path / "t.csv").exists()


def test_wide_table_and_stdout(fitted, capsys):
    d = fitted
    assert main(["stats", str(d / "fit" / "D.nii.gz"), "--labels", str(d / "ph" / "labels.nii.gz"),
                 "--out", "-", "--wide"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert list(rows[0])[:5] == ["label", "name", "count", "volume_ml", "D_mean"]
    assert len(rows) == len(np.unique(np.asarray(nib.load(d / "ph" / "labels.nii.gz").dataobj))) - 1


def test_map_on_another_grid_is_refused(fitted, tmp_path, capsys):
    d = fitted
    other = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((2, 2, 2), np.float32), np.eye(4)), other)
    assert main(["stats", str(other), "--labels", str(d / "ph" / "labels.nii.gz"), "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert "other.nii.gz: map other is not on the grid of" in err and "\n" == err[-1] and err.count("\n") == 1
    assert not (tmp_path / "x.csv").exists()


def test_label_statistics_and_names(tmp_path):
    st = label_statistics([1.0, 2.0, np.nan, 4.0, 10.0], [1, 1, 1, 2, 0], ids=[1, 2, 5])
    assert st[1]["count"] == 3 and st[1]["mean"] == 1.5 and st[1]["nan_fraction"] == pytest.approx(1 / 3)
    assert st[2]["count"] == 1 and np.isnan(st[2]["sd"]) and st[5]["count"] == 0
    (tmp_path / "n.tsv").write_text("1\tliver\n2\tspleen\n")
    assert read_label_names(tmp_path / "n.tsv") == {1: "liver", 2: "spleen"}

"""Result sets: the files of a fit appear whole or not at all, whatever stops the run."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from qmri.errors import OutputExistsError, QMRIInputError
from qmri.maps import ParameterMaps
from qmri.models import IVIM


def _fitted():
    b = np.array([0, 10, 20, 50, 100, 200, 400, 800.0])
    model = IVIM(b)
    return model.fit(model.signal({"S0": 1.0, "f": 0.1, "D": 1e-3, "Dstar": 0.03}) * np.ones((2, 2, 1, 1)))


def test_failure_while_writing_leaves_nothing(tmp_path):
    maps = _fitted()

    def broken(path):
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        maps.save(tmp_path, extra={"fig.png": broken})
    assert list(tmp_path.iterdir()) == []  # no maps, no sidecars, no stage
    maps.save(tmp_path)  # the same call succeeds afterwards, without force
    assert len(list(tmp_path.iterdir())) == 16


_CRASH = textwrap.dedent("""
    import os, sys
    import numpy as np
    from qmri.models import IVIM
    b = np.array([0, 10, 20, 50, 100, 200, 400, 800.0])
    model = IVIM(b)
    maps = model.fit(model.signal({"S0": 1.0, "f": 0.1, "D": 1e-3, "Dstar": 0.03}) * np.ones((2, 2, 1, 1)))
    stage_renames, replace = [0], os.replace
    def dying_replace(src, dst):  # the process dies (no cleanup at all) after N renames out of the stage
        if ".partial" in str(src) and ".partial" not in str(dst):
            if stage_renames[0] == int(sys.argv[2]):
                os._exit(9)
            stage_renames[0] += 1
        replace(src, dst)
    os.replace = dying_replace
    maps.save(sys.argv[1], prefix="p_")
""")


@pytest.mark.parametrize("renames", [0, 5])
def test_death_while_moving_the_set_into_place_is_finished_by_the_next_reader(tmp_path, renames):
    from qmri.resultset import stages

    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-c", _CRASH, str(out), str(renames)], capture_output=True, text=True)
    assert r.returncode == 9, r.stderr
    assert len(stages(out)) == 1 and len(list(out.glob("p_*"))) == renames  # cut short between two renames
    maps = ParameterMaps.load(out, prefix="p_")  # recovery finishes the move
    assert stages(out) == [] and len(list(out.glob("p_*"))) == 16 and np.isfinite(maps["D"]).all()
    with pytest.raises(OutputExistsError):
        _fitted().save(out, prefix="p_")  # the set is complete: refused without force


def test_stage_of_a_live_run_is_left_alone_and_a_dead_one_removed(tmp_path):
    from qmri.resultset import ResultSet, recover, stages

    with ResultSet(tmp_path, ["a.txt"]) as rs:
        rs.path("a.txt").write_text("x")
        assert recover(tmp_path) == [] and len(stages(tmp_path)) == 1  # locked by this (live) set
        child = subprocess.run([sys.executable, "-c", "import sys; from qmri.resultset import recover; "
                                "sys.exit(len(recover(sys.argv[1])))", str(tmp_path)])
        assert child.returncode == 0 and len(stages(tmp_path)) == 1  # nor by another process
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    dead = tmp_path / ".qmri-0123456789ab-x.partial"
    dead.mkdir()
    (dead / ".lock").write_text("")
    (dead / "b.txt").write_text("half")
    assert recover(tmp_path) == [dead] and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_load_refuses_maps_of_two_runs(tmp_path):
    _fitted().save(tmp_path / "a")
    _fitted().save(tmp_path / "b")
    os.replace(tmp_path / "b" / "f.nii.gz", tmp_path / "a" / "f.nii.gz")
    os.replace(tmp_path / "b" / "f.json", tmp_path / "a" / "f.json")
    with pytest.raises(QMRIInputError, match="f.json: written by another run"):
        ParameterMaps.load(tmp_path / "a")
    side = json.loads((tmp_path / "b" / "D.json").read_text())
    assert "D.nii.gz" in side["ResultSet"]["Files"] and len(side["ResultSet"]["Files"]) == 16



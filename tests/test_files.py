"""Atomic writes: a failure never leaves anything under the final name."""

from __future__ import annotations

import pytest

from ciinv.files import atomic_dir, atomic_path, read_json, write_json


def test_atomic_path_renames_on_success_only(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".txt" and tmp.parent == target.parent
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"

    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "failed.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.glob("*")) == [tmp_path / "sub"]


def test_atomic_dir_replaces_the_whole_folder(tmp_path):
    target = tmp_path / "crops"
    target.mkdir()
    (target / "stale.png").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "000000.png").write_text("new")
    assert [p.name for p in target.iterdir()] == ["000000.png"]

    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "000001.png").write_text("half")
            raise RuntimeError("killed")
    assert [p.name for p in target.iterdir()] == ["000000.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["crops"]


def test_json_round_trip(tmp_path):
    write_json(tmp_path / "m.json", {"fps": "30000/1001", "frames": 3})
    assert read_json(tmp_path / "m.json") == {"fps": "30000/1001", "frames": 3}

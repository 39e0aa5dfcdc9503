"""Atomic writes (a failure never leaves anything under the final name; a killed writer's leftovers go),
one-line errors for full disks and missing permissions, and the checked readers."""

from __future__ import annotations

import resource
import subprocess
import sys

import numpy as np
import pytest
import torch

from ciinv.errors import CiinvError
from ciinv.io.files import (atomic_dir, atomic_path, finite_number, read_json, read_npy, read_npz, read_torch,
                         write_json)
from ciinv.dev.sample import make_clip


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


def test_a_killed_writers_leftovers_go_when_the_same_output_is_written_again(tmp_path):
    target = tmp_path / "a.recon.mp4"
    stale = [tmp_path / ".tmp-999999-a.recon.mp4", tmp_path / ".tmp-999999.video-a.recon.mp4"]
    for path in stale:
        path.write_text("half")
    (tmp_path / ".tmp-999999-crops").mkdir()
    (tmp_path / ".tmp-999999-crops" / "000000.png").write_text("half")
    other = tmp_path / ".tmp-999999-b-a.recon.mp4"  # another output whose name ends the same
    other.write_text("in progress")
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    with atomic_dir(tmp_path / "crops") as tmp:
        (tmp / "000000.png").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "a.recon.mp4", "crops"]


def test_every_reader_names_a_damaged_file_in_one_line(tmp_path):
    np.savez(tmp_path / "ok.npz", quads=np.zeros((3, 4, 2), np.float32))
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    np.save(tmp_path / "ok.npy", np.zeros((2, 3), np.float32))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:100])
    torch.save({"codes": torch.zeros(2)}, tmp_path / "ok.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:200])
    (tmp_path / "garbled.json").write_text("{fps: 25")
    (tmp_path / "folder.json").mkdir()
    cases = [
        (lambda: read_npz(tmp_path / "cut.npz", ["quads"]), "cut.npz"),
        (lambda: read_npz(tmp_path / "ok.npz", ["quads", "resolution"]), "ok.npz lacks resolution"),
        (lambda: read_npy(tmp_path / "cut.npy"), "cut.npy"),
        (lambda: read_torch(tmp_path / "cut.pt"), "cut.pt"),
        (lambda: read_json(tmp_path / "garbled.json"), "garbled.json"),
        (lambda: read_json(tmp_path / "folder.json"), "folder.json is a folder"),
        (lambda: read_json(tmp_path / "missing.json"), "missing.json: no such file"),
    ]
    for read, expected in cases:
        with pytest.raises(CiinvError, match=expected) as error:
            read()
        assert "\n" not in str(error.value)
    assert read_npz(tmp_path / "ok.npz", ["quads"])["quads"].shape == (3, 4, 2)


def test_non_finite_numbers_are_refused_when_read_naming_the_frame(tmp_path):
    codes = np.zeros((5, 2, 3), np.float32)
    codes[3, 1, 0] = np.nan
    np.save(tmp_path / "latents.npy", codes)
    with pytest.raises(CiinvError, match=r"latents.npy.*1 non-finite.*frame 3"):
        read_npy(tmp_path / "latents.npy", frame_axis=0)
    np.savez(tmp_path / "align.npz", quads=np.full((2, 4, 2), np.inf, np.float32))
    with pytest.raises(CiinvError, match=r"align.npz.*'quads'.*frame 0"):
        read_npz(tmp_path / "align.npz", ["quads"], per_frame=["quads"])
    with pytest.raises(CiinvError, match="strength"):
        finite_number(float("nan"), "edit 'a': strength")


def _probe_with(tmp_path, out, limit_bytes=None):
    """`ciinv probe` of a real clip writing meta.json to `out`, optionally under a file-size limit."""
    clip = tmp_path / "clip.mp4"
    if not clip.exists():
        make_clip(clip, frames=3, fps="25", size=(64, 64), audio=False)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "ciinv.cli", "probe", str(clip), "--out", str(out)],
                          capture_output=True, text=True, preexec_fn=limit if limit_bytes else None)


def test_no_room_to_write_is_one_line_naming_the_output(tmp_path):
    # A file-size limit fails the write as a full disk does (EFBIG instead of ENOSPC).
    result = _probe_with(tmp_path, tmp_path / "out" / "meta.json", limit_bytes=50)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "out/meta.json" in result.stderr and "free space" in result.stderr
    assert not list((tmp_path / "out").iterdir())  # no half file, no temporary left


def test_no_permission_to_write_is_one_line_naming_the_output(tmp_path):
    # /sys refuses new files even to root, unlike a chmod-ed folder.
    result = _probe_with(tmp_path, "/sys/ciinv-test/meta.json")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "/sys/ciinv-test/meta.json" in result.stderr and "permission" in result.stderr

"""The input folder: which files are videos, and a warning for every file left out."""

from __future__ import annotations

import os

from ciinv.io.folder import find_videos


def test_videos_are_found_by_suffix_and_everything_left_out_is_named(tmp_path):
    for name in ["a.mp4", "b clip.MOV", "notes.txt", ".hidden.mp4", "we{ird}.mp4", "twin.mp4", "twin.mkv"]:
        (tmp_path / name).write_bytes(b"x")
    os.symlink(tmp_path / "gone.mp4", tmp_path / "dangling.mp4")
    videos, warnings = find_videos(tmp_path)
    assert videos == {"a": str(tmp_path / "a.mp4"), "b clip": str(tmp_path / "b clip.MOV")}
    said = "\n".join(warnings)
    assert "dangling.mp4" in said and "gone.mp4" in said
    assert "we{ird}.mp4" in said and "rename" in said
    assert "twin.mkv" in said and "twin.mp4" in said
    assert "notes.txt" in said
    assert ".hidden" not in said


def test_a_missing_or_empty_input_dir_is_said(tmp_path):
    videos, warnings = find_videos(tmp_path / "nowhere")
    assert videos == {} and "nowhere does not exist" in warnings[0]
    videos, warnings = find_videos(tmp_path)
    assert videos == {} and "holds no videos" in warnings[0]

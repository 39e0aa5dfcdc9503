"""The input folder: which files are videos, and a warning for every file left out."""

from __future__ import annotations

import os

from ciinv.io.folder import find_videos


def test_videos_are_found_by_suffix_and_everything_left_out_is_named(tmp_path):
    for name in ["a.mp4", "b clip.MOV", "notes.txt", ".hidden.mp4", "we{ird}.mp4", "twin.mp4", "twin.mkv"]:
        (tmp_path / name).write_bytes(b"x")
    os.symlink(tmp_path / "gone.mp4", tmp_path / "dangling.mp4")
    videos, collisions, warnings = find_videos(tmp_path)
    assert videos == {"a": str(tmp_path / "a.mp4"), "b clip": str(tmp_path / "b clip.MOV")}
    said = "\n".join(warnings)
    assert "dangling.mp4" in said and "gone.mp4" in said
    assert "we{ird}.mp4" in said and "rename" in said
    # Two files of one name are a collision (a failed job in the run), not a warning.
    assert "twin" not in said
    [twin] = collisions
    assert twin.name == "twin" and twin.files == (str(tmp_path / "twin.mkv"), str(tmp_path / "twin.mp4"))
    assert "twin.mkv" in twin.message and "twin.mp4" in twin.message and "results/twin/" in twin.message
    assert "Fix: rename all but one" in twin.message
    assert "notes.txt" in said
    assert ".hidden" not in said


def test_a_missing_or_empty_input_dir_is_said(tmp_path):
    videos, collisions, warnings = find_videos(tmp_path / "nowhere")
    assert videos == {} and collisions == [] and "nowhere does not exist" in warnings[0]
    videos, collisions, warnings = find_videos(tmp_path)
    assert videos == {} and collisions == [] and "holds no videos" in warnings[0]

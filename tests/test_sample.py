"""ciinv.dev.sample: the astronaut clips are real-face videos that dlib can follow."""

from __future__ import annotations

import dlib
import numpy as np
import pytest

from ciinv.dev.sample import head_motion, make_clip, render_frames
from ciinv.io.video import VideoReader, probe


def test_readme_sample_is_small_and_every_frame_has_one_detectable_face(tmp_path):
    path = tmp_path / "sample.mp4"
    make_clip(path)  # the defaults build the README sample
    meta = probe(path)
    assert (meta["frames"], meta["fps"], meta["width"], meta["height"]) == (50, "25", 256, 256)
    assert meta["audio"] is True and meta["rotation"] == 0
    assert path.stat().st_size < 300_000
    detector = dlib.get_frontal_face_detector()
    with VideoReader(path, meta) as reader:
        # No upsampling: the face is large enough for dlib's plain 80-pixel window.
        counts = [len(detector(frame, 0)) for _, frame in reader.frames()]
    assert counts == [1] * 50


def test_rotated_clip_is_stored_turned_and_shown_upright(tmp_path):
    path = tmp_path / "portrait.mp4"
    make_clip(path, frames=6, size=(96, 128), audio=False, rotation=90)
    meta = probe(path)
    assert (meta["rotation"], meta["width"], meta["height"]) == (90, 96, 128)
    assert (meta["coded_width"], meta["coded_height"]) == (128, 96)
    assert meta["audio"] is False
    with VideoReader(path, meta) as reader:
        frames = np.stack([frame for _, frame in reader.frames()])
    expected = render_frames(6, (96, 128)).astype(np.float64)
    assert np.abs(frames - expected).mean() < 4  # a few grey levels of codec error


def test_the_head_moves_smoothly_and_stays_inside():
    frames = render_frames(12, (128, 128), seed=3)
    steps = np.abs(np.diff(frames.astype(np.float64), axis=0)).mean(axis=(1, 2, 3))
    assert steps.min() > 0.5  # it moves in every frame ...
    assert steps.max() < 25  # ... without jumps
    transforms = head_motion(12, (128, 128), seed=3)
    assert not np.allclose(transforms[0], transforms[6])


def test_seed_changes_the_motion_and_repeats_it():
    np.testing.assert_array_equal(render_frames(3, (64, 64), seed=1), render_frames(3, (64, 64), seed=1))
    assert not np.array_equal(render_frames(3, (64, 64), seed=1), render_frames(3, (64, 64), seed=2))


def test_face_too_large_for_the_frame_is_refused(tmp_path):
    with pytest.raises(ValueError, match="outside"):
        make_clip(tmp_path / "x.mp4", frames=4, face_scale=2.0)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="rotation"):
        make_clip(tmp_path / "x.mp4", frames=4, rotation=45)

"""A sheet row's trim: the frames shown in [start, end) s, as they are, upright, with the same span of sound."""

from __future__ import annotations

import numpy as np
import pytest

from ciinv.cli import main
from ciinv.dev.sample import make_clip
from ciinv.errors import CiinvError
from ciinv.io.trim import trim
from ciinv.io.video import VideoReader, probe


def _frames(path):
    with VideoReader(path) as reader:
        return [frame for _, frame in reader.frames()]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("trim") / "clip.mp4"
    make_clip(path, frames=20, fps="25", size=(128, 96), audio=True)
    return path


def test_the_span_keeps_exactly_its_frames_and_its_sound(clip, tmp_path):
    meta = trim(clip, tmp_path / "t.mkv", start=0.2, end=0.6)  # frames 5..14 at 25 fps
    assert (meta["frames"], meta["fps"], meta["width"], meta["height"]) == (10, "25", 128, 96)
    assert meta["audio"] and meta["duration_s"] == pytest.approx(0.4)
    source, kept = _frames(clip), _frames(tmp_path / "t.mkv")
    assert len(kept) == 10
    assert all(np.array_equal(a, b) for a, b in zip(kept, source[5:15]))  # lossless, frame-exact
    assert probe(tmp_path / "t.mkv")["duration_s"] == pytest.approx(0.4)


def test_an_open_end_or_an_end_past_the_video_keeps_the_rest(clip, tmp_path):
    assert trim(clip, tmp_path / "t.mkv", start=0.5)["frames"] == 7  # frames 13.. (frame 12 starts at 0.48 s)
    assert trim(clip, tmp_path / "u.mkv", start=0.48, end=99)["frames"] == 8
    assert trim(clip, tmp_path / "v.mkv", end=0.2)["frames"] == 5


def test_a_turned_phone_video_is_kept_upright(tmp_path):
    make_clip(tmp_path / "phone.mp4", frames=8, fps="25", size=(96, 128), audio=False, rotation=90)
    meta = trim(tmp_path / "phone.mp4", tmp_path / "t.mkv", end=0.2)
    assert (meta["width"], meta["height"], meta["rotation"], meta["audio"]) == (96, 128, 0, False)
    assert all(np.array_equal(a, b) for a, b in zip(_frames(tmp_path / "t.mkv"), _frames(tmp_path / "phone.mp4")))


@pytest.mark.parametrize("start, end, expected", [
    (0.8, None, "the trim starts at 0.8 s, but the video lasts 0.800 s; fix start in the sample sheet"),
    (0.3, 0.3, "the trim ends at 0.3 s, not after its start (0.3 s)"),
])
def test_a_span_outside_the_video_is_named_and_nothing_is_written(clip, tmp_path, start, end, expected):
    with pytest.raises(CiinvError, match="clip.mp4: ") as caught:
        trim(clip, tmp_path / "t.mkv", start=start, end=end)
    assert expected in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_the_command_writes_the_span(clip, tmp_path, caplog):
    assert main(["trim", str(clip), "--start", "0.4", "--end", "0.8", "--out", str(tmp_path / "t.mkv"),
                 "--threads", "1"]) == 0
    assert probe(tmp_path / "t.mkv")["frames"] == 10
    assert "kept 0.4-0.8 s: 10 of 20 frames, with sound" in caplog.text


def test_the_collision_command_fails_naming_every_file(capsys):
    assert main(["collision", "a", "--files", "videos/a.mp4", "videos/a.mov", "--where", "input_dir videos",
                 "--fix", "rename all but one"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ciinv collision: error: input_dir videos: videos/a.mp4, videos/a.mov would all give "
                          "results/a/ and results/a.*: none of them is processed. Fix: rename all but one")

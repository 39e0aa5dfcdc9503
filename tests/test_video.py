"""ciinv.io.video: probing without ffprobe, upright decoding, exact re-encoding with audio."""

from __future__ import annotations

import json
import os
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from ciinv.io import ffmpeg, video
from ciinv.errors import CiinvError
from ciinv.dev.sample import make_clip, render_frames
from ciinv.io.ffmpeg import ffmpeg_exe
from ciinv.io.meta import read_meta
from ciinv.io.video import VideoReader, VideoWriter, exact_fps, probe


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def read_all(path) -> np.ndarray:
    with VideoReader(path) as reader:
        return np.stack([frame for _, frame in reader.frames()])


def audio_seconds(path) -> float:
    """Length of the first audio stream, from its decoded samples (no ffprobe needed)."""
    pcm = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", "8000",
         "-f", "s16le", "pipe:"],
        capture_output=True, check=True,
    ).stdout
    return len(pcm) / 2 / 8000


def smooth_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """Moving colour gradients: easy to compress, so PSNR measures the codec path, not the content."""
    y, x = np.mgrid[0:height, 0:width]
    return [
        np.stack(
            [128 + 100 * np.sin(x / 17 + i / 5), 128 + 100 * np.cos(y / 13 - i / 7), 128 + 60 * np.sin((x + y) / 23)],
            axis=-1,
        ).astype(np.uint8)
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Real-face clips shared by the tests of this file (each takes a fraction of a second)."""
    root = tmp_path_factory.mktemp("clips")
    specs = {
        "pal_audio": dict(frames=10, fps="25", size=(128, 96), audio=True),
        "ntsc_silent": dict(frames=13, fps="30000/1001", size=(128, 96), audio=False),
        "odd": dict(frames=6, fps="25", size=(201, 151), audio=False),
    }
    for rotation in (90, 180, 270):
        specs[f"rot{rotation}"] = dict(frames=6, fps="25", size=(128, 96), audio=False, rotation=rotation)
    paths = {}
    for name, spec in specs.items():
        paths[name] = root / f"{name}.mp4"
        make_clip(paths[name], **spec)
    return paths


# --- probe -----------------------------------------------------------------------------


def test_probe_25fps_with_audio(clips):
    meta = probe(clips["pal_audio"])
    assert meta["path"] == str(clips["pal_audio"])
    assert (meta["frames"], meta["fps"], meta["fps_float"]) == (10, "25", 25.0)
    assert (meta["width"], meta["height"], meta["rotation"], meta["audio"]) == (128, 96, 0, True)
    assert (meta["coded_width"], meta["coded_height"]) == (128, 96)
    assert meta["duration_s"] == pytest.approx(0.4)


def test_probe_ntsc_rate_is_exact_and_silent(clips):
    meta = probe(clips["ntsc_silent"])
    assert meta["fps"] == "30000/1001"
    assert meta["frames"] == 13
    assert meta["audio"] is False
    assert meta["duration_s"] == pytest.approx(13 * 1001 / 30000)


def test_probe_odd_size(clips):
    meta = probe(clips["odd"])
    assert (meta["width"], meta["height"], meta["frames"]) == (201, 151, 6)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_clip_probes_display_size_and_reads_upright(clips, rotation):
    meta = probe(clips[f"rot{rotation}"])
    assert meta["rotation"] == rotation
    assert (meta["width"], meta["height"]) == (128, 96)  # display size
    stored = (96, 128) if rotation in (90, 270) else (128, 96)
    assert (meta["coded_width"], meta["coded_height"]) == stored
    frames = read_all(clips[f"rot{rotation}"])
    assert frames.shape == (6, 96, 128, 3)
    assert psnr(frames, render_frames(6, (128, 96))) > 30


def test_probe_needs_no_ffprobe(clips, monkeypatch):
    # Nothing on PATH at all: ffmpeg comes from imageio-ffmpeg, and ffprobe is never looked for.
    monkeypatch.setattr(ffmpeg.shutil, "which", lambda name: None)
    assert probe(clips["rot90"])["rotation"] == 90


@pytest.mark.parametrize("how", ["mkv_display_matrix", "mkv_rotate_tag"])
def test_reader_is_upright_whether_or_not_decord_rotates(tmp_path, how):
    # decord 0.6 turns MP4 display matrices and legacy rotate tags itself but ignores a
    # Matroska display matrix; VideoReader must be right in every case.
    # Square (shapes cannot tell), and a black first frame (looks the same either way).
    upright = np.concatenate([np.zeros((1, 96, 96, 3), np.uint8), render_frames(5, (96, 96))])
    stored = tmp_path / "stored.mp4"
    with VideoWriter(stored, "25", 96, 96) as writer:
        for frame in np.rot90(upright, k=1, axes=(1, 2)):  # stored turned counter-clockwise
            writer.write(np.ascontiguousarray(frame))
    out = tmp_path / f"{how}.mkv"
    if how == "mkv_display_matrix":
        args = ["-display_rotation", "-90", "-i", str(stored), "-c", "copy"]
    else:
        args = ["-i", str(stored), "-c", "copy", "-metadata:s:v:0", "rotate=90"]
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args, str(out)], check=True)
    assert probe(out)["rotation"] == 90
    assert psnr(read_all(out), upright) > 30


def test_banner_parsing_across_ffmpeg_versions():
    old = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'phone.mov':
  Duration: 00:00:03.00, start: 0.000000, bitrate: 1000 kb/s
    Stream #0:0(und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709), 1920x1080, 9000 kb/s, SAR 1:1 DAR 16:9, 29.97 fps, 29.97 tbr, 600 tbn, 1200 tbc (default)
    Metadata:
      rotate          : 90
      handler_name    : Core Media Video
    Side data:
      displaymatrix: rotation of -90.00 degrees
    Stream #0:1(und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono, fltp, 96 kb/s (default)
At least one output file must be specified
"""
    assert video._parse_banner("phone.mov", old) == {
        "coded_width": 1920, "coded_height": 1080, "rotation": 90, "audio": True,
    }
    legacy_tag_only = old.replace("    Side data:\n      displaymatrix: rotation of -90.00 degrees\n", "").replace(
        "rotate          : 90", "rotate          : 180"
    )
    assert video._parse_banner("x.mp4", legacy_tag_only)["rotation"] == 180
    new = old.replace("rotate          : 90\n", "").replace(
        "displaymatrix: rotation of -90.00 degrees", "Display Matrix: rotation of 90.00 degrees"
    )
    assert video._parse_banner("x.mp4", new)["rotation"] == 270
    with pytest.raises(CiinvError, match="x.mp4.*not a multiple of 90"):
        video._parse_banner("x.mp4", new.replace("90.00 degrees", "45.00 degrees"))


@pytest.mark.parametrize("rate", ["25", "24000/1001", "30000/1001", "60000/1001", "24", "50", "15"])
def test_exact_fps_recovers_rationals(rate):
    assert exact_fps(float(Fraction(rate))) == Fraction(rate)


# --- bad input ---------------------------------------------------------------------------


def test_missing_empty_text_and_truncated_files_name_the_file(tmp_path, clips):
    empty = tmp_path / "empty video.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    truncated = tmp_path / "truncated.mp4"
    data = clips["pal_audio"].read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    for bad in [tmp_path / "missing.mp4", empty, text, truncated]:
        with pytest.raises(CiinvError) as info:
            probe(bad)
        assert str(bad) in str(info.value)


def test_audio_only_file_is_not_a_video(tmp_path):
    wav = tmp_path / "tone.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=duration=0.2", str(wav)], check=True)
    with pytest.raises(CiinvError, match="tone.wav.*no video stream"):
        probe(wav)


# --- reading -----------------------------------------------------------------------------


def test_reader_yields_every_frame_once_in_order(clips):
    with VideoReader(clips["ntsc_silent"]) as reader:
        assert len(reader) == 13
        indices = [i for i, frame in reader.frames(batch=4)]
        assert indices == list(range(13))
        part = list(reader.frames(start=5, stop=9, batch=3))
    assert [i for i, _ in part] == [5, 6, 7, 8]
    assert all(f.shape == (96, 128, 3) and f.dtype == np.uint8 and f.flags["C_CONTIGUOUS"] for _, f in part)
    whole = read_all(clips["ntsc_silent"])
    np.testing.assert_array_equal(part[0][1], whole[5])


# --- writing -----------------------------------------------------------------------------


def test_writer_round_trip_keeps_frames_fps_and_audio(tmp_path, clips):
    frames = smooth_frames(17, 160, 120)
    out = tmp_path / "out.mp4"
    with VideoWriter(out, "30000/1001", 160, 120, audio_from=clips["pal_audio"]) as writer:
        for frame in frames:
            writer.write(frame)
    meta = probe(out)
    assert (meta["frames"], meta["fps"], meta["width"], meta["height"]) == (17, "30000/1001", 160, 120)
    assert meta["audio"] is True and meta["rotation"] == 0
    # The source's audio (0.4 s) is shorter than the video (0.567 s): padded, not cut.
    assert audio_seconds(out) == pytest.approx(17 * 1001 / 30000, abs=0.03)
    assert psnr(read_all(out), np.stack(frames)) > 30


def test_writer_cuts_longer_audio_and_keeps_odd_size(tmp_path, clips):
    long_audio = tmp_path / "long.mp4"
    make_clip(long_audio, frames=25, fps="25", size=(64, 64), audio=True)  # 1 s of audio
    frames = smooth_frames(6, 201, 151)
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, "25", 201, 151, audio_from=long_audio) as writer:
        for frame in frames:
            writer.write(frame)
    meta = probe(out)
    assert (meta["frames"], meta["width"], meta["height"], meta["audio"]) == (6, 201, 151, True)
    assert audio_seconds(out) == pytest.approx(6 / 25, abs=0.03)
    assert psnr(read_all(out), np.stack(frames)) > 30


def test_writer_takes_audio_from_an_audio_only_file_into_mkv(tmp_path):
    wav = tmp_path / "tone.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=duration=2", str(wav)], check=True)
    out = tmp_path / "out.mkv"
    with VideoWriter(out, "24000/1001", 64, 48, audio_from=wav) as writer:
        for frame in smooth_frames(12, 64, 48):
            writer.write(frame)
    meta = probe(out)
    assert (meta["frames"], meta["fps"], meta["audio"]) == (12, "24000/1001", True)
    assert audio_seconds(out) == pytest.approx(12 * 1001 / 24000, abs=0.03)


def test_writer_without_audio_source_or_with_a_silent_one(tmp_path, clips):
    for name, source in [("none.mp4", None), ("silent.mp4", clips["ntsc_silent"])]:
        with VideoWriter(tmp_path / name, "25", 64, 48, audio_from=source) as writer:
            for frame in smooth_frames(3, 64, 48):
                writer.write(frame)
        assert probe(tmp_path / name)["audio"] is False


def test_writer_leaves_nothing_when_the_caller_fails(tmp_path):
    out = tmp_path / "never.mp4"
    with pytest.raises(KeyError):
        with VideoWriter(out, "25", 64, 48) as writer:
            writer.write(smooth_frames(1, 64, 48)[0])
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_reports_ffmpeg_errors_and_leaves_nothing(tmp_path, clips):
    out = tmp_path / "bad.mp4"
    with pytest.raises(CiinvError) as info:
        with VideoWriter(out, "25", 64, 48, audio_from=clips["pal_audio"], preset="no-such-preset") as writer:
            writer.write(smooth_frames(1, 64, 48)[0])
    assert str(out) in str(info.value) and "preset" in str(info.value).lower()
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_wrong_frames_and_rates(tmp_path):
    with pytest.raises(CiinvError, match="rational"):
        VideoWriter(tmp_path / "x.mp4", "fast", 64, 48)
    with VideoWriter(tmp_path / "y.mp4", "25", 64, 48) as writer:
        with pytest.raises(ValueError, match="frame 0"):
            writer.write(np.zeros((48, 64, 3), np.float32))
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert probe(tmp_path / "y.mp4")["frames"] == 1
    assert sorted(os.listdir(tmp_path)) == ["y.mp4"]


def test_damaged_frame_is_named_and_the_frames_before_it_come_out(tmp_path):
    path = tmp_path / "damaged.mp4"
    make_clip(path, frames=40, size=(128, 96), audio=False)  # moov first: the index survives
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = b"\xff" * 3000  # impossible NAL sizes in the middle of mdat
    path.write_bytes(bytes(data))
    good = []
    with pytest.raises(CiinvError) as info:
        with VideoReader(path) as reader:
            for index, _ in reader.frames(batch=8):
                good.append(index)
    assert 0 < len(good) < 40 and good == list(range(len(good)))
    assert str(path) in str(info.value) and f"frame {len(good)} " in str(info.value)


def join_clips(out: Path, parts: list[Path]) -> None:
    """`ffmpeg -f concat -c copy` of clips: a file whose average frame rate misstates its length
    (and, for some joins, whose timestamps are broken), as users make them."""
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in parts))
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy",
                    str(out)], check=True)


@pytest.mark.parametrize("rates, suffix", [(("50", "12"), ".mkv"), (("30000/1001", "10"), ".mp4")])
def test_a_joined_clip_of_two_rates_keeps_its_length_and_all_its_sound(tmp_path, rates, suffix):
    parts = []
    for i, (rate, frames) in enumerate(zip(rates, (20, 7))):
        parts.append(tmp_path / f"part{i}.mp4")
        make_clip(parts[-1], frames=frames, fps=rate, size=(64, 64), audio=True, seed=i)
    joined = tmp_path / f"joined{suffix}"
    join_clips(joined, parts)
    meta = probe(joined)
    sound = audio_seconds(joined)
    assert meta["frames"] == 27
    # The average rate alone says 0.54 s (.mkv) or 0.44 s (.mp4, broken timestamps) for ~1 s of sound.
    assert abs(meta["duration_s"] - sound) < 0.1
    out = tmp_path / "out.mp4"
    with VideoReader(joined, meta) as reader, VideoWriter(out, meta["fps"], 64, 64, audio_from=joined,
                                                            preset="ultrafast", audio_tail=True,
                                                            timing=meta["timing"]) as writer:
        for _, frame in reader.frames():
            writer.write(frame)
    made = probe(out)
    assert made["frames"] == 27 and abs(made["duration_s"] - meta["duration_s"]) < 1 / meta["fps_float"]
    assert abs(audio_seconds(out) - sound) < 1 / meta["fps_float"]
    if suffix == ".mkv":  # sound timestamps: every frame is shown when the source shows it
        assert meta["timing"] and len(made["timing"]) == len(meta["timing"])
        np.testing.assert_allclose(video.timing_of(made["timing"], 27)[0], video.timing_of(meta["timing"], 27)[0],
                                   atol=1e-3)
    else:  # broken timestamps: evenly spaced over the length of the sound
        assert meta["timing"] is None and made["timing"] is None


def test_every_audio_stream_is_kept(tmp_path):
    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames=8, fps="25", size=(64, 64), audio=True)
    two = tmp_path / "two.mkv"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(clip), "-f", "lavfi", "-i", "sine=frequency=880:duration=0.2",
                    "-map", "0:v", "-map", "0:a", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", str(two)], check=True)
    out = tmp_path / "out.mp4"
    with VideoReader(two) as reader, VideoWriter(out, "25", 64, 64, audio_from=two, preset="ultrafast") as writer:
        for _, frame in reader.frames():
            writer.write(frame)
    assert video.audio_streams(str(out)) == 2


def test_a_damaged_meta_json_is_named_with_what_to_do(tmp_path):
    good = {"frames": 5, "fps": "25", "width": 8, "height": 8, "coded_width": 8, "coded_height": 8, "rotation": 0,
            "audio": False, "timing": [[0, 0.0, 0.04], [3, 0.12, 0.08]]}
    path = tmp_path / "meta.json"
    path.write_text(json.dumps(good))
    assert read_meta(path) == good
    for key, value in [("frames", 0), ("fps", "0/0"), ("rotation", 45), ("timing", [[1, 0.0, 0.04]]),
                       ("timing", [[0, 0.0, -1.0]])]:
        path.write_text(json.dumps(good | {key: value}))
        with pytest.raises(CiinvError, match=f"meta.json: '{key}' is .*delete it and rerun the probe stage"):
            read_meta(path)


@pytest.mark.parametrize("name", ["ntsc_silent", "rot90", "rot270", "odd"])
def test_streamed_frames_equal_decords_frame_by_frame_decoding(clips, name):
    """The reader streams from an ffmpeg process; its pixels are decord's, bit for bit, for any range."""
    with VideoReader(clips[name]) as reader:
        decord_frames = [video._upright(video._as_numpy(reader._reader.get_batch([i]))[0], reader._rotation)
                         for i in range(len(reader))]
        streamed = list(reader.frames())
        assert [i for i, _ in streamed] == list(range(len(reader)))
        for (_, frame), expected in zip(streamed, decord_frames):
            np.testing.assert_array_equal(frame, expected)
        part = list(reader.frames(2, 4))
        assert [i for i, _ in part] == [2, 3]
        np.testing.assert_array_equal(part[0][1], decord_frames[2])

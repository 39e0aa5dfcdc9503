"""End to end with `faces: all`: the smoke workflow on two sample clips side by side (ffmpeg hstack).

Each face gets its own folder (results/<video>/face0/, face1/: crops, inversion, edited codes), and
the assembled video has both faces edited: it differs from the source inside each face's box and
not away from them. The right face is hidden in frames 3-5, longer than `max_gap: 1`: those frames
pass through unedited there, and the landmarks log says so. A changed edit strength reruns that
edit for each face and its assembly, nothing else.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import yaml

from ciinv.cli import main
from ciinv.faces.align import load_align
from ciinv.io.ffmpeg import ffmpeg_exe
from ciinv.io.video import VideoReader

from .conftest import job_counts, snakemake
from .test_workflow import EDITS

pytestmark = pytest.mark.slow

FRAMES, SIDE = 8, 128  # each clip 128², faces ~49 px
HIDDEN = range(3, 6)  # frames where the right face is painted over


def overlay(smoke_dir, path, **changes):
    config = yaml.safe_load((smoke_dir / "smoke.yaml").read_text())
    config["faces"] = "all"
    config["landmarks"] |= {"max_gap": 1}
    for key, value in changes.items():
        config[key] = value
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, smoke_dir):
    work = tmp_path_factory.mktemp("faces-workflow")
    (work / "videos").mkdir()
    clips = []
    for seed in (1, 2):
        clips.append(work / f"seed{seed}.mp4")
        assert main(["sample-clip", str(clips[-1]), "--frames", str(FRAMES), "--width", str(SIDE), "--height",
                     str(SIDE), "--seed", str(seed), "--no-audio"]) == 0
    hide = f"drawbox=x=0:y=0:w=iw:h=ih:color=gray:t=fill:enable='between(n,{HIDDEN[0]},{HIDDEN[-1]})'"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(clips[0]), "-i",
                    str(clips[1]), "-filter_complex", f"[1:v]{hide}[r];[0:v][r]hstack", "-c:v", "libx264",
                    "-crf", "12", "-pix_fmt", "yuv420p", str(work / "videos" / "two.mp4")], check=True)
    config = overlay(smoke_dir, work / "all.yaml")
    result = snakemake(work, configfiles=[config])
    assert result.returncode == 0, result.stderr[-4000:]
    return work, config


def frames_of(path):
    with VideoReader(path) as reader:
        return np.stack([frame for _, frame in reader.frames()]).astype(np.int16)


def box_of(quads: np.ndarray) -> tuple[slice, slice]:
    """Rows and columns of the box around one frame's quad."""
    low, high = np.floor(quads.min(axis=0)).astype(int), np.ceil(quads.max(axis=0)).astype(int)
    return slice(max(low[1], 0), high[1]), slice(max(low[0], 0), high[0])


def test_each_face_has_its_own_folder_and_both_are_edited(run):
    work, _ = run
    results = work / "results" / "two"
    for face in ("face0", "face1"):
        for name in ("landmarks.npz", "align.npz", "crops.mkv", "latents.npy", "noise.pt"):
            assert (results / face / name).is_file(), (face, name)
        assert all((results / face / "edits" / f"{edit}.npy").is_file() for edit in EDITS)
    assert not (results / "align.npz").exists() and not (results / "latents.npy").exists()

    source = frames_of(work / "videos" / "two.mp4")
    aligns = [load_align(results / face / "align.npz") for face in ("face0", "face1")]
    # face0 is found in every frame (the left one), face1 not in the hidden frames.
    assert aligns[0]["edited"].all()
    np.testing.assert_array_equal(aligns[1]["edited"], [f not in HIDDEN for f in range(FRAMES)])
    assert (aligns[0]["quads"][..., 0].mean(axis=1) < SIDE).all()
    assert (aligns[1]["quads"][..., 0].mean(axis=1) > SIDE).all()
    for edit in EDITS:
        output = frames_of(work / "results" / f"two.{edit}.mp4")
        assert output.shape == source.shape
        difference = np.abs(output - source).mean(axis=-1)  # [F, H, W]
        away = np.ones(difference.shape, bool)
        for align in aligns:
            for f in range(FRAMES):
                rows, cols = box_of(align["quads"][f])
                away[f, max(rows.start - 4, 0):rows.stop + 4, max(cols.start - 4, 0):cols.stop + 4] = False
        # Away from the faces only the encoder's rounding (the output is encoded again at CRF 18).
        rounding = difference[away].mean()
        assert rounding < 3.0, (edit, rounding)
        for number, align in enumerate(aligns):
            for f in range(FRAMES):
                inside = difference[f][box_of(align["quads"][f])].mean()
                if align["edited"][f]:
                    assert inside > 4 * rounding + 4, (edit, number, f, inside, rounding)
        # Where face1 is hidden its side of the frame is the source's (face0's box lies left).
        hidden = difference[list(HIDDEN)][:, :, SIDE + 8:].mean()
        assert hidden < 3.0, (edit, hidden)


def test_the_landmarks_log_names_the_frames_left_unedited(run):
    work, _ = run
    text = (work / "results" / "two" / "logs" / "landmarks.log").read_text()
    assert "face 1 found in 5/8 frames" in text and "frames 3-5 (3 frames)" in text


def test_one_edit_strength_reruns_that_edit_for_each_face_and_its_assembly(run, smoke_dir, tmp_path):
    work, config = run
    settings = yaml.safe_load(config.read_text())
    settings["edits"][0]["strength"] += 1.0  # "smile"
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(settings))
    result = snakemake(work, "--dry-run", "--quiet", "rules", configfiles=[changed])
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout) == {"edit": 2, "assemble": 1, "all": 1}, result.stdout

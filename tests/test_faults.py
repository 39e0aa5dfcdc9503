"""Fault injection: one bad video, file or number never stops the folder and never becomes a wrong video.

One Snakemake run with --keep-going over a folder that mixes good clips (one of them joined from
two frame rates, whose average rate misstates its length) with each kind of bad
input (a name with braces, a dangling link), bad intermediates (a garbled meta.json, a meta.json
that is a folder, a truncated landmarks.npz, a truncated align.npz, NaN codes in latents.npy, a
killed job's leftovers) and bad per-edit inputs (a missing direction file, a direction holding
NaN). The intermediates that need earlier stages are made by a first run, then damaged. Every
good video must get every good edit with its frame count, duration and sound, and no black
face; every bad one must fail alone, with a one-line error naming its file.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

from ciinv.faces.landmarks import load_landmarks
from ciinv.dev.sample import make_clip
from ciinv.io.video import VideoReader, probe, timing_of

from .test_video import audio_seconds, join_clips
from .conftest import snakemake

pytestmark = pytest.mark.slow

GOOD = {"good": ".mp4", "good two": ".mp4", "joined": ".mkv"}  # name: suffix
GOOD_EDITS = ["recon", "smile"]
BAD_EDITS = {"gone": "missing-direction.npy", "nan-dir": "nan-direction.npy"}
# Damaged before any job runs: name -> what the error must name.
DAMAGED_AT_START = {"garbled-meta": "meta.json", "meta-folder": "meta.json is a folder",
                    "cut-landmarks": "landmarks.npz"}
# Damaged after a first run made them: name -> (file, what the error must name).
DAMAGED_LATER = {"cut-align": ("align.npz", "align.npz: not a readable"),
                 "nan-latents": ("latents.npy", "latents.npy: its values hold")}


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory, smoke_dir):
    work = tmp_path_factory.mktemp("faults")
    videos, results = work / "videos", work / "results"
    videos.mkdir()
    make_clip(videos / "good.mp4", frames=7, fps="25", size=(128, 128), audio=True)
    make_clip(videos / "good two.mp4", frames=6, fps="30000/1001", size=(144, 128), audio=True, seed=1)
    # Two rates joined with `ffmpeg -f concat -c copy`: the average rate misstates the length.
    make_clip(work / "fast.mp4", frames=12, fps="50", size=(128, 128), audio=True, seed=2)
    make_clip(work / "slow.mp4", frames=5, fps="12", size=(128, 128), audio=True, seed=3)
    join_clips(videos / "joined.mkv", [work / "fast.mp4", work / "slow.mp4"])
    clip = (videos / "good.mp4").read_bytes()
    for name in [*DAMAGED_AT_START, *DAMAGED_LATER, "we{ird}"]:
        (videos / f"{name}.mp4").write_bytes(clip)
    os.symlink(work / "elsewhere.mp4", videos / "dangling.mp4")

    # Per-edit inputs: a good direction, a missing one, one with a NaN.
    overlay = yaml.safe_load((smoke_dir / "smoke.yaml").read_text())
    smile = next(e for e in overlay["edits"] if e["name"] == "smile")
    nan = np.load(smile["direction"])
    nan[3] = np.nan
    np.save(work / BAD_EDITS["nan-dir"], nan)
    overlay["edits"] = [smile] + [{"name": name, "direction": str(work / file), "strength": 1.0}
                                  for name, file in BAD_EDITS.items()]
    config = work / "faults.yaml"
    config.write_text(yaml.safe_dump(overlay))

    # First run: the stages whose output is damaged afterwards.
    targets = [f"results/{name}/{file}" for name, (file, _) in DAMAGED_LATER.items()]
    # (A flag first: the helper's --configfile would take the targets for more config files.)
    first = snakemake(work, "--printshellcmds", *targets, configfiles=[config])
    assert first.returncode == 0, first.stderr[-3000:]
    _truncate(results / "cut-align" / "align.npz")
    codes = np.load(results / "nan-latents" / "latents.npy")
    codes[4] = np.nan
    np.save(results / "nan-latents" / "latents.npy", codes)

    # Damaged before their stage ran (Snakemake takes existing files newer than their inputs as done).
    for name in DAMAGED_AT_START:
        (results / name).mkdir(parents=True)
    (results / "garbled-meta" / "meta.json").write_text('{"frames": 7, "fps": ')
    (results / "meta-folder" / "meta.json").mkdir()
    first = snakemake(work, "--printshellcmds", "results/cut-landmarks/landmarks.npz", configfiles=[config])
    assert first.returncode == 0, first.stderr[-3000:]
    _truncate(results / "cut-landmarks" / "landmarks.npz")
    # A job killed mid-write left its temporary file behind.
    (results / "good").mkdir()
    (results / "good" / ".tmp-999999-landmarks.npz").write_bytes(b"half")

    result = snakemake(work, "--keep-going", configfiles=[config])
    return work, result


def test_every_good_video_gets_every_good_edit_with_its_timing_and_sound(faulty_run):
    work, result = faulty_run
    for name, suffix in GOOD.items():
        source = probe(work / "videos" / f"{name}{suffix}")
        sound = audio_seconds(work / "videos" / f"{name}{suffix}")
        landmarks = load_landmarks(work / "results" / name / "landmarks.npz")
        for edit in GOOD_EDITS:
            out = work / "results" / f"{name}.{edit}.mp4"
            assert out.exists(), f"{out} missing\n{result.stderr[-4000:]}"
            made = probe(out)
            assert (made["frames"], made["audio"]) == (source["frames"], True)
            if source["timing"] is None:
                assert made["fps"] == source["fps"]
            else:  # the joined clip: every frame shown when the source shows it
                assert made["timing"] is not None
                np.testing.assert_allclose(timing_of(made["timing"], made["frames"])[0],
                                           timing_of(source["timing"], source["frames"])[0], atol=1e-3)
            assert abs(made["duration_s"] - source["duration_s"]) < 1 / source["fps_float"]
            assert abs(audio_seconds(out) - sound) < 1 / source["fps_float"], (out, sound)
            with VideoReader(out, made) as reader:
                for index, frame in reader.frames():
                    x0, y0, x1, y1 = landmarks["box"][index].astype(int)
                    face = frame[max(y0, 0) : y1, max(x0, 0) : x1]
                    assert face.size and face.mean() > 8, f"{out}: frame {index} has a black face"


def test_each_bad_video_fails_alone_with_a_one_line_error_naming_its_file(faulty_run):
    work, result = faulty_run
    assert result.returncode != 0
    results = work / "results"
    expected = {name: text for name, text in DAMAGED_AT_START.items()}
    expected |= {name: text for name, (_, text) in DAMAGED_LATER.items()}
    for name, text in expected.items():
        assert not list(results.glob(f"{name}.*.mp4")), name
        errors = [line for log in (results / name / "logs").glob("*.log") for line in log.read_text().splitlines()
                  if line.startswith("ciinv ")]
        assert any(name in line and text in line for line in errors), (name, errors)
        assert not any("Traceback" in log.read_text() for log in (results / name / "logs").glob("*.log"))
    # The frame with the NaN codes is named.
    edit_log = (results / "nan-latents" / "logs" / "edit_recon.log").read_text()
    assert "frame 4" in edit_log


def test_a_bad_edit_fails_for_every_video_naming_the_edit_and_its_file_and_nothing_else(faulty_run):
    work, _ = faulty_run
    for name in GOOD:
        for edit, file in BAD_EDITS.items():
            assert not (work / "results" / f"{name}.{edit}.mp4").exists()
            log = (work / "results" / name / "logs" / f"edit_{edit}.log").read_text()
            assert f"edit '{edit}'" in log and file in log and "Traceback" not in log, log


def test_files_the_workflow_cannot_take_are_named_when_planning(faulty_run):
    work, result = faulty_run
    assert "we{ird}.mp4: skipped" in result.stderr
    assert "dangling.mp4 is a link to" in result.stderr
    assert not list((work / "results").glob("we*"))


def test_no_temporary_or_partial_file_is_left(faulty_run):
    work, _ = faulty_run
    assert not [p for p in (work / "results").rglob("*") if p.name.startswith(".tmp-")]


def test_a_truncated_or_non_finite_shard_stops_the_merge_naming_it(tmp_path):
    import subprocess
    import sys

    import torch

    from ciinv.io.files import write_json

    codes = torch.zeros(1, 3, 4, 8)
    torch.save({"windows": [[0, 3]], "codes": codes}, tmp_path / "shard_0000.pt")
    data = (tmp_path / "shard_0000.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    codes[0, 1, 2, 3] = float("nan")
    torch.save({"windows": [[0, 3]], "codes": codes}, tmp_path / "nan.pt")
    write_json(tmp_path / "meta.json", {"frames": 3, "fps": "25", "width": 8, "height": 8, "coded_width": 8,
                                        "coded_height": 8, "rotation": 0, "audio": False})
    for shard, expected in [("cut.pt", "cut.pt: not a readable torch file"), ("nan.pt", "nan.pt: its codes hold 1")]:
        result = subprocess.run([sys.executable, "-m", "ciinv.cli", "merge", str(tmp_path / shard), "--meta",
                                 str(tmp_path / "meta.json"), "--out", str(tmp_path / "latents.npy")],
                                capture_output=True, text=True)
        assert result.returncode == 1 and expected in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not (tmp_path / "latents.npy").exists()


def test_after_a_killed_run_the_next_one_redoes_the_unfinished_jobs(tmp_path, smoke_dir):
    """A controller killed (or aborted) while a job runs leaves that job's output flagged incomplete;
    the workflow's default profile reruns it instead of refusing to start (IncompleteFilesException)."""
    import signal
    import subprocess
    import sys
    import time

    from .conftest import REPO

    (tmp_path / "videos").mkdir()
    make_clip(tmp_path / "videos" / "k.mp4", frames=6, fps="25", size=(96, 96), audio=False)
    target = "results/k/landmarks.npz"
    assert snakemake(tmp_path, "--printshellcmds", target, configfiles=[smoke_dir / "smoke.yaml"]).returncode == 0
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(tmp_path), "--cores", "1", "--configfile", str(REPO / "config.yaml"), str(smoke_dir / "smoke.yaml"),
               "--printshellcmds", "--forcerun", "landmarks", "--", target]
    env = os.environ | {"PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    flagged = tmp_path / ".snakemake" / "incomplete"
    for line in run.stdout:
        if "ciinv landmarks" in line:  # the job has started ...
            break
    deadline = time.monotonic() + 60
    while not (flagged.is_dir() and any(flagged.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)  # ... and its output is flagged: kill the controller, not the job
    run.wait()
    assert any(flagged.iterdir())
    log = tmp_path / "results" / "k" / "logs" / "landmarks.log"
    while "frames with a detected face" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)  # the orphaned job ends on its own
    snakemake(tmp_path, "--unlock")  # a killed controller also leaves its lock
    again = snakemake(tmp_path, "--printshellcmds", target, configfiles=[smoke_dir / "smoke.yaml"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Incomplete" not in again.stderr
    assert (tmp_path / target).exists()


@pytest.fixture
def full_disk(tmp_path):
    """A 64 kB file system (tmpfs), where a write soon fails with ENOSPC as on a full disk."""
    import subprocess

    folder = tmp_path / "full"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_is_one_line_naming_the_output_and_leaves_nothing(full_disk, tmp_path):
    import subprocess
    import sys

    import torch

    from ciinv.io.files import write_json

    torch.save({"windows": [[0, 3]], "codes": torch.ones(1, 3, 4, 8192)}, tmp_path / "shard_0000.pt")
    write_json(tmp_path / "meta.json", {"frames": 3, "fps": "25", "width": 8, "height": 8, "coded_width": 8,
                                        "coded_height": 8, "rotation": 0, "audio": False})
    commands = {  # a video through ffmpeg (with its sound), and an array through numpy (400 kB of codes)
        "x.mp4": ["sample-clip", str(full_disk / "x.mp4"), "--frames", "50"],
        "latents.npy": ["merge", str(tmp_path / "shard_0000.pt"), "--meta", str(tmp_path / "meta.json"), "--out",
                        str(full_disk / "latents.npy"), "--noise", str(tmp_path / "noise.pt")],
    }
    for name, args in commands.items():
        result = subprocess.run([sys.executable, "-m", "ciinv.cli", *args], capture_output=True, text=True)
        assert result.returncode == 1, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"cannot write {full_disk / name}: No space left on device; free space" in result.stderr
        assert not list(full_disk.iterdir())


def test_a_run_with_bad_videos_ends_with_a_summary_naming_each_with_its_reason(faulty_run):
    _, result = faulty_run
    summary = result.stderr[result.stderr.index("job(s) failed:"):]
    for name in [*DAMAGED_AT_START, *DAMAGED_LATER]:
        lines = [line for line in summary.splitlines() if line.strip().startswith((f"video {name} ", f"video {name},"))]
        assert lines and all(": error: " in line for line in lines), (name, summary)

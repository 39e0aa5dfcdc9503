"""`ciinv bench stages`: the CPU stages of the workflow against a plain ffmpeg transcode.

Per clip, in one run (so that a busy machine slows both sides alike), the seconds of

transcode   ``ffmpeg -i clip -c:v libx264 -preset medium -crf 18 -c:a copy out.mp4``: the yardstick
probe       ``ciinv.io.video.probe``
landmarks   ``ciinv.faces.landmarks.detect_video`` with the config's detector, and its file
align       ``ciinv.faces.align.align_video``: quads and the stored crops
assemble    ``ciinv.faces.assemble.assemble_video`` with the *aligned* crops as the "edited" faces (no
            generator, no GPU): decode, paste back, encode with the sound

each stage's ratio to the transcode, and the bytes each stage writes per frame. The stages run
in this process (no interpreter start-up), as the workflow's jobs run them after their imports.
With ``repeat`` > 1 every stage (and the transcode) runs that many times and the fastest run
counts. The output is a Markdown table per clip; ``bench_stages`` also returns the rows.
"""

from __future__ import annotations

import logging
import os
import resource
import subprocess
import time
from pathlib import Path

from ciinv.bench.tables import markdown_table
from ciinv.errors import CiinvError

log = logging.getLogger(__name__)

STAGES = ("probe", "landmarks", "align", "assemble")


def _size(path: Path) -> int:
    """Bytes of a file, or of all files under a folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def transcode(video: Path, out: Path) -> None:
    """The yardstick: a plain x264 transcode of the clip, sound copied."""
    from ciinv.io.ffmpeg import ffmpeg_exe

    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", os.path.abspath(video),
         "-c:v", "libx264", "-preset", "medium", "-crf", "18", "-c:a", "copy", os.path.abspath(out)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
    )
    if result.returncode != 0:
        raise CiinvError(f"{video}: the plain ffmpeg transcode failed:\n{result.stderr.strip()[-2000:]}")


def bench_clip(config: dict, video: Path, work: Path, repeat: int = 1) -> dict:
    """Seconds and bytes per frame of each stage on one clip; files go to ``work``.

    Returns {'clip', 'frames', 'width', 'height', 'seconds': {stage: s}, 'bytes': {stage: bytes per
    frame}} with stages 'transcode' and STAGES.
    """
    from ciinv.faces.align import align_video
    from ciinv.faces.assemble import assemble_video
    from ciinv.io.crops import open_crops
    from ciinv.io.files import write_json
    from ciinv.faces.landmarks import detect_video, save_landmarks
    from ciinv.io.video import probe

    work.mkdir(parents=True, exist_ok=True)
    files = {
        "transcode": work / "transcode.mp4",
        "probe": work / "meta.json",
        "landmarks": work / "landmarks.npz",
        "align_npz": work / "align.npz",
        "crops": work / "crops.mkv",
        "assemble": work / "assembled.mp4",
    }
    marks = config["landmarks"]
    align = config["align"]
    assemble = config["assemble"]
    state: dict = {}

    def run_probe():
        state["meta"] = probe(video)
        write_json(files["probe"], state["meta"])

    def run_landmarks():
        result = detect_video(video, detector=marks["detector"], max_gap=marks["max_gap"], device="cpu",
                              models_dir=config["models_dir"], meta=state["meta"])
        save_landmarks(files["landmarks"], result)

    def run_align():
        align_video(video, files["landmarks"], files["align_npz"], files["crops"], resolution=align["resolution"],
                    center_sigma=align["center_sigma"], axes_sigma=align["axes_sigma"], meta=state["meta"])

    def run_assemble():
        assemble_video(video, state["meta"], files["align_npz"], open_crops(files["crops"]), files["assemble"],
                       crf=assemble["crf"], preset=assemble["preset"],
                       name=str(files["crops"]))

    steps = {"transcode": lambda: transcode(video, files["transcode"]), "probe": run_probe,
             "landmarks": run_landmarks, "align": run_align, "assemble": run_assemble}
    seconds = {}
    for name, step in steps.items():
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - start)
        seconds[name] = best
        log.info("%s: %s %.2f s", video.name, name, best)

    frames = state["meta"]["frames"]
    written = {
        "transcode": _size(files["transcode"]),
        "probe": _size(files["probe"]),
        "landmarks": _size(files["landmarks"]),
        "align": _size(files["align_npz"]) + _size(files["crops"]),
        "assemble": _size(files["assemble"]),
    }
    return {"clip": video.name, "frames": frames, "width": state["meta"]["width"],
            "height": state["meta"]["height"], "seconds": seconds,
            "bytes": {name: size / frames for name, size in written.items()}}


def _bytes(n: float) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def table(row: dict) -> str:
    """One clip's Markdown table: stage, seconds, ratio to the transcode, bytes written per frame."""
    seconds, written = row["seconds"], row["bytes"]
    base = seconds["transcode"]
    body = [["plain ffmpeg transcode (x264 medium, crf 18)", f"{base:.2f}", "1.00", _bytes(written["transcode"])]]
    body += [[name, f"{seconds[name]:.2f}", f"{seconds[name] / base:.2f}", _bytes(written[name])] for name in STAGES]
    total = sum(seconds[name] for name in STAGES)
    body.append(["**CPU stages together**", f"**{total:.2f}**", f"**{total / base:.2f}**", ""])
    lines = [f"{row['clip']}: {row['width']}x{row['height']}, {row['frames']} frames", "",
             *markdown_table(["step", "seconds", "× transcode", "written per frame"], body)]
    return "\n".join(lines) + "\n"


def bench_stages(config: dict, videos, out_dir, repeat: int = 1) -> list[dict]:
    """``bench_clip`` on every clip (files under ``out_dir/<clip stem>/``); returns the rows."""
    if repeat < 1:
        raise CiinvError(f"--repeat must be at least 1, got {repeat}")
    rows = []
    for video in map(Path, videos):
        if not video.is_file():
            raise CiinvError(f"{video}: no such video file")
        rows.append(bench_clip(config, video, Path(out_dir) / video.stem, repeat))
    return rows


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

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
counts.

Then what a finished video keeps in ``results/<video>/``, per frame (``kept_files``): the CPU
stages' files as they were just written, and those of the GPU stages written by their own writers
at the real shapes (the generator's W+ codes for ``align.resolution``, the config's windows, steps
and edits): every size but that of ``crops.mkv`` is fixed by its format and shapes, so no
generator has to run. The output is two Markdown tables per clip; ``bench_stages`` also returns
the rows.
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
    kept = kept_files(config, work / "kept", frames, {name: files[key] for name, key in
                                                     (("meta.json", "probe"), ("landmarks.npz", "landmarks"),
                                                      ("align.npz", "align_npz"), ("crops.mkv", "crops"))})
    written = {
        "transcode": _size(files["transcode"]),
        "probe": _size(files["probe"]),
        "landmarks": _size(files["landmarks"]),
        "align": _size(files["align_npz"]) + _size(files["crops"]),
        "assemble": _size(files["assemble"]),
    }
    return {"clip": video.name, "frames": frames, "width": state["meta"]["width"],
            "height": state["meta"]["height"], "seconds": seconds,
            "bytes": {name: size / frames for name, size in written.items()},
            "kept": {name: size / frames for name, size in kept.items()}}


def kept_files(config: dict, work: Path, frames: int, written: dict[str, Path]) -> dict[str, int]:
    """Bytes of each kind of file a finished video keeps in ``results/<video>/`` (one face, the
    config's variant and edits, ``pti`` and ``stitch`` off; logs and benchmark TSVs left out).

    written: the CPU stages' files by name (meta.json, landmarks.npz, align.npz, crops.mkv), counted
    as they are. The GPU stages' files are written into ``work`` by the project's own writers at the
    real shapes: per invert shard (``plan_shards``), ``shard_payload`` of windows whose codes are a
    random walk of [T, L, D] (L = 2·log2(R) − 2 layers of 512, StyleGAN2 at R = align.resolution)
    and every window's loss curves over all ``invert.steps`` (the most a shard keeps: early stopping
    keeps fewer), the ``plus`` variant's noise maps at R; the real merge (``merge_shards``:
    latents.npy and noise.pt); one codes file per edit (``recon`` and the config's). Returns
    {name: bytes} with names 'crops.mkv', 'latents/shard_*.pt', 'latents.npy', 'noise.pt',
    'edits/*.npy (N)', 'align.npz', 'landmarks.npz', 'meta.json'.
    """
    import numpy as np
    import torch

    from ciinv.inversion.objective import LOSS_NAMES, VARIANTS
    from ciinv.inversion.optimizer import WindowResult
    from ciinv.inversion.settings import InvertSettings
    from ciinv.inversion.shards import merge_shards, shard_payload, write_shard
    from ciinv.inversion.windows import plan_shards, plan_windows
    from ciinv.io.codes import write_latents
    from ciinv.models.stylegan2 import Generator, config_f_channels, noise_resolution

    settings = InvertSettings.from_dict(config["invert"])
    with torch.device("meta"):  # the generator's shapes only: no weights are made
        generator = Generator(config["align"]["resolution"], config_f_channels(config["align"]["resolution"]))
    layers, dim = generator.num_ws, generator.w_dim
    noise_sides = [noise_resolution(i) for i in range(generator.num_layers)]  # its noise maps, layer order
    offsets = 1 if VARIANTS[settings.variant][0] and settings.offsets == "shared" else layers
    rng = torch.Generator().manual_seed(0)
    (work / "latents").mkdir(parents=True, exist_ok=True)
    (work / "edits").mkdir(exist_ok=True)

    shard_paths = []
    for k, windows in enumerate(plan_shards(plan_windows(frames, settings.window, settings.stride),
                                            settings.windows_per_shard)):
        results = []
        for w in windows:
            w_b = torch.randn(layers, dim, generator=rng)
            n_k = 0.05 * torch.randn(w.stop - w.start - 1, offsets, dim, generator=rng)
            codes = torch.cat([w_b[None], w_b + n_k.cumsum(0)])  # [T, L, D]: the MAC sum
            losses = torch.logspace(0, -2, settings.steps)[:, None].expand(-1, len(LOSS_NAMES)).clone()
            noise = ([torch.randn(1, 1, side, side, generator=rng) for side in noise_sides]
                     if VARIANTS[settings.variant][2] else None)
            results.append(WindowResult(index=w.index, start=w.start, w_b=w_b, n_k=n_k, codes=codes, losses=losses,
                                        steps=settings.steps, warm=False, noise=noise))
        shard_paths.append(work / "latents" / f"shard_{k:04d}.pt")
        write_shard(shard_paths[-1], shard_payload(windows, results, settings, "generator.pt", frames, k))
    merge_shards(shard_paths, frames, work / "latents.npy", work / "noise.pt")
    edits = ["recon"] + [edit["name"] for edit in config["edits"]]
    latents = np.load(work / "latents.npy").astype(np.float32)
    for name in edits:  # an edit moves the codes: what the file holds is the same size either way
        write_latents(work / "edits" / f"{name}.npy", latents + (0 if name == "recon" else 0.1))
    return {
        "crops.mkv": _size(written["crops.mkv"]),
        "latents/shard_*.pt": _size(work / "latents"),
        "latents.npy": _size(work / "latents.npy"),
        "noise.pt": _size(work / "noise.pt"),
        f"edits/*.npy ({len(edits)})": _size(work / "edits"),
        **{name: _size(written[name]) for name in ("align.npz", "landmarks.npz", "meta.json")},
    }


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
    kept = row["kept"]
    total = sum(kept.values())
    kept_body = [[name, _bytes(size), f"{100 * size / total:.1f} %"] for name, size in kept.items()]
    kept_body.append(["**all**", f"**{_bytes(total)}**", ""])
    lines = [f"{row['clip']}: {row['width']}x{row['height']}, {row['frames']} frames", "",
             *markdown_table(["step", "seconds", "× transcode", "written per frame"], body), "",
             f"kept by the finished video in results/<video>/: {_bytes(total)} per frame", "",
             *markdown_table(["file", "bytes per frame", "share"], kept_body)]
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

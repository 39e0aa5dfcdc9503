"""What each paste mask costs the assemble stage: `ciinv assemble` timed with paste.mask parser,
landmarks and ellipse on the same clip and codes, in one run, and the ratios to ellipse; the
parser once per --parser-every k (paste.parser_every: parsed on every k-th frame and the last, the
masks between interpolated), with how far its final masks are from every frame parsed.

    python benchmarks/paste_masks.py [--frames 50] [--size 256] [--repeat 3] [--parser-every 1 4 8]
                                     [--full-size] [--device cpu]

Default: the smoke models (`ciinv smoke-models`: a 64² StyleGAN2 and the tiny face parser) on a
`ciinv sample-clip` of 50 frames at 256², dlib landmarks: the CPU smoke run's assemble. The parser
reads the crops at paste.parser_size (512², the default). --full-size: random networks of the real
sizes instead (config F at 1024², BiSeNet with 79999_iter.pth's widths; for a GPU). Each command
runs --repeat times, the kinds interleaved; the best wall time and the best CPU time (user +
system, ffmpeg's included: on a shared machine the steadier figure) of each are reported. Then, in
this process, one render batch against its parser masks (best of --repeat): the parser's cost beside
the generator's, free of the encoder's and the machine's noise. Last, per k, the final masks (key
frames, interpolation, smoothing over time: ``clip_masks``) of the whole clip against those of
k = 1: the mean and the largest absolute difference over all pixels of all frames, and the mean
over the pixels either mask gives more than 0 (the face and its edge). Run from the repository
root with the package's environment active.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def labels(every: list[int]) -> list[str]:
    """The timed variants: ellipse, landmarks, then the parser with each parser_every k."""
    return ["ellipse", "landmarks"] + [f"parser k={k}" for k in every]


def prepare(work: Path, frames: int, size: int, full_size: bool) -> dict:
    from ciinv.dev.sample import make_clip
    from ciinv.dev.tiny import write_tiny_parser, write_tiny_stylegan2
    from ciinv.faces.align import align_video
    from ciinv.faces.landmarks import detect_video, save_landmarks
    from ciinv.io.files import write_json
    from ciinv.io.video import probe
    from ciinv.models import load_generator
    from ciinv.models.stylegan2 import config_f_channels

    # The two networks assemble runs, as `ciinv smoke-models` writes them (with --full-size: the real sizes).
    models = {"generator": work / "generator.pt", "parser": work / "parser.pth"}
    if full_size:
        write_tiny_stylegan2(models["generator"], resolution=1024, w_dim=512, n_mlp=8,
                             channels=config_f_channels(1024))
        write_tiny_parser(models["parser"], width_divisor=1)
    else:
        write_tiny_stylegan2(models["generator"], resolution=64, w_dim=512, n_mlp=2, max_channels=32)
        write_tiny_parser(models["parser"])
    generator = load_generator(models["generator"])
    video = work / "clip.mp4"
    make_clip(video, frames=frames, size=(size, size), audio=True)
    meta = probe(video)
    write_json(work / "meta.json", meta)
    save_landmarks(work / "landmarks.npz", detect_video(video, detector="dlib", meta=meta))
    align_video(video, work / "landmarks.npz", work / "align.npz", work / "crops.mkv",
                resolution=generator.resolution, meta=meta)
    codes = generator.w_avg + 0.3 * torch.randn(frames, generator.num_ws, generator.w_avg.shape[-1],
                                                 generator=torch.Generator().manual_seed(0))
    np.save(work / "codes.npy", codes.numpy().astype(np.float32))
    return {"video": video, **models}


def command(work: Path, files: dict, label: str, device: str, threads: int) -> list[str]:
    kind, _, every = label.partition(" k=")
    reads = {"parser": [f"--parser={files['parser']}", f"--crops={work / 'crops.mkv'}", "--parser-every", every],
             "landmarks": [f"--landmarks={work / 'landmarks.npz'}"], "ellipse": []}[kind]
    return [sys.executable, "-m", "ciinv.cli", "assemble", str(files["video"]), "--meta", str(work / "meta.json"),
            "--align", str(work / "align.npz"), "--codes", str(work / "codes.npy"), "--generator",
            str(files["generator"]), "--device", device, "--mask", kind, *reads, "--threads", str(threads),
            "--out", str(work / f"{label.replace(' k=', '-')}.mp4")]


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the command and the processes it waited for,
    ffmpeg's included) of running ``argv``. On a shared machine the CPU seconds are the steadier figure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def components(work: Path, files: dict, device: str, threads: int, repeat: int) -> tuple[float, float]:
    """Seconds per frame (best of ``repeat``, interleaved) of rendering a batch and of its parser masks
    (``face_masks``: both crops parsed, the union softened; the source crops already decoded), in
    this process: what the parser adds to the render thread, without the encoder's noise."""
    from ciinv.faces.paste import PasteSettings, face_masks, load_mask_parser
    from ciinv.faces.render import load_renderer
    from ciinv.io.crops import open_crops
    from ciinv.models import load_generator

    torch.set_num_threads(threads)
    generator = load_generator(files["generator"]).to(device).eval().requires_grad_(False)
    renderer = load_renderer(work / "codes.npy", generator, device=device)
    parser = load_mask_parser(files["parser"], device=device)
    frames = range(renderer.batch)
    source = torch.from_numpy(open_crops(work / "crops.mkv").read(0, len(frames))).permute(0, 3, 1, 2)
    render_best = masks_best = float("inf")
    for round in range(repeat + 1):  # the first round warms up
        start = time.perf_counter()
        pixels = renderer.render_pixels(frames)
        rendered = time.perf_counter()
        face_masks(PasteSettings(mask="parser"), pixels, source=source, parser=parser)
        done = time.perf_counter()
        if round:
            render_best, masks_best = min(render_best, rendered - start), min(masks_best, done - rendered)
    return render_best / len(frames), masks_best / len(frames)


def mask_changes(work: Path, files: dict, device: str, threads: int, every: list[int]) -> dict:
    """How far the final masks (``clip_masks``: as assemble makes them) with parser_every k are from
    k = 1 over the whole clip: {"parser": {k: (mean, max, mean over the face) of |difference|},
    "parser full": share of the k = 1 parser masks' pixels that are 1, "landmarks": the same
    differences with the landmark polygon as the region on the key frames, interpolated between
    as the parser's are (a face region that follows the face, which the smoke run's random tiny
    parser is not)}."""
    from ciinv.faces.align import load_align
    from ciinv.faces.landmarks import load_landmarks
    from ciinv.faces.paste import (
        PasteSettings,
        clip_masks,
        face_masks,
        interpolated_stream,
        load_mask_parser,
        smooth_over_time,
    )
    from ciinv.faces.render import load_renderer
    from ciinv.io.crops import open_crops
    from ciinv.models import load_generator

    torch.set_num_threads(threads)
    generator = load_generator(files["generator"]).to(device).eval().requires_grad_(False)
    renderer = load_renderer(work / "codes.npy", generator, device=device)
    parser = load_mask_parser(files["parser"], device=device)
    rendered = torch.cat([renderer.render_pixels(range(start, min(start + renderer.batch, len(renderer))))
                          for start in range(0, len(renderer), renderer.batch)])
    crops = open_crops(work / "crops.mkv")
    source = torch.from_numpy(crops.read(0, len(crops))).permute(0, 3, 1, 2).to(device)
    ks = sorted(set(every) | {1})
    parsed = {k: clip_masks(PasteSettings(mask="parser", parser_every=k), rendered, source=source, parser=parser)
              for k in ks}

    polygon = PasteSettings(mask="landmarks")
    soft = face_masks(polygon, rendered, points=load_landmarks(work / "landmarks.npz")["points"],
                      quads=load_align(work / "align.npz")["quads"])
    landmarks = {}
    for k in ks:
        keys = PasteSettings(mask="parser", parser_every=k).key_frames(len(soft))
        filled = [m for m, in interpolated_stream((m if key else None,) for m, key in zip(soft, keys))]
        landmarks[k] = smooth_over_time(np.stack(filled), polygon.temporal_sigma)

    def differences(masks):
        out = {}
        for k in every:
            difference = np.abs(masks[k] - masks[1])
            face = (masks[k] > 0) | (masks[1] > 0)
            out[k] = (float(difference.mean()), float(difference.max()), float(difference[face].mean()))
        return out

    return {"parser": differences(parsed), "parser full": float((parsed[1] == 1).mean()),
            "landmarks": differences(landmarks), "landmarks step": float(np.abs(np.diff(landmarks[1], axis=0)).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--size", type=int, default=256, help="the clip's width and height")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parser-every", type=int, nargs="+", default=[1],
                        help="paste.parser_every values to time the parser mask with (1: every frame parsed)")
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--work", help="work folder (default: a new temporary one)")
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="paste-masks."))
    work.mkdir(parents=True, exist_ok=True)
    files = prepare(work, args.frames, args.size, args.full_size)
    variants = labels(args.parser_every)
    best = {label: float("inf") for label in variants}
    best_cpu = {label: float("inf") for label in variants}
    for _ in range(args.repeat):
        for label in variants:
            wall, cpu = timed(command(work, files, label, args.device, args.threads))
            best[label], best_cpu[label] = min(best[label], wall), min(best_cpu[label], cpu)
    print(f"assemble of {args.frames} frames at {args.size}², {'full-size' if args.full_size else 'smoke'} models, "
          f"{args.device}, {args.threads} threads, best of {args.repeat} (work: {work})")
    for label in variants:
        print(f"  mask {label:12s} {best[label]:7.2f} s  {best[label] / best['ellipse']:.3f}× ellipse   "
              f"CPU {best_cpu[label]:7.2f} s  {best_cpu[label] / best_cpu['ellipse']:.3f}× ellipse")
    for k in args.parser_every:
        label = f"parser k={k}"
        print(f"parser (parser_every {k}) adds {100 * (best[label] / best['ellipse'] - 1):.1f} % to assemble against "
              f"ellipse ({100 * (best_cpu[label] / best_cpu['ellipse'] - 1):.1f} % of its CPU time)")
    render, masks = components(work, files, args.device, args.threads, args.repeat)
    print(f"per frame, in one process: render {1000 * render:.1f} ms, parser mask (source and render "
          f"parsed, softened) {1000 * masks:.1f} ms: {masks / render:.3f}× the render")
    changes = mask_changes(work, files, args.device, args.threads, args.parser_every)
    print(f"final parser masks (k = 1): {100 * changes['parser full']:.1f} % of their pixels are 1")
    for region in ("parser", "landmarks"):
        for k, (mean, largest, face) in changes[region].items():
            print(f"final masks, {region} region, key frames every {k} against every frame: mean |difference| "
                  f"{mean:.2e}, largest {largest:.3f}, mean over the face and its edge {face:.2e}")
    print(f"final landmark masks (k = 1), frame to next frame: mean |difference| {changes['landmarks step']:.2e}")


if __name__ == "__main__":
    main()

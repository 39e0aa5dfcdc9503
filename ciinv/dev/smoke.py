"""`ciinv smoke-models DIR`: tiny random checkpoints in the real formats, and a config overlay for them.

With the overlay, the whole workflow runs on a CPU in minutes (`snakemake --configfile config.yaml
DIR/smoke.yaml`): every loader, stage and file format is the real one; only the weights are random
and the networks narrow, so the pictures are noise, not faces.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import yaml

from ciinv.models.catalogue import CATALOGUE
from ciinv.models.registry import direction_attributes, direction_name
from ciinv.models.stylegan2 import config_f_channels
from ciinv.dev.tiny import (
    write_tiny_e4e,
    write_tiny_flownet2,
    write_tiny_parser,
    write_tiny_stylegan1,
    write_tiny_stylegan2,
    write_tiny_vgg16,
)


MEDIUM_RESOLUTION = 256


def write_smoke_models(out_dir: str | os.PathLike, resolution: int = 64, steps: int = 5,
                       full_size: bool = False, size: str = "tiny") -> Path:
    """Write the tiny models, two edit directions and `smoke.yaml` into `out_dir`; return the overlay's path.

    The e4e encoder (``models.encoder``, for ``invert.init: e4e``) embeds the generator as its
    decoder, as e4e's file does, so its latent_avg is the generator's mean latent.

    ``full_size``: instead, random networks of the real sizes (StyleGAN2 config F at 1024², the
    whole FlowNet2, VGG16, e4e's IR-SE-50 encoder and the BiSeNet face parser; about 2.6 GB), and an
    overlay that keeps the config's inversion settings: what a speed or memory measurement on a GPU needs, without the weights.
    ``size``: ``tiny`` (the default), ``full`` (as ``full_size``) or ``medium``: the second benchmark
    model of ``bench speed``, a random StyleGAN2 with config F's real channel widths and an
    8-layer mapping at 256² (the generator's resolution, whatever ``resolution`` says), with a
    VGG16 of a quarter of the real widths and the tiny FlowNet2, e4e and parser; its overlay is the
    tiny one's at 256².
    """
    full_size = full_size or size == "full"
    medium = size == "medium" and not full_size
    if size not in ("tiny", "medium", "full"):
        raise ValueError(f"smoke-models size: tiny, medium or full, not {size!r}")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if full_size:
        resolution = 1024
        generator, flow, vgg = out / "stylegan2-config-f-random.pt", out / "flownet2-random.pth.tar", out / "vgg16-random.pth"
        write_tiny_stylegan2(generator, resolution=resolution, w_dim=512, n_mlp=8, channels=config_f_channels(resolution))
        write_tiny_flownet2(flow, width_divisor=1)
        write_tiny_vgg16(vgg, width_divisor=1)
        encoder = out / "e4e-random.pt"  # IR-SE-50 and 18 styles of 512, e4e's real sizes
        write_tiny_e4e(encoder, num_ws=18, generator=generator, widths=(64, 128, 256, 512), units=(3, 4, 14, 3),
                       style_width=512)
        face_parser = out / "parser-random.pth"  # 79999_iter.pth's sizes
        write_tiny_parser(face_parser, width_divisor=1)
    elif medium:
        resolution = MEDIUM_RESOLUTION
        generator, flow, vgg = out / "stylegan2-medium-256.pt", out / "flownet2-tiny.pth.tar", out / "vgg16-quarter.pth"
        write_tiny_stylegan2(generator, resolution=resolution, w_dim=512, n_mlp=8, channels=config_f_channels(resolution))
        write_tiny_flownet2(flow)
        write_tiny_vgg16(vgg, width_divisor=4)
        encoder = out / "e4e-tiny.pt"
        write_tiny_e4e(encoder, num_ws=2 * int(np.log2(resolution)) - 2, generator=generator)
        face_parser = out / "parser-tiny.pth"
        write_tiny_parser(face_parser)
    else:
        generator, flow, vgg = out / "stylegan2-tiny.pt", out / "flownet2-tiny.pth.tar", out / "vgg16-tiny.pth"
        write_tiny_stylegan2(generator, resolution=resolution, w_dim=512, n_mlp=2, max_channels=32)
        write_tiny_flownet2(flow)
        write_tiny_vgg16(vgg)
        encoder = out / "e4e-tiny.pt"
        write_tiny_e4e(encoder, num_ws=2 * int(np.log2(resolution)) - 2, generator=generator)
        face_parser = out / "parser-tiny.pth"
        write_tiny_parser(face_parser)

    # One direction in each accepted layout: a W vector (.npy) and a per-layer W+ direction (.pt).
    num_ws = 2 * int(np.log2(resolution)) - 2
    rng = np.random.default_rng(0)
    vector = rng.standard_normal(512).astype(np.float32)
    np.save(out / "direction-w.npy", vector / np.linalg.norm(vector))
    torch.save(torch.from_numpy(rng.standard_normal((1, num_ws, 512)).astype(np.float32) * 0.1),
               out / "direction-wplus.pt")

    overlay = {
        "models": {"generator": str(generator), "flow": str(flow), "vgg16": str(vgg), "encoder": str(encoder),
                   "parser": str(face_parser)},
        "landmarks": {"detector": "dlib", "max_gap": 5},
        "align": {"resolution": resolution},
        "invert": ({} if full_size else
                   {"steps": steps, "perceptual_size": resolution, "windows_per_shard": 2, "checkpoint_every": 2}),
        # PTI (off unless an overlay turns it on): the random models come with no LPIPS weights, so the
        # tuning uses the inversion's VGG16 term (README "Pivotal tuning"); a few steps at PTI's lr.
        "pti": ({"perceptual": "vgg"} if full_size else
                {"steps": 20, "perceptual": "vgg", "perceptual_size": resolution, "checkpoint_every": 5}),
        # Stitching tuning (off unless an overlay turns it on): STIT's settings, fewer steps.
        "stitch": {} if full_size else {"steps": 20, "checkpoint_every": 4},
        "edits": [
            {"name": "smile", "direction": str(out / "direction-w.npy"), "strength": 2.0, "layers": "all"},
            {"name": "age", "direction": str(out / "direction-wplus.pt"), "strength": 1.5, "layers": [0, 1, 2, 3]},
        ],
        "assemble": {"preset": "ultrafast"},
    }
    path = out / "smoke.yaml"
    what = ("random networks of the real sizes, for GPU measurements" if full_size else
            "a random StyleGAN2 with config F's widths at 256² and small helpers, bench speed's second model" if medium
            else "tiny random models for a fast CPU run")
    path.write_text(f"# Written by `ciinv smoke-models`: {what}.\n"
                    + yaml.safe_dump(overlay, sort_keys=False))
    return path


def write_paper_smoke_models(out_dir: str | os.PathLike, resolution: int = 64, steps: int = 5) -> Path:
    """Smoke-sized stand-ins for ``configs/paper.yaml``: a tiny StyleGAN (v1) in the seed code's
    layout, random unit directions in the layout of InterFaceGAN's StyleGAN (v1) W boundaries
    ((1, 512) float64 .npy, one per attribute, named as the published files), and the models of
    ``write_smoke_models``. Returns the path of ``paper-smoke.yaml``, an overlay for after
    ``config.yaml configs/paper.yaml`` that points the models and the edits at the stand-ins
    (paths, not registry names: the stand-ins do not have the published checksums).
    """
    out = Path(out_dir).resolve()
    smoke = yaml.safe_load(write_smoke_models(out, resolution=resolution, steps=steps).read_text())
    generator = out / "stylegan1-tiny.pt"
    write_tiny_stylegan1(generator, resolution=resolution, w_dim=512, max_channels=32, n_mlp=2)
    rng = np.random.default_rng(1)
    edits = []
    for attribute in direction_attributes("stylegan1"):
        vector = rng.standard_normal((1, 512))
        path = out / Path(CATALOGUE[direction_name(attribute, "stylegan1")].filename).name
        np.save(path, vector / np.linalg.norm(vector))
        edits.append({"name": attribute, "direction": str(path), "strength": 3.0, "layers": "all"})
    overlay = smoke | {"models": smoke["models"] | {"generator": str(generator)}, "edits": edits}
    path = out / "paper-smoke.yaml"
    path.write_text("# Written by `ciinv smoke-models --paper`: tiny stand-ins for configs/paper.yaml's models.\n"
                    + yaml.safe_dump(overlay, sort_keys=False))
    return path

# Shared helpers: config validation, the video table, model paths, and the window plan.

import json
import os
from pathlib import Path

from snakemake.utils import validate

from ciinv.errors import CiinvError
from ciinv.files import read_json
from ciinv.models import is_weightless_flow
from ciinv.models.registry import REGISTRY, resolve
from ciinv.video import VIDEO_SUFFIXES
from ciinv.windows import shard_count


validate(config, "../schemas/config.schema.yaml")


def find_videos(folder):
    """{name: path} for every video file in `folder`; the name is the file name without suffix."""
    videos = {}
    for path in sorted(Path(folder).glob("*")):
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith("."):
            if path.stem in videos:
                raise WorkflowError(f"two videos share the name {path.stem!r}: {videos[path.stem]} and {path}")
            videos[path.stem] = str(path)
    return videos


VIDEOS = find_videos(config["input_dir"])
EDITS = {"recon": {"name": "recon"}} | {e["name"]: e for e in config["edits"]}
MODELS_DIR = config["models_dir"]


wildcard_constraints:
    video="[^/]+",
    edit="[A-Za-z0-9_-]+",
    shard="[0-9]{4}",


def model_path(name_or_path):
    """A registry name becomes its file under models_dir; anything else is a path, used as given."""
    return str(resolve(name_or_path, MODELS_DIR))


def flow_spec(wildcards=None):
    """The flow estimator for `ciinv invert --flow`: a model file, or `dis[:preset]` (no file)."""
    spec = config["models"]["flow"]
    return spec if is_weightless_flow(spec) else model_path(spec)


def flow_files(wildcards):
    return [] if is_weightless_flow(config["models"]["flow"]) else [flow_spec()]


def video_path(wildcards):
    return VIDEOS[wildcards.video]


def shard_files(wildcards):
    """The invert shards of one video; how many is known only once the video is probed."""
    meta = read_json(checkpoints.probe.get(video=wildcards.video).output[0])
    inv = config["invert"]
    try:
        count = shard_count(meta["frames"], inv["window"], inv["stride"], inv["windows_per_shard"])
    except CiinvError:
        # Too short for one window: plan one invert job, which fails with a message naming the
        # file. Raising here would stop the whole workflow, not just this video.
        count = 1
    return [f"results/{wildcards.video}/latents/shard_{k:04d}.pt" for k in range(count)]


def all_outputs(wildcards):
    return [f"results/{video}.{edit}.mp4" for video in VIDEOS for edit in EDITS]

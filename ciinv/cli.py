"""The `ciinv` command: one subcommand per pipeline stage, each usable alone on one video.

The Snakemake rules call these; run `ciinv <stage> --help` for each stage's arguments.
Errors in the input (CiinvError) print one clear line and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from pathlib import Path

from ciinv.config import setting

log = logging.getLogger("ciinv")


def _log_to_stderr() -> None:
    """The package's `logging` messages (INFO and up) go to stderr, one plain line each: the job logs."""
    logger = logging.getLogger("ciinv")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def finite_float(text: str) -> float:
    """argparse type: a float that is neither NaN nor infinite."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def cmd_probe(args) -> None:
    from ciinv.io.files import write_json
    from ciinv.io.video import probe

    meta = probe(args.video)
    write_json(args.out, meta)
    log.info(json.dumps(meta))


def cmd_trim(args) -> None:
    from ciinv.io.trim import trim

    use_threads(args.threads)
    trim(args.video, args.out, args.start, args.end)


def cmd_collision(args) -> None:
    from ciinv.errors import CiinvError
    from ciinv.io.folder import Collision

    raise CiinvError(Collision(args.name, tuple(args.files), args.where, args.fix).message)


def cmd_landmarks(args) -> None:
    from ciinv.gpu import job_device
    from ciinv.faces.landmarks import detect_video, save_landmarks
    from ciinv.io.meta import read_meta

    use_threads(args.threads)
    result = detect_video(
        args.video, detector=args.detector, max_gap=args.max_gap,
        # dlib runs on the CPU: it must not hold a GPU that an invert job is waiting for.
        device=job_device(args.device) if args.detector == "fan" else "cpu",
        models_dir=args.models_dir, meta=read_meta(args.meta) if args.meta else None, min_share=args.min_share,
        fan_files=[f for f in args.fan_files if f] or None,
    )
    save_landmarks(args.out, result)
    log.info(f"landmarks: {result['face_detected'].shape[1]} face track(s); the main face found in "
             f"{int(result['detected'].sum())}/{len(result['detected'])} frames")


def cmd_face_landmarks(args) -> None:
    from ciinv.faces.landmarks import face_landmarks, load_landmarks, save_landmarks

    save_landmarks(args.out, face_landmarks(load_landmarks(args.landmarks), args.face))


def cmd_align(args) -> None:
    from ciinv.faces.align import align_video
    from ciinv.io.meta import read_meta

    use_threads(args.threads)
    align_video(
        args.video, args.landmarks, args.out, args.crops, resolution=args.resolution,
        center_sigma=args.center_sigma, axes_sigma=args.axes_sigma, meta=read_meta(args.meta) if args.meta else None,
    )


def cmd_invert(args) -> None:
    from ciinv.gpu import job_device
    from ciinv.inversion.invert import invert_shard
    from ciinv.inversion.settings import InvertSettings
    from ciinv.io.meta import read_meta

    settings = InvertSettings.from_dict(section_values(args, "invert"))
    meta = read_meta(args.meta)
    invert_shard(
        args.crops, meta["frames"], int(args.shard), settings, generator_path=args.generator, flow_path=args.flow,
        vgg_path=args.vgg16, out_path=args.out, device=job_device(args.device),
        source=meta.get("path", args.crops), encoder_path=args.encoder or None,
    )


def cmd_merge(args) -> None:
    from ciinv.inversion.shards import merge_shards
    from ciinv.io.meta import read_meta

    merge_shards(args.shards, read_meta(args.meta)["frames"], args.out, noise_path=args.noise)


def cmd_edit(args) -> None:
    from ciinv.edits.directions import check_direction
    from ciinv.edits.stage import write_edit
    from ciinv.edits.spec import EditSpec
    from ciinv.errors import CiinvError
    from ciinv.models import load_generator
    from ciinv.models.registry import require, resolve_direction

    edit = json.loads(args.edit)
    spec = EditSpec.from_entry(edit)
    if args.other and spec.other_video is not None:
        edit = spec.with_other_codes(args.other)
    generator = load_generator(args.generator)  # on the CPU: only its shape and SeFa weights are needed
    direction = None
    if spec.needs_direction_file:  # a misspelled name, a folder or /dev/zero: said as such, not "not found"
        check_direction(spec.name, args.direction or spec.direction, args.generator, args.models_dir)
    try:
        if spec.needs_direction_file:
            direction = args.direction or require(resolve_direction(spec.direction, args.generator, args.models_dir),
                                                  args.models_dir)
    except CiinvError as exc:
        raise CiinvError(f"edit {edit.get('name')!r}: {exc}") from None
    write_edit(args.latents, generator, edit, args.out, direction_path=direction)


def _renderer_generator(args):
    """The generator of ``--generator`` on the claimed device, in eval mode: (generator, device)."""
    from ciinv.gpu import job_device
    from ciinv.models import load_generator

    device = job_device(args.device)
    return load_generator(args.generator).to(device).eval().requires_grad_(False), device


def cmd_pti(args) -> None:
    from ciinv.gpu import job_device
    from ciinv.inversion.pti import pti_video
    from ciinv.inversion.settings import PTISettings

    settings = PTISettings.from_dict(section_values(args, "pti"))
    pti_video(args.crops, args.latents, args.generator, args.vgg16, settings, args.out, noise_path=args.noise,
              lpips_path=args.lpips, device=job_device(args.device))


def cmd_stitch(args) -> None:
    from ciinv.gpu import job_device
    from ciinv.inversion.settings import StitchSettings
    from ciinv.inversion.stitch import stitch_video

    from ciinv.faces.paste import PasteSettings

    settings = StitchSettings.from_dict(section_values(args, "stitch"))
    paste = PasteSettings.from_dict(section_values(args, "paste"))
    stitch_video(args.crops, args.codes, args.generator, settings, args.out, noise_path=args.noise, paste=paste,
                 parser_path=args.parser, landmarks_path=args.landmarks, align_path=args.align,
                 device=job_device(args.device))


def cmd_assemble(args) -> None:
    """One face, or several (``faces: all``): the per-face options (--align, --codes, --noise,
    --generator, --stitched, --crops, --landmarks) are given once per face, in the same order."""
    from ciinv.errors import CiinvError
    from ciinv.faces.align import load_align
    from ciinv.faces.assemble import ClipMasks, PastedFace, assemble_faces
    from ciinv.faces.paste import PasteSettings, require_inputs
    from ciinv.faces.render import load_renderer
    from ciinv.gpu import job_device
    from ciinv.io.crops import open_crops
    from ciinv.io.meta import read_meta

    use_threads(args.threads)
    settings = PasteSettings.from_dict(section_values(args, "paste"))
    count = len(args.align)

    def per_face(option: str, values: list[str] | None) -> list[str]:
        values = [v for v in values or [] if v]
        if values and len(values) != count:
            raise CiinvError(f"assemble: {len(values)} {option} for {count} --align (one per face, in the same order)")
        return values or [""] * count

    codes, noise, generators = per_face("--codes", args.codes), per_face("--noise", args.noise), per_face(
        "--generator", args.generator)
    stitched, crops, landmarks = per_face("--stitched", args.stitched), per_face("--crops", args.crops), per_face(
        "--landmarks", args.landmarks)
    if not all(stitched) and not (all(codes) and all(generators)):
        raise CiinvError("assemble: give --codes and --generator (render the codes), or --stitched (the stitch "
                         "stage's crops)")
    device = job_device(args.device)
    parser = None
    loaded = {}  # generator path -> the generator (faces share it without pti)
    pasted = []
    for face in range(count):
        require_inputs(settings, parser_path=args.parser, crops_path=crops[face], landmarks_path=landmarks[face])
        if stitched[face]:  # the stitch stage's crops: nothing to render
            faces = open_crops(stitched[face], rerun="rerun the stitch stage for this video and edit")
            name = stitched[face]
        else:
            if generators[face] not in loaded:
                from ciinv.models import load_generator

                loaded[generators[face]] = load_generator(generators[face]).to(device).eval().requires_grad_(False)
            faces = load_renderer(codes[face], loaded[generators[face]], noise[face] or None, device=device,
                                  batch=args.batch, rerun="rerun the edit stage for this video and edit")
            name = codes[face]
        source_crops = points = None
        if settings.mask == "parser":
            from ciinv.faces.paste import load_mask_parser

            parser = parser or load_mask_parser(args.parser, device=device)
            source_crops = open_crops(crops[face])
        elif settings.mask == "landmarks":
            from ciinv.faces.landmarks import load_landmarks

            points = load_landmarks(landmarks[face])["points"]
        masks = ClipMasks(settings, load_align(args.align[face])["quads"], parser=parser, crops=source_crops,
                          points=points, landmarks_path=landmarks[face])
        pasted.append(PastedFace(args.align[face], faces, masks, name))
    assemble_faces(args.video, read_meta(args.meta), pasted, args.out, crf=args.crf, preset=args.preset)


def cmd_report_assets(args) -> None:
    from ciinv import models
    from ciinv.errors import CiinvError
    from ciinv.metrics import load_lpips
    from ciinv.models.catalogue import CATALOGUE, LPIPS_MODEL
    from ciinv.faces.align import load_align
    from ciinv.faces.landmarks import load_landmarks
    from ciinv.faces.render import load_renderer
    from ciinv.faces.identity import FaceEmbedder
    from ciinv.report import FullFrames, report_assets
    from ciinv.io.meta import read_meta

    if not len(args.edits) == len(args.names) == len(args.outputs):
        raise CiinvError(f"report-assets: {len(args.edits)} --edits files, {len(args.outputs)} --outputs videos "
                         f"but {len(args.names)} --names")
    if args.stitched and len(args.stitched) != len(args.names):
        raise CiinvError(f"report-assets: {len(args.stitched)} --stitched crops but {len(args.names)} --names")
    generator, device = _renderer_generator(args)
    if args.stitched:  # what the outputs pasted: the stitch stage's crops, not the codes
        edits = dict(zip(args.names, map(Path, args.stitched)))
    else:
        edits = {name: load_renderer(path, generator, args.noise, device=device, batch=args.batch,
                                     name=f"edit {name!r} ({path})",
                                     rerun="rerun the edit stage for this video and edit")
                 for name, path in zip(args.names, args.edits)}
    flow_net = models.load_flow(args.flow).to(device).eval().requires_grad_(False)
    lpips, note = None, None
    if args.lpips:
        try:
            lpips = load_lpips(args.vgg16, args.lpips).to(device)
        except CiinvError as exc:  # e.g. linear layers that do not fit the configured VGG16: leave it out, say why
            note = str(exc)
            log.info(f"report-assets: LPIPS left out: {note}")
    else:
        note = (f"its weights are missing (`ciinv models fetch {LPIPS_MODEL}` puts them in "
                f"models/{CATALOGUE[LPIPS_MODEL].filename})")
    embedder, embedder_note = None, None
    try:
        embedder = FaceEmbedder()
    except CiinvError as exc:  # face_recognition_models missing: leave TL-ID/TG-ID out, say why
        embedder_note = str(exc)
        log.info(f"report-assets: TL-ID and TG-ID left out: {embedder_note}")
    align = load_align(args.align)
    frames = FullFrames(Path(args.video), read_meta(args.meta), align["quads"],
                        load_landmarks(args.landmarks)["points"], dict(zip(args.names, map(Path, args.outputs))),
                        edited=align["edited"])
    report_assets(args.crops, edits, args.shards, frames, args.out, flow_net, device=device, lpips=lpips,
                  lpips_note=note, embedder=embedder, embedder_note=embedder_note)


def cmd_models(args) -> None:
    from ciinv.errors import CiinvError
    from ciinv.models.download import fetch_models
    from ciinv.models.catalogue import CATALOGUE, GENERATOR_FAMILY
    from ciinv.models.registry import direction_attributes, status

    if args.action == "fetch":
        names = list(CATALOGUE) if args.all else list(args.names) + list(args.file)
        if not names:
            raise CiinvError(f"name what to fetch ({', '.join(CATALOGUE)}), or --all")
        fetch_models(names, args.models_dir)
        return
    needed = None
    if args.config:
        from ciinv.config import load_config
        from ciinv.models.registry import needed_models

        config = load_config(args.config)
        needed = needed_models(config)
        args.models_dir = config["models_dir"]  # the folder this config reads them from
        print(f"* = needed by {', '.join(args.config)} (models_dir {config['models_dir']})")
    width = max(map(len, CATALOGUE))
    for name, entry in CATALOGUE.items():
        state = status(name, args.models_dir)
        mark = "" if needed is None else ("* " if name in needed else "  ")
        why = f"   needed for {needed[name]}" if needed and name in needed else ""
        print(f"{mark}{name:{width}s} {state:15s} {Path(args.models_dir) / entry.filename}{why}")
        if state != "present" and (needed is None or name in needed):
            print(f"{' ' * len(mark)}{'':{width}s} get it with: ciinv models fetch {name}   ({entry.url})")
    if needed is not None:
        missing = [name for name in needed if status(name, args.models_dir) == "missing"]
        print(f"this config needs {len(needed)} of these files; {len(missing)} missing"
              + (f": ciinv models fetch {' '.join(missing)}" if missing else ""))
    for family in dict.fromkeys(GENERATOR_FAMILY.values()):
        print(f"edits: `direction: NAME` with a {family} generator: NAME is one of "
              f"{', '.join(direction_attributes(family))} (interfacegan-{family}-NAME above)")


def cmd_check_config(args) -> None:
    from ciinv.config import load_config
    from ciinv.edits.directions import check_direction, strength_warning
    from ciinv.edits.spec import EditSpec

    config = load_config(args.configs)
    for entry in config.get("edits") or []:
        spec = EditSpec.from_entry(entry)
        if spec.needs_direction_file:
            warning = check_direction(spec.name, spec.direction, config["models"]["generator"], config["models_dir"],
                                      missing_ok=True)
            if warning:
                log.warning(f"warning: {warning}")
        if strength_warning(spec):
            log.warning(f"warning: {strength_warning(spec)}")
    print(f"{', '.join(args.configs)}: ok ({len(config.get('edits') or [])} edit(s))")


def cmd_smoke_models(args) -> None:
    from ciinv.dev.smoke import write_paper_smoke_models, write_smoke_models

    if args.paper:  # writes the plain smoke models and smoke.yaml too
        paper = write_paper_smoke_models(args.dir, resolution=args.resolution)
        print(paper.with_name("smoke.yaml"))
        print(paper)
    else:
        print(write_smoke_models(args.dir, resolution=args.resolution, full_size=args.full_size, size=args.size))


def cmd_sample_clip(args) -> None:
    from ciinv.dev.sample import make_clip

    make_clip(args.out, frames=args.frames, fps=args.fps, size=(args.width, args.height), audio=not args.no_audio,
              rotation=args.rotation, seed=args.seed)


def cmd_bench_synth(args) -> None:
    from ciinv.bench.synth import bench_synth
    from ciinv.config import load_config

    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    directions = args.directions if args.directions in ("auto", "random") else [
        d.strip() for d in args.directions.split(",") if d.strip()]
    bench_synth(load_config(args.config), args.out, n=args.n, steps=args.steps, variants=variants, seed=args.seed,
                truncation=args.truncation, edit_strength=args.edit_strength, device=args.device,
                directions=directions, truth_noise=args.truth_noise, pti_steps=args.pti_steps)
    print((Path(args.out) / "synth.md").read_text())


def cmd_bench_video(args) -> None:
    from ciinv.bench.video import bench_video
    from ciinv.config import load_config

    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    bench_video(load_config(args.config), args.videos, args.out, variants=variants, steps=args.steps,
                frames=args.frames, device=args.device)
    print((Path(args.out) / "video.md").read_text())


def cmd_bench_speed(args) -> None:
    from ciinv.bench.speed import bench_speed, speedup_line
    from ciinv.config import load_config

    schedules = [s.strip() for s in args.schedules.split(",") if s.strip()] if args.schedules else None
    rows = bench_speed(load_config(args.config), args.out, frames=args.frames, steps=args.steps, device=args.device,
                       seeds=args.seeds, reference=args.reference, schedules=schedules,
                       official_as_code=not args.official_batched)
    print((Path(args.out) / "speed.md").read_text())
    print(speedup_line(rows))


def cmd_bench_blend(args) -> None:
    from ciinv.bench.blend import bench_blend
    from ciinv.config import load_config
    from ciinv.gpu import pick_device

    use_threads(args.threads)
    _, line = bench_blend(load_config(args.config), args.out, clips=args.clips, frames=args.frames, size=args.size,
                          resolution=args.resolution, masks=args.masks.split(","), device=pick_device(args.device))
    print((Path(args.out) / "blend.md").read_text().rstrip("\n").removesuffix(line).rstrip())
    print(line)


def cmd_bench_stages(args) -> None:
    import logging

    from ciinv.bench.stages import bench_stages, peak_memory_mb, table
    from ciinv.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = bench_stages(load_config(args.config), args.videos, args.out, repeat=args.repeat)
    for row in rows:
        print(table(row))
    print(f"peak memory of the run: {peak_memory_mb():.0f} MB")


def _subcommand(subparsers, name: str, summary: str) -> argparse.ArgumentParser:
    """A subcommand whose one-line summary is both its entry in the list and its --help description."""
    return subparsers.add_parser(name, help=summary, description=summary)


# --- settings: one option per config key -------------------------------------------------------
# Every setting reaches a subcommand as its own option, named after its config key (invert.max_gap is
# --max-gap), with the schema's default, help and allowed values: `ciinv <stage> --help` lists
# them, a command typed by hand names only what differs from the defaults, and the workflow's
# rules pass their config blocks through config_arguments below, which writes the same options.


def config_flag(key: str) -> str:
    """The option of a config key: ``invert.windows_per_batch`` -> ``--windows-per-batch``."""
    return "--" + key.rsplit(".", 1)[-1].replace("_", "-")


def _count_or(word: str):
    """argparse type for a setting that is a whole number or one word (``auto``)."""

    def parse(text: str):
        return text if text == word else int(text)

    parse.__name__ = f"integer or {word}"  # what argparse names in its error
    return parse


def _parse_as(entry: dict) -> dict:
    """argparse keywords that read an option's words as the schema entry's type."""
    kind = entry.get("type")
    if kind == "boolean":
        return {"action": argparse.BooleanOptionalAction}
    if kind == "array":
        fixed = "minItems" in entry and entry["minItems"] == entry.get("maxItems")
        return {"nargs": entry["minItems"] if fixed else "*", **_parse_as(entry["items"])}
    if kind in ("integer", "number"):
        return {"type": int if kind == "integer" else finite_float}
    forms = entry.get("oneOf", [])
    words = [form["const"] for form in forms if "const" in form]
    if words and any(form.get("type") == "integer" for form in forms):
        return {"type": _count_or(words[0])}
    return {"choices": entry["enum"]} if "enum" in entry else {}


def config_option(parser: argparse.ArgumentParser, key: str) -> None:
    """``--name`` for the config key ``section.name``: its default, help, type and choices are the schema's."""
    entry = setting(key)
    parser.add_argument(config_flag(key), default=entry["default"], help=entry["description"], **_parse_as(entry))


def config_options(parser: argparse.ArgumentParser, section: str, skip: tuple[str, ...] = ()) -> None:
    """``config_option`` for every key of the config block ``section`` but ``skip``."""
    for name in setting(section)["properties"]:
        if name not in skip:
            config_option(parser, f"{section}.{name}")


def config_arguments(section: str, block: dict, skip: tuple[str, ...] = ()) -> list[str]:
    """The words that give ``block`` (a config block such as ``config["invert"]``) to a subcommand
    made with ``config_options(parser, section)``: ``--name value`` per key but ``skip``, a boolean
    as ``--name`` or ``--no-name``, a list as its items. The workflow's rules pass their settings so."""
    words = []
    for name, value in block.items():
        if name in skip:
            continue
        flag = config_flag(f"{section}.{name}")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, (list, tuple)):
            words += [flag, *map(str, value)]
        else:
            words += [flag, str(value)]
    return words


def section_values(args: argparse.Namespace, section: str) -> dict:
    """``{name: value}`` of the options ``config_options(parser, section)`` made, as parsed."""
    return {name: getattr(args, name) for name in setting(section)["properties"] if hasattr(args, name)}


# --- CPU threads ----------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is less than 1")
    return value


def threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: the CPU threads a stage may use (in the workflow, its rule's ``threads:``)."""
    parser.add_argument("--threads", type=positive_int, help="CPU threads for decoding, encoding, OpenCV and "
                        "torch (default: each tool's own choice, about one per core)")


def use_threads(count: int | None) -> None:
    """Hold this process to ``count`` CPU threads: torch's, OpenCV's and those of every ffmpeg it
    starts (None: leave each tool to its own choice)."""
    if count is None:
        return
    import cv2

    from ciinv.io.ffmpeg import set_ffmpeg_threads

    # torch sizes its thread pool from OMP_NUM_THREADS when it loads (not every stage loads it);
    # one loaded already is told directly.
    os.environ["OMP_NUM_THREADS"] = str(count)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)
    cv2.setNumThreads(count)
    set_ffmpeg_threads(count)


def _render_options(p: argparse.ArgumentParser, required: bool = True, per_face: bool = False) -> None:
    """The options of a subcommand that renders codes with the generator (ciinv/faces/render.py);
    ``per_face``: --generator and --noise are given once per face (assemble)."""
    repeat = {"action": "append"} if per_face else {}
    once = " (once per face)" if per_face else ""
    p.add_argument("--generator", required=required, help=f"generator checkpoint (.pkl or .pt) that renders the "
                   f"codes{once}", **repeat)
    p.add_argument("--noise", help="noise.pt from merge: the video's own noise maps (plus variant); "
                   f"without it, or when it holds none, the generator's constant noise{once}", **repeat)
    p.add_argument("--batch", type=int, help="frames per generator call (speed and memory only; default 8 on "
                   "a GPU, 2 on the CPU)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")


def build_parser() -> argparse.ArgumentParser:
    from ciinv.edits.spec import command_line_forms

    parser = argparse.ArgumentParser(prog="ciinv", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = _subcommand(sub, "probe", "frame count, exact fps, size, rotation, audio -> meta.json")
    p.add_argument("video", help="the video file")
    p.add_argument("--out", required=True, help="meta.json to write")
    p.set_defaults(func=cmd_probe)

    p = _subcommand(sub, "trim", "a span of a video (seconds), every frame kept as it is, with its sound -> .mkv")
    p.add_argument("video", help="the video file")
    p.add_argument("--start", type=finite_float, help="seconds from the start where the span begins (default: 0)")
    p.add_argument("--end", type=finite_float, help="seconds where it ends (default: the video's end)")
    p.add_argument("--out", required=True, help="the trimmed video to write (.mkv: FFV1, FLAC)")
    threads_option(p)
    p.set_defaults(func=cmd_trim)

    p = _subcommand(sub, "collision", "fail, naming the inputs that would share one results folder (the workflow's "
                    "rule collision)")
    p.add_argument("name", help="the results folder's name they share")
    p.add_argument("--files", nargs="+", required=True, help="the inputs")
    p.add_argument("--where", required=True, help="where the name comes from (input_dir, or a sheet's rows)")
    p.add_argument("--fix", required=True, help="what to change")
    p.set_defaults(func=cmd_collision)

    p = _subcommand(sub, "landmarks", "68 face landmarks per frame, every face tracked -> landmarks.npz")
    p.add_argument("video", help="the video file")
    p.add_argument("--meta", help="meta.json from probe (else the video is probed again)")
    p.add_argument("--out", required=True, help="landmarks.npz to write")
    config_options(p, "landmarks")
    config_option(p, "models_dir")
    p.add_argument("--fan-files", nargs="*", default=[], metavar="FILE",
                   help="the fan detector's weights, S3FD then 2D-FAN-4, instead of their files in --models-dir "
                   "(empty strings are ignored)")
    threads_option(p)
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_landmarks)

    p = _subcommand(sub, "face-landmarks", "one tracked face of landmarks.npz -> its own landmarks.npz (faces: all)")
    p.add_argument("--landmarks", required=True, help="landmarks.npz from `ciinv landmarks`")
    p.add_argument("--face", required=True, type=int, help="which face track: 0 (found in most frames), 1, ...")
    p.add_argument("--out", required=True, help="the face's landmarks.npz to write")
    p.set_defaults(func=cmd_face_landmarks)

    p = _subcommand(sub, "align", "smoothed FFHQ crops -> align.npz and crops.mkv (lossless)")
    p.add_argument("video", help="the video file")
    p.add_argument("--meta", help="meta.json from probe (else the video is probed again)")
    p.add_argument("--landmarks", required=True, help="landmarks.npz from `ciinv landmarks`")
    p.add_argument("--out", required=True, help="align.npz")
    p.add_argument("--crops", required=True, help="crops file to write (.mkv: one lossless FFV1 stream)")
    config_options(p, "align")
    threads_option(p)
    p.set_defaults(func=cmd_align)

    p = _subcommand(sub, "invert", "joint MAC+ICC inversion of one shard of windows -> shard .pt")
    p.add_argument("--crops", required=True, help="aligned crops file from `ciinv align`")
    p.add_argument("--meta", required=True, help="meta.json from probe")
    p.add_argument("--shard", required=True, help="shard index (0-based)")
    p.add_argument("--generator", required=True, help="generator checkpoint (.pkl or .pt)")
    p.add_argument("--flow", required=True, help="flow estimator: a model file, or dis[:preset] (no file)")
    p.add_argument("--vgg16", required=True, help="VGG16 weights for the perceptual loss")
    p.add_argument("--encoder", default="", help="e4e encoder checkpoint, for init e4e (empty: none)")
    config_options(p, "invert")
    p.add_argument("--out", required=True, help="shard .pt to write")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_invert)

    p = _subcommand(sub, "merge", "blend the shards' codes -> latents.npy [frames, layers, 512]")
    p.add_argument("shards", nargs="+", help="shard .pt files from `ciinv invert`, in order")
    p.add_argument("--meta", required=True, help="meta.json from probe")
    p.add_argument("--out", required=True, help="latents.npy to write")
    p.add_argument("--noise", help="noise.pt for the plus variant's noise maps (default: beside --out)")
    p.set_defaults(func=cmd_merge)

    p = _subcommand(sub, "pti", "pivotal tuning: tune the generator so the fixed codes reproduce the crops "
                    "-> generator_pti.pt")
    p.add_argument("--crops", required=True, help="aligned crops file from `ciinv align`")
    p.add_argument("--latents", required=True, help="latents.npy from merge (the pivots; kept fixed)")
    p.add_argument("--noise", help="noise.pt from merge (the plus variant's noise maps; kept fixed)")
    p.add_argument("--generator", required=True, help="generator checkpoint to tune a copy of (.pkl or .pt)")
    p.add_argument("--vgg16", required=True, help="VGG16 weights (LPIPS' backbone, or the vgg perceptual term)")
    p.add_argument("--lpips", nargs="?", const=None, default=None,
                   help="the lpips wheel (or its vgg.pth); needed with perceptual: lpips")
    config_options(p, "pti", skip=("enabled",))  # the workflow's switch: running the stage is enabling it
    p.add_argument("--out", required=True, help="generator_pti.pt to write")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_pti)

    p = _subcommand(sub, "stitch", "stitching tuning: per frame, a generator copy tuned so its render meets the "
                    "original crop around the face -> stitched crops (.mkv, lossless)")
    p.add_argument("--crops", required=True, help="aligned crops file from `ciinv align`")
    p.add_argument("--codes", required=True, help="the edited codes from `ciinv edit` (or latents.npy: no edit)")
    p.add_argument("--noise", help="noise.pt from merge (the plus variant's noise maps)")
    p.add_argument("--generator", required=True, help="the generator that renders the video (generator_pti.pt with "
                   "PTI): each frame tunes a copy of it")
    config_options(p, "stitch", skip=("enabled",))  # the workflow's switch: running the stage is enabling it
    # The paste mask, whose edge the border band surrounds (each frame's own: not smoothed over time,
    # every frame parsed).
    from ciinv.inversion.settings import STITCH_PASTE_SKIPS

    config_options(p, "paste", skip=STITCH_PASTE_SKIPS)
    p.add_argument("--parser", default="", help="the face parser's weights, for --mask parser (empty: none)")
    p.add_argument("--landmarks", default="", help="landmarks.npz (landmarks stage), for --mask landmarks "
                   "(empty: none)")
    p.add_argument("--align", default="", help="align.npz (align stage), for --mask landmarks (empty: none)")
    p.add_argument("--out", required=True, help="stitched crops file to write (.mkv)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_stitch)

    p = _subcommand(sub, "edit", "add one edit to the codes -> the edited codes (.npy [frames, layers, 512])")
    p.add_argument("--latents", required=True, help="latents.npy from merge")
    p.add_argument("--generator", required=True, help="generator checkpoint (.pkl or .pt): checks the codes, "
                   "computes sefa:K directions")
    p.add_argument("--edit", required=True, help=f"one edit as JSON: {command_line_forms()}")
    config_option(p, "models_dir")
    p.add_argument("--direction", default="", help="the direction file itself, instead of the one the entry's "
                   "direction names in --models-dir (empty: that one)")
    p.add_argument("--other", default="", help="for morph_with and transfer_from: the other video's latents.npy, "
                   "instead of the path in the entry (empty: that path)")
    p.add_argument("--out", required=True, help=".npy file for the edited codes")
    p.set_defaults(func=cmd_edit)

    p = _subcommand(sub, "assemble", "render the edited codes, paste the faces back and encode with the source "
                    "audio -> .mp4 (one stream, no crops on disk)")
    p.add_argument("video", help="the source video file")
    p.add_argument("--meta", required=True, help="meta.json from probe")
    # Per face (faces: all gives each once per face, in one order); one face: each once, as before.
    p.add_argument("--align", required=True, action="append", help="align.npz from `ciinv align` (once per face)")
    p.add_argument("--codes", action="append", help="the edited codes from `ciinv edit` (or latents.npy: no edit), "
                   "rendered here (once per face)")
    _render_options(p, required=False, per_face=True)
    p.add_argument("--stitched", action="append", help="instead of --codes and --generator: the faces as crops (the "
                   "stitch stage's stitched/<edit>.mkv), pasted as they are (once per face)")
    p.add_argument("--parser", default="", help="the face parser's weights, for --mask parser (empty: none)")
    p.add_argument("--crops", action="append", help="the source crops (align stage), for --mask parser (once per face; "
                   "empty: none)")
    p.add_argument("--landmarks", action="append", help="landmarks.npz (landmarks stage), for --mask landmarks "
                   "(once per face; empty: none)")
    p.add_argument("--out", required=True, help=".mp4 to write")
    config_options(p, "paste")
    config_options(p, "assemble")
    threads_option(p)
    p.set_defaults(func=cmd_assemble)

    p = _subcommand(sub, "report-assets", "the pictures and metrics of one video for `snakemake --report`: "
                    "stills.png, preview.png (animated), losses.png and metrics.html in --out")
    p.add_argument("--video", required=True, help="the source video")
    p.add_argument("--crops", required=True, help="the aligned crops file (align stage)")
    p.add_argument("--meta", required=True, help="meta.json of the video (probe stage)")
    p.add_argument("--align", required=True, help="align.npz of the video (align stage): where the face is")
    p.add_argument("--landmarks", required=True, help="landmarks.npz of the video (landmarks stage): for TL-ID/TG-ID")
    p.add_argument("--outputs", nargs="+", required=True, help="the assembled videos, one per edit in the order "
                   "of --names (assemble stage)")
    p.add_argument("--edits", nargs="+", required=True, help="edited codes, one .npy per edit (edit stage), "
                   "rendered here")
    p.add_argument("--names", nargs="+", required=True, help="the edits' names, in the order of --edits")
    p.add_argument("--stitched", nargs="*", default=[], help="with stitch.enabled: the stitch stage's crops, one "
                   "per edit in the order of --names, which the outputs pasted: shown and measured instead of "
                   "the codes rendered")
    _render_options(p)
    p.add_argument("--shards", nargs="+", required=True, help="the video's invert shards (latents/shard_*.pt)")
    p.add_argument("--flow", required=True, help="flow estimator for the warping error: a FlowNet2/RAFT file or dis")
    p.add_argument("--vgg16", required=True, help="torchvision's VGG16 weights (LPIPS' backbone)")
    p.add_argument("--lpips", nargs="?", const=None, default=None,
                   help="the lpips wheel (or its vgg.pth); without it the table says LPIPS is left out")
    p.add_argument("--out", required=True, help="folder for the four files")
    p.set_defaults(func=cmd_report_assets)

    p = _subcommand(sub, "models", "list the model files and their status, or fetch them")
    p.add_argument("action", nargs="?", choices=["status", "fetch"], default="status",
                   help="status: list the files and whether each is present; fetch: download them")
    p.add_argument("names", nargs="*", help="registry names to fetch")
    p.add_argument("--all", action="store_true", help="fetch every file in the registry")
    p.add_argument("--file", action="append", default=[], help="fetch the registry entry with this file name")
    p.add_argument("--config", nargs="+", metavar="YAML",
                   help="config.yaml and overlays: mark (*) the files this config needs, and say which are missing")
    config_option(p, "models_dir")
    p.set_defaults(func=cmd_models)

    p = _subcommand(sub, "check-config", "check config files as the workflow would, naming the file and key "
                    "(Snakemake's own messages name neither for an empty file or a !!python tag)")
    p.add_argument("configs", nargs="+", help="config.yaml and the overlays, in the order given to --configfile")
    p.set_defaults(func=cmd_check_config)

    p = _subcommand(sub, "smoke-models", "tiny random checkpoints in the real formats + a config overlay")
    p.add_argument("dir", help="folder for the checkpoints and smoke.yaml")
    p.add_argument("--resolution", type=int, default=64, help="generator output resolution in pixels")
    p.add_argument("--full-size", action="store_true", help="random networks of the real sizes (1024², ~1.3 GB) "
                   "for speed and memory measurements on a GPU")
    p.add_argument("--size", choices=["tiny", "medium", "full"], default="tiny",
                   help="tiny: narrow 64² models (default); medium: a random StyleGAN2 with config F's channel widths "
                   "at 256² (bench speed's second model); full: as --full-size")
    p.add_argument("--paper", action="store_true", help="also stand-ins for configs/paper.yaml (StyleGAN v1, its "
                   "InterFaceGAN directions) and paper-smoke.yaml, an overlay for after it")
    p.set_defaults(func=cmd_smoke_models)

    p = _subcommand(sub, "sample-clip", "a short real-face clip (scikit-image's astronaut) with motion and sound")
    p.add_argument("out", help=".mp4 to write")
    p.add_argument("--frames", type=int, default=50, help="number of frames")
    p.add_argument("--fps", default="25", help="frame rate, a number or a fraction such as 30000/1001")
    p.add_argument("--width", type=int, default=256, help="width in pixels")
    p.add_argument("--height", type=int, default=256, help="height in pixels")
    p.add_argument("--rotation", type=int, default=0, choices=[0, 90, 180, 270],
                   help="rotation tag in the file's metadata (degrees)")
    p.add_argument("--no-audio", action="store_true", help="no audio track")
    p.add_argument("--seed", type=int, default=0, help="random seed of the motion and sound")
    p.set_defaults(func=cmd_sample_clip)

    p = _subcommand(sub, "bench", "the paper's experiments: metrics per inversion variant")
    which = p.add_subparsers(dest="bench_command", required=True, help="which experiment")
    p = _subcommand(which, "synth", "invert sequences the generator made itself; compare with the true codes")
    p.add_argument("--config", nargs="+", required=True, help="config files, merged in order (config.yaml overlay...)")
    p.add_argument("--out", required=True, help="folder for synth.csv, synth.md, synth.png")
    p.add_argument("--n", type=int, default=100, help="number of sequences")
    p.add_argument("--steps", type=int, help="Adam steps per sequence (default: the config's invert.steps)")
    p.add_argument("--variants", default="i2s,no_mac,no_icc,full",
                   help="comma-separated: i2s,no_mac,no_icc,full,plus, and pti (pivotal tuning on full's codes, "
                   "or on the configured variant's without full)")
    p.add_argument("--pti-steps", type=int, help="Adam steps of the pti row (default: the config's pti.steps)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--truncation", type=float, default=1.0, help="psi for the sampled codes (1: none)")
    p.add_argument("--edit-strength", type=float, default=3.0, help="strength of the edit direction")
    p.add_argument("--directions", default="auto",
                   help="auto (the generator's InterFaceGAN directions if fetched, else random) | random | "
                   "comma-separated directions as in edits: (e.g. age,smile,pose): sequence i moves along one, "
                   "its edit along the next")
    p.add_argument("--truth-noise", choices=["random", "constant"], default="random",
                   help="noise of the true frames: random (seeded, one draw per sequence) or the constant maps "
                   "the inversions start from (the truth is then exactly reachable)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_bench_synth)

    p = _subcommand(which, "video", "invert real clips with each variant; NIQE, FID and the temporal error")
    p.add_argument("videos", nargs="+", help="video files, or folders of them")
    p.add_argument("--config", nargs="+", required=True, help="config files, merged in order (config.yaml overlay...)")
    p.add_argument("--out", required=True, help="folder for video.csv, video.md, video.png (and work/, the crops)")
    p.add_argument("--variants", default="i2s,no_mac,no_icc,full", help="comma-separated: i2s,no_mac,no_icc,full,plus")
    p.add_argument("--steps", type=int, help="Adam steps per window (default: the config's invert.steps)")
    p.add_argument("--frames", type=int, help="invert only the first N frames of each clip (default: all)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_bench_video)

    p = _subcommand(which, "speed", "FLOPs and seconds per output frame: ciinv against the paper's code")
    p.add_argument("--config", nargs="+", required=True, help="config files, merged in order (config.yaml overlay...)")
    p.add_argument("--out", required=True, help="folder for speed.csv and speed.md")
    p.add_argument("--frames", type=int, default=41, help="frames of each synthesized sequence")
    p.add_argument("--steps", type=int, help="S: steps per window for the official schedule, the cap for ours "
                   "(default: the config's invert.steps)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="one sequence per seed (report on these; benchmarks/stop_sweep.py tunes on 100 101 102)")
    p.add_argument("--reference", help="a speed.csv of an earlier run with the same models, frames, steps and "
                   "settings: its official rows are reused instead of run")
    p.add_argument("--schedules", help="comma-separated rows to run besides the official ones (default: all)")
    p.add_argument("--official-batched", action="store_true", help="run the official rows' windows batched and with "
                   "the real frames' VGG taps kept: the same codes, MSE and FLOPs in less time, but no seconds")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_bench_speed)

    p = _subcommand(which, "blend", "the paste-back masks on synthesized full frames whose ideal output is known")
    p.add_argument("--config", nargs="+", required=True, help="config files, merged in order (config.yaml overlay...)")
    p.add_argument("--out", required=True, help="folder for blend.csv, blend.md, blend.png")
    p.add_argument("--clips", type=int, default=3, help="number of clips (seeds 0, 1, ...)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--size", type=int, default=256, help="frame side in pixels")
    p.add_argument("--resolution", type=int, default=256, help="side of the aligned crops the render is cut into")
    p.add_argument("--masks", default="ellipse,landmarks,parser",
                   help="comma-separated mask kinds (ellipse always; parser only with its weights in models_dir)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    threads_option(p)
    p.set_defaults(func=cmd_bench_blend)

    p = _subcommand(which, "stages", "seconds and bytes per frame of the CPU stages next to a plain ffmpeg transcode")
    p.add_argument("videos", nargs="+", help="video files")
    p.add_argument("--config", nargs="+", default=["config.yaml"],
                   help="config files, merged in order (config.yaml overlay...)")
    p.add_argument("--out", default="bench-stages", help="folder for the stages' files (one subfolder per clip)")
    p.add_argument("--repeat", type=int, default=1, help="run every step this many times; the fastest counts")
    p.set_defaults(func=cmd_bench_stages)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ciinv.errors import CiinvError
    from ciinv.io.files import os_advice

    args = build_parser().parse_args(argv)
    _log_to_stderr()
    try:
        args.func(args)
    except CiinvError as exc:
        print(f"ciinv {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        # A full disk or a missing permission outside the atomic writes (which explain their own).
        advice = os_advice(exc.errno, exc.filename) if exc.filename else None
        if advice is None:
            raise
        print(f"ciinv {args.command}: error: {exc.filename}: {exc.strerror}; {advice}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

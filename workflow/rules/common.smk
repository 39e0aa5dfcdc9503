# Shared helpers: config validation, the video table, model paths, and the window plan.

import json
import os
import shlex

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

from ciinv.cli import config_arguments
from ciinv.config import SCHEMA as CONFIG_SCHEMA, validate_config
from ciinv.edits.directions import check_direction, strength_warning
from ciinv.edits.spec import EditSpec
from ciinv.errors import CiinvError
from ciinv.io.files import unwritable_folder
from ciinv.io.folder import find_videos
from ciinv.samples import SAMPLES_SCHEMA, read_sheet, sample_config
from ciinv.models import is_weightless_flow
from ciinv.models.catalogue import CATALOGUE, LPIPS_MODEL
from ciinv.models.registry import needed_models, resolve, resolve_direction
from ciinv.inversion.settings import EXECUTION_KEYS as INVERT_EXECUTION_KEYS, PTI_EXECUTION_KEYS, STITCH_EXECUTION_KEYS
from ciinv.inversion.settings import STITCH_PASTE_SKIPS
from ciinv.io.meta import read_meta
from ciinv.faces.landmarks import face_count
from ciinv.inversion.windows import shard_count


# One short line for a bad config (the key, the value, what is allowed, a near-miss); Snakemake's
# validate then only fills in the schema's defaults.
try:
    validate_config(config, "config")
except CiinvError as error:
    raise WorkflowError(str(error)) from None
validate(config, str(CONFIG_SCHEMA))

# With a default storage provider (S3, node-local scratch) the files live there: planning looks at
# no local file but the config and the sample sheet.
ON_STORAGE = workflow.storage_settings.default_storage_provider is not None

EDITS = {"recon": {"name": "recon"}} | {e["name"]: e for e in config["edits"]}


# Videos by the name of their results: the sample sheet's rows (config `samples`; README "Sample
# sheet"), else every video file of input_dir. Planning reads no file but the config and the sheet
# (the videos may live in a storage provider's bucket: then their existence is not checked here).
# Inputs that would share a name (a.mp4 and a.mov, two rows of one id) are COLLISIONS: each is a
# job that fails naming them (rule collision), so the run ends non-zero with them in its summary
# while the other videos go on. Anything else left out is said here, and the others go on too.
if config.get("samples"):
    try:
        SHEET = read_sheet(config["samples"], EDITS, check_files=not ON_STORAGE)
    except CiinvError as error:
        raise WorkflowError(str(error)) from None
    validate({"videos": SHEET.records}, str(SAMPLES_SCHEMA), set_default=False)
    SAMPLES, _collisions, _skipped = SHEET.samples, SHEET.collisions, []
    VIDEOS = {name: sample.file for name, sample in SAMPLES.items()}
    if not SHEET.records:
        _skipped.append(f"samples {config['samples']} has no rows: no videos to process")
else:
    SAMPLES = {}
    VIDEOS, _collisions, _skipped = find_videos(config["input_dir"])
COLLISIONS = {collision.name: collision for collision in _collisions}
for _warning in _skipped + [f"{c.message} (counted as a failed job)" for c in _collisions]:
    logger.warning(f"ciinv: {_warning}")

# A read-only results/ would fail the first job in Snakemake's own words, with no summary.
_unwritable = unwritable_folder("results") if VIDEOS and not ON_STORAGE else None
if _unwritable and workflow.dryrun:
    logger.warning(f"ciinv: {_unwritable}")
elif _unwritable:
    raise WorkflowError(f"ciinv: {_unwritable}")


def video_config(video):
    """The config one video is processed with: the config with its sheet row's overrides
    (ciinv/samples.py sample_config); the config itself without a sheet. The settings a row may
    override reach the rules' params only through here, so a changed row reruns only its video."""
    return sample_config(config, SAMPLES.get(video))


def video_settings(section, skip=()):
    """cli_settings of one video's own block (video_config), for a rule's `params:`: a function of
    the job's wildcards."""

    def settings(wildcards):
        return shlex.join(config_arguments(section, video_config(wildcards.video)[section], skip))

    return settings


def video_edits(video):
    """The edits one video gets, recon first: those its sheet row names (and recon), else every edit."""
    chosen = SAMPLES[video].edits if video in SAMPLES else None
    return [name for name in EDITS if chosen is None or name == "recon" or name in chosen]


MODELS_DIR = config["models_dir"]


# How the settings reach a job. What a job computes comes from `params:` (Snakemake records them,
# and a changed one reruns the job and what follows). Settings that say only where or how a job
# runs (invert's INVERT_EXECUTION_KEYS, windows_per_batch and checkpoint_every; pti's
# PTI_EXECUTION_KEYS and stitch's STITCH_EXECUTION_KEYS, checkpoint_every) are `resources:` entries instead, which Snakemake passes on
# without recording: changing them reruns nothing. (No scheduler limits them: only resources named
# in --resources are counted, and the SLURM executor turns only the names it knows into sbatch
# options.) A job's CPU threads are its rule's `threads:` (--set-threads RULE=N changes them).


def cli_settings(section, skip=()):
    """The config block `section`, but `skip`, as the `ciinv` options that take it (one per key,
    ciinv/cli.py config_arguments), quoted for the shell."""
    return shlex.join(config_arguments(section, config[section], skip))


wildcard_constraints:
    video="[^/]+",
    edit="[A-Za-z0-9_-]+",
    shard="[0-9]{4}",


def model_path(name_or_path):
    """A registry name becomes its file under models_dir; anything else is a path, used as given."""
    return str(resolve(name_or_path, MODELS_DIR))


def flow_spec(wildcards=None):
    """The flow estimator's model file, or `dis[:preset]` (no file)."""
    spec = config["models"]["flow"]
    return spec if is_weightless_flow(spec) else model_path(spec)


def flow_files(wildcards):
    return [] if is_weightless_flow(config["models"]["flow"]) else [flow_spec()]


def flow_option(wildcards, input):
    """`--flow` of `ciinv invert` and `report-assets`: the declared flow input (with storage, the
    job's local copy of it), or `dis[:preset]`."""
    return input.flow[0] if input.flow else flow_spec()


def uses_encoder():
    """The e4e encoder (models.encoder) is read, and fetched, only with invert.init: e4e."""
    return config["invert"]["init"] == "e4e"


def encoder_files(wildcards):
    return [model_path(config["models"]["encoder"])] if uses_encoder() else []


def source_path(wildcards):
    """The video file as given (input_dir's file, or the sheet's `file`)."""
    return VIDEOS[wildcards.video]


def video_path(wildcards):
    """The video every stage reads: the source, or its trimmed span (rule trim) when its sheet row
    has a start or an end."""
    sample = SAMPLES.get(wildcards.video)
    return f"results/{wildcards.video}/trimmed.mkv" if sample and sample.trimmed else source_path(wildcards)


def trim_span(wildcards):
    """`ciinv trim`'s --start/--end: the sheet row's, in seconds (those not given left out)."""
    sample = SAMPLES[wildcards.video]
    return shlex.join([word for flag, value in (("--start", sample.start), ("--end", sample.end))
                       if value is not None for word in (flag, repr(value))])


def collision_files(wildcards):
    """The files a colliding name stands for, and where the name came from, for `ciinv collision`."""
    collision = COLLISIONS[wildcards.video]
    return shlex.join(["--files", *collision.files, "--where", collision.where, "--fix", collision.fix])


# --- storage (--default-storage-provider: a bucket, or node-local scratch; README "On a cluster") --
# With a default storage provider every input and output lives in storage, and a job sees local
# copies under its own prefix: planning must not look at local files, and jobs read only what
# their rule declares and passes them.


def checkpoint_output(checkpoint, **wildcards):
    """A finished checkpoint job's first output, as a local path that exists. Where there is no
    local copy (the file is in storage) `.open()` raises what makes Snakemake fetch it and evaluate
    the input function again; a plain open() would find nothing. (What is there, even a folder in
    the file's place, is left to the caller's checked reader.) Use it for every checkpoint read."""
    output = checkpoint.get(**wildcards).output[0]
    if not os.path.exists(output):
        with output.open():
            pass
    return output


def shard_files(wildcards):
    """The invert shards of one video; how many is known only once the video is probed."""
    inv = config["invert"]
    try:
        meta = read_meta(checkpoint_output(checkpoints.probe, video=wildcards.video))
        count = shard_count(meta["frames"], inv["window"], inv["stride"], inv["windows_per_shard"])
    except CiinvError:
        # A damaged meta.json, or too short for one window: plan one invert job, which fails with
        # a message naming the file. Raising here would stop the whole workflow, not just this video.
        count = 1
    return [f"results/{wildcards.video}/{job_face(wildcards)}latents/shard_{k:04d}.pt" for k in range(count)]


def all_outputs(wildcards):
    """Every video's edits, and the failing job of each collision (never written)."""
    return ([f"results/{video}.{edit}.mp4" for video in VIDEOS for edit in video_edits(video)]
            + [f"results/{name}/collision.txt" for name in COLLISIONS])


# --- models ---------------------------------------------------------------------------------

FAN_MODELS = [name for name, entry in CATALOGUE.items() if entry.used_by == "landmarks.detector=fan"]


def uses_fan(video):
    """Whether the video's landmarks come from FAN (its own detector: video_config)."""
    return video_config(video)["landmarks"]["detector"] == "fan"


def landmark_models(wildcards):
    """FAN's two weight files when the video's detector is FAN; dlib's predictor ships in a package."""
    return [model_path(n) for n in FAN_MODELS] if uses_fan(wildcards.video) else []


def landmarks_gpu(wildcards):
    """FAN runs on a GPU (one `gpu` resource), dlib on the CPU."""
    return 1 if uses_fan(wildcards.video) else 0


def direction_spec(edit):
    """The registry name or path of an edit's direction (`smile` -> the configured generator's smile
    file), or None when it names nothing: then only that edit's jobs fail, saying why."""
    try:
        return resolve_direction(EditSpec.from_entry(edit).direction, config["models"]["generator"], MODELS_DIR)
    except CiinvError:
        return None


def configured_models():
    """Registry files the current config uses (paths given directly are not ours to fetch); the
    same list `ciinv models --config` marks (ciinv/models/registry.py needed_models), taken over
    each video's own config (a sheet row may choose the FAN detector) when there is a sheet."""
    configs = [video_config(video) for video in VIDEOS if video in SAMPLES] or [config]
    return sorted({model_path(name) for video_cfg in configs for name in needed_models(video_cfg)})


# --- the paste-back mask (config paste:) --------------------------------------------------------
# What each mask reads besides the render: the parser's weights and the source crops (parser), the
# landmarks (landmarks), nothing (ellipse). The assemble jobs declare only those, and get only the
# settings their mask uses: changing another reruns nothing.

PASTE_UNUSED = {
    "parser": (),
    "landmarks": ("parser_size", "parser_every", "exclude", "hair"),
    "ellipse": ("parser_size", "parser_every", "exclude", "hair", "dilate", "erode", "feather", "temporal_sigma"),
}


def uses_parser():
    """The face parser (models.parser) is read, and fetched, only with paste.mask: parser."""
    return config["paste"]["mask"] == "parser"


def paste_settings():
    return cli_settings("paste", skip=PASTE_UNUSED[config["paste"]["mask"]])


def parser_files(wildcards):
    return [model_path(config["models"]["parser"])] if uses_parser() else []


def paste_crops(wildcards):
    """The source crops of each face the job pastes (job_faces)."""
    return [f"results/{wildcards.video}/{face}crops.mkv" for face in job_faces(wildcards)] if uses_parser() else []


def paste_landmarks(wildcards):
    if config["paste"]["mask"] != "landmarks":
        return []
    return [f"results/{wildcards.video}/{face}landmarks.npz" for face in job_faces(wildcards)]


def paste_align(wildcards):
    """The crops' quads, which map the landmarks into the crops (the stitch job's landmarks mask;
    assemble reads align.npz anyway)."""
    if config["paste"]["mask"] != "landmarks":
        return []
    return [f"results/{wildcards.video}/{face}align.npz" for face in job_faces(wildcards)]


# --- the generator a video is rendered with (pivotal tuning) --------------------------------


def video_generator(wildcards):
    """The generator file that renders a video's codes in assemble and report_video: its pivotally
    tuned copy (results/{video}/generator_pti.pt, made by the pti job) when pti.enabled, else the
    configured generator. Edit jobs keep the configured one, since their codes and sefa:K
    directions belong to it."""
    if config["pti"]["enabled"]:
        return f"results/{wildcards.video}/{job_face(wildcards)}generator_pti.pt"
    return model_path(config["models"]["generator"])


# --- the faces assemble pastes (stitching tuning) ------------------------------------------


def assemble_faces(wildcards):
    """What assemble pastes for one video and edit, a list with one file per face (face_dirs): with
    stitch.enabled the stitch jobs' crops (results/{video}/{face}stitched/{edit}.mkv), else the
    edited codes with what renders them (the noise maps and the generator, video_generator's)."""
    video, edit, faces = wildcards.video, wildcards.edit, face_dirs(wildcards.video)
    if config["stitch"]["enabled"]:
        return {"stitched": [f"results/{video}/{face}stitched/{edit}.mkv" for face in faces]}
    generators = [f"results/{video}/{face}generator_pti.pt" for face in faces] if config["pti"]["enabled"] else [
        model_path(config["models"]["generator"])] * len(faces)
    return {"codes": [f"results/{video}/{face}edits/{edit}.npy" for face in faces],
            "noise": [f"results/{video}/{face}noise.pt" for face in faces], "generator": generators}


def assemble_align(wildcards):
    return [f"results/{wildcards.video}/{face}align.npz" for face in face_dirs(wildcards.video)]


def assemble_faces_options(wildcards, input):
    """The per-face options of `ciinv assemble` (each once per face, in face_dirs' order) naming the
    inputs above, quoted for the shell. The paste mask's inputs, empty or not, as --crops=FILE."""
    def files(name):
        named = input[name]
        return [named] if isinstance(named, str) else list(named)

    words = []
    for face in range(len(face_dirs(wildcards.video))):
        words += ["--align", files("align")[face]]
        for name in assemble_faces(wildcards):
            words += [f"--{name}", files(name)[face]]
        words += [f"--{name}={files(name)[face]}" for name in ("crops", "landmarks") if files(name)]
    return shlex.join(words)


def pti_needs_lpips():
    return config["pti"]["enabled"] and config["pti"]["perceptual"] == "lpips"


def pti_lpips_files(wildcards):
    """The LPIPS weights with `pti.perceptual: lpips` (a declared input: download_model fetches
    them, and a job without them is never started); nothing with `vgg`."""
    return [model_path(LPIPS_MODEL)] if config["pti"]["perceptual"] == "lpips" else []


# --- edits ----------------------------------------------------------------------------------
# Morphing (`morph_with`) and semantic transfer (`transfer_from`) name another video of input_dir:
# its latents.npy is an input of the edit (so Snakemake inverts it first, and reruns the edit when
# those codes change) and takes the name's place in the entry the CLI gets. The params are still
# this edit's own entry and nothing else: the path follows from the name.

EDIT_SPECS = {name: EditSpec.from_entry(entry) for name, entry in EDITS.items()}


def other_latents(video):
    """Another video's codes, for morph and transfer: its main face's (face_dirs)."""
    return f"results/{video}/{face_dirs(video)[0]}latents.npy"


# A name that is not a video here is an error now, not a missing-input error deep in the plan.
for _spec in EDIT_SPECS.values():
    if _spec.other_video is not None and _spec.other_video not in VIDEOS:
        inputs = f"the sample sheet {config['samples']}" if config.get("samples") else f"{config['input_dir']}/"
        raise WorkflowError(
            f"config edits: edit {_spec.name!r} has {_spec.kind}: {_spec.other_video!r}, but {inputs} "
            f"has no video named {_spec.other_video!r} (videos: {', '.join(sorted(VIDEOS)) or 'none'}); name one "
            "of them (a file's name without its suffix, or a sheet's id)"
        )


# Each direction checked now, not after the inversion: a name that names nothing (`smlie`), a
# folder or a device stops the run with the choices and a "did you mean"; a missing file and a
# strength beyond any direction's observed range are warnings (ciinv/edits/directions.py).
for _spec in EDIT_SPECS.values():
    if _spec.needs_direction_file:
        try:
            _warning = check_direction(_spec.name, _spec.direction, config["models"]["generator"], MODELS_DIR,
                                       missing_ok=True)
        except CiinvError as error:
            raise WorkflowError(f"config edits: {error}") from None
        if _warning:
            logger.warning(f"ciinv: {_warning}")
    _warning = strength_warning(_spec)
    if _warning:
        logger.warning(f"ciinv: {_warning}")


def edit_direction(wildcards):
    """The direction file an edit reads (none for sefa:K and for morph/transfer).

    A direction that names nothing, or a missing file of the user's (not a registry file, which
    download_model fetches), is left out: Snakemake would refuse to plan any job at all. The edit
    job itself then fails with a message naming the edit and the file, and the other edits go on.
    With storage, planning cannot look: the file is declared, and a missing one stops the plan.
    """
    spec = EDIT_SPECS[wildcards.edit]
    if not spec.needs_direction_file:
        return []
    path = direction_spec(spec.entry)
    if path is None or not (path in CATALOGUE or ON_STORAGE or os.path.isfile(model_path(path))):
        return []
    return [model_path(path)]


def edit_other(wildcards):
    """The other video's codes that a morph or transfer reads (Snakemake inverts it first)."""
    spec = EDIT_SPECS[wildcards.edit]
    return [other_latents(spec.other_video)] if spec.other_video is not None else []


def edit_entry(wildcards):
    """This edit's config entry as JSON for `ciinv edit --edit`, another video's name replaced by its codes."""
    spec = EDIT_SPECS[wildcards.edit]
    entry = spec.with_other_codes(other_latents(spec.other_video)) if spec.other_video else spec.entry
    return json.dumps(entry, sort_keys=True)


# --- report ---------------------------------------------------------------------------------

REPORT_FILES = ("stills.png", "preview.png", "losses.png", "metrics.html")


def edit_names(wildcards):
    """The edits of one video (video_edits), `recon` first: the report's columns."""
    return video_edits(wildcards.video)


def edit_codes(wildcards):
    """The edited codes of every edit of one video's main face, in the order of edit_names."""
    return [f"results/{wildcards.video}/{job_face(wildcards)}edits/{edit}.npy" for edit in video_edits(wildcards.video)]


def edit_videos(wildcards):
    """The assembled video of every edit of one video, in the order of edit_names."""
    return [f"results/{wildcards.video}.{edit}.mp4" for edit in video_edits(wildcards.video)]


def stitched_crops(wildcards):
    """With stitch.enabled, the stitch stage's crops of every edit of one video's main face (the
    order of edit_names), which the output videos pasted and the report shows; else nothing."""
    if not config["stitch"]["enabled"]:
        return []
    face = job_face(wildcards)
    return [f"results/{wildcards.video}/{face}stitched/{edit}.mkv" for edit in video_edits(wildcards.video)]


def lpips_files(wildcards):
    """The LPIPS weights when they are in models_dir (`ciinv models fetch lpips-0.1.4-wheel`), else
    nothing: the metrics table then says LPIPS is left out. Fetching them later changes this
    input, so the table is redone. With storage always (fetched when missing)."""
    path = model_path(LPIPS_MODEL)
    # With storage planning cannot look: declared, so download_model fetches it if missing.
    return [path] if ON_STORAGE or os.path.isfile(path) else []


def report_outputs(wildcards):
    return [f"results/{video}/report/{name}" for video in VIDEOS for name in REPORT_FILES]


# --- which faces (config faces:) -------------------------------------------------------------
# With `faces: main` (or a video where one face is tracked) every file of a video sits in
# results/{video}/ as it always has; with `faces: all` and several faces each face's files sit in
# results/{video}/face<k>/, k = 0 the face found in most frames. Rules that work on one face write
# results/{video}/{face}..., {face} being "" or face<k>/.

wildcard_constraints:
    face="(face[0-9]+/)?",


def face_dirs(video):
    """The folders of one video's edited faces under results/{video}/: [""] (one face), or
    ["face0/", "face1/", ...] with faces: all and several faces tracked. How many is known once
    the landmarks checkpoint has run (read through checkpoint_output, storage-clean); a damaged
    file plans one face, whose align job then fails naming it."""
    if video_config(video)["faces"] != "all":
        return [""]
    try:
        count = face_count(checkpoint_output(checkpoints.landmarks, video=video))
    except CiinvError:
        count = 1
    return [""] if count <= 1 else [f"face{k}/" for k in range(count)]


def job_faces(wildcards):
    """The faces one job works on: its own ({face} wildcard), or every face of the video for the
    per-video jobs (assemble)."""
    face = getattr(wildcards, "face", None)
    return [face] if face is not None else face_dirs(wildcards.video)


def job_face(wildcards):
    """The one face a job works on: its {face}, or the main face for the per-video report."""
    face = getattr(wildcards, "face", None)
    return face if face is not None else face_dirs(wildcards.video)[0]


def main_face_file(name):
    """An input function: the main face's file `name` (results/{video}/{face_dirs[0]}name)."""

    def path(wildcards):
        return f"results/{wildcards.video}/{face_dirs(wildcards.video)[0]}{name}"

    return path

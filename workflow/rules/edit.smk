# Edits on the merged codes, rendered to crops, then pasted back into the video.
#
# Morphing (`morph_with`) and semantic transfer (`transfer_from`) name another video of input_dir:
# its latents.npy is an input of the edit (so Snakemake inverts it first, and reruns the edit when
# those codes change) and takes the name's place in the entry the CLI gets. The params are still
# this edit's own entry and nothing else: the path follows from the name.

from snakemake.exceptions import WorkflowError

OTHER_VIDEO_KINDS = ("morph_with", "transfer_from")


def other_video(edit):
    """(kind, video name) of the other video an edit reads, or (None, None)."""
    for kind in OTHER_VIDEO_KINDS:
        if edit.get(kind):
            return kind, edit[kind]
    return None, None


def other_latents(video):
    return f"results/{video}/latents.npy"


# A name that is not a video here is an error now, not a missing-input error deep in the plan.
for _edit in EDITS.values():
    _kind, _other = other_video(_edit)
    if _other is not None and _other not in VIDEOS:
        raise WorkflowError(
            f"config edits: edit {_edit['name']!r} has {_kind}: {_other!r}, but {config['input_dir']}/ has no video "
            f"named {_other!r} (videos: {', '.join(sorted(VIDEOS)) or 'none'}); name one of them, without its suffix"
        )


def edit_inputs(wildcards):
    edit = EDITS[wildcards.edit]
    inputs = {}
    direction = edit.get("direction", "")
    if direction and not direction.startswith("sefa:"):  # sefa:K is computed from the generator
        inputs["direction"] = model_path(direction)
    _, other = other_video(edit)
    if other is not None:
        inputs["other"] = other_latents(other)
    return inputs


def edit_entry(wildcards):
    """This edit's config entry as JSON for `ciinv edit --edit`, another video's name replaced by its codes."""
    edit = dict(EDITS[wildcards.edit])
    kind, other = other_video(edit)
    if other is not None:
        edit[kind] = other_latents(other)
    return json.dumps(edit, sort_keys=True)


rule edit:
    input:
        unpack(edit_inputs),
        latents="results/{video}/latents.npy",
        generator=model_path(config["models"]["generator"]),
    output:
        directory("results/{video}/edits/{edit}/crops"),
    params:
        # Only this edit's own entry: changing another edit's strength leaves this job alone.
        edit=edit_entry,
    resources:
        gpu=1,
    log:
        "results/{video}/logs/edit_{edit}.log",
    benchmark:
        "results/{video}/benchmarks/edit_{edit}.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv edit --latents {input.latents:q} --generator {input.generator:q}"
        " --edit {params.edit:q} --models-dir {MODELS_DIR:q} --out {output:q} 2> {log:q}"


rule assemble:
    input:
        video=video_path,
        meta="results/{video}/meta.json",
        align="results/{video}/align.npz",
        crops="results/{video}/edits/{edit}/crops",
    output:
        "results/{video}.{edit}.mp4",
    params:
        feather=config["assemble"]["feather"],
        crf=config["assemble"]["crf"],
        preset=config["assemble"]["preset"],
    log:
        "results/{video}/logs/assemble_{edit}.log",
    benchmark:
        "results/{video}/benchmarks/assemble_{edit}.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv assemble {input.video:q} --meta {input.meta:q} --align {input.align:q}"
        " --crops {input.crops:q} --out {output:q} --feather {params.feather}"
        " --crf {params.crf} --preset {params.preset} 2> {log:q}"

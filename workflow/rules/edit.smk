# Edits on the merged codes (codes only, no pictures), then rendered, pasted back into the video and
# encoded in one stream. (Which inputs an edit has, and the morph/transfer entries: workflow/rules/common.smk.)


rule edit:
    input:
        latents="results/{video}/{face}latents.npy",
        direction=edit_direction,  # (common.smk) none for sefa:K, morph and transfer
        other=edit_other,  # the other video's main face's codes, for morph and transfer
        # Checks the codes' shape and computes sefa:K directions; nothing is rendered here.
        generator=model_path(config["models"]["generator"]),
    output:
        "results/{video}/{face}edits/{edit}.npy",
    params:
        # Only this edit's own entry: changing another edit's strength leaves this job alone.
        edit=edit_entry,
    log:
        "results/{video}/{face}logs/edit_{edit}.log",
    benchmark:
        "results/{video}/{face}benchmarks/edit_{edit}.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv edit --latents {input.latents:q} --generator {input.generator:q}"
        " --edit {params.edit:q} --direction={input.direction:q} --other={input.other:q} --out {output:q} 2> {log:q}"


rule assemble:
    input:
        # Per face (one, or every face with faces: all): the edited codes, the noise and the generator
        # that renders them, or with stitch.enabled the stitched crops (common.smk); the quads.
        unpack(assemble_faces),
        video=video_path,
        meta="results/{video}/meta.json",
        align=assemble_align,
        parser=parser_files,
        crops=paste_crops,
        landmarks=paste_landmarks,
    output:
        "results/{video}.{edit}.mp4",
    params:
        faces=assemble_faces_options,  # per face --align, --codes, --noise, --generator or --stitched, --crops, --landmarks
        paste=paste_settings(),
        settings=cli_settings("assemble"),
    threads: 4  # decoding, pasting back and the H.264 encoding, beside the rendering
    resources:
        gpu=1,  # renders the codes (on the CPU when there is no GPU)
    log:
        "results/{video}/logs/assemble_{edit}.log",
    benchmark:
        "results/{video}/benchmarks/assemble_{edit}.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv assemble {input.video:q} --meta {input.meta:q} {params.faces}"
        " --parser={input.parser:q} --out {output:q}"
        " {params.paste} {params.settings} --threads {threads} 2> {log:q}"

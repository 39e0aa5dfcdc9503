# Stitching tuning (optional, `stitch.enabled`): after an edit, one GPU job per video and edit tunes, per
# frame, a copy of the generator that renders the video (video_generator, common.smk: the PTI copy with PTI)
# so that its render meets the original crop around the face. assemble then pastes these crops instead of
# rendering the codes (assemble_faces, common.smk).


rule stitch:
    input:
        crops="results/{video}/{face}crops.mkv",
        codes="results/{video}/{face}edits/{edit}.npy",
        noise="results/{video}/{face}noise.pt",
        generator=video_generator,
        # What the paste mask reads (common.smk): the parser's weights, or the landmarks and quads.
        parser=parser_files,
        landmarks=paste_landmarks,
        align=paste_align,
    output:
        "results/{video}/{face}stitched/{edit}.mkv",
    params:
        # `enabled` is the workflow's switch for this rule, not a setting of the job.
        settings=cli_settings("stitch", skip=STITCH_EXECUTION_KEYS + ("enabled",)),
        # The paste mask, whose edge the border band surrounds: the settings its kind uses, but those
        # across frames (each frame is fitted to its own mask: not smoothed, every frame parsed).
        paste=cli_settings("paste", skip=PASTE_UNUSED[config["paste"]["mask"]] + STITCH_PASTE_SKIPS),
    resources:
        gpu=1,
        checkpoint_every=config["stitch"]["checkpoint_every"],  # how, not what: a resource (common.smk)
    log:
        "results/{video}/{face}logs/stitch_{edit}.log",
    benchmark:
        "results/{video}/{face}benchmarks/stitch_{edit}.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv stitch --crops {input.crops:q} --codes {input.codes:q} --noise {input.noise:q}"
        " --generator {input.generator:q} --parser={input.parser:q} --landmarks={input.landmarks:q}"
        " --align={input.align:q} {params.settings} {params.paste}"
        " --checkpoint-every {resources.checkpoint_every} --out {output:q} 2> {log:q}"

# Pictures and metrics for `snakemake --report`: made only for the `report_assets` target, never by
# the default one (the metrics run the flow network over every frame). README "Report". One video's
# four items share its category and no subcategory: the report opens them together, in one table.


rule report_assets:
    input:
        all_outputs,
        report_outputs,


rule report_video:
    input:
        video=video_path,
        # The main face's files (with faces: all, face0/; README "Every face").
        crops=main_face_file("crops.mkv"),
        meta="results/{video}/meta.json",
        align=main_face_file("align.npz"),
        landmarks=main_face_file("landmarks.npz"),
        outputs=edit_videos,
        edits=edit_codes,
        stitched=stitched_crops,  # with stitch.enabled: the faces the outputs pasted
        noise=main_face_file("noise.pt"),
        generator=video_generator,
        shards=shard_files,
        flow=flow_files,
        vgg16=model_path(config["models"]["vgg16"]),
        lpips=lpips_files,
    output:
        stills=report("results/{video}/report/stills.png", caption="../report/stills.rst", category="{video}",
                      labels={"video": "{video}", "figure": "stills"}),
        preview=report("results/{video}/report/preview.png", caption="../report/preview.rst", category="{video}",
                       labels={"video": "{video}", "figure": "preview"}),
        losses=report("results/{video}/report/losses.png", caption="../report/losses.rst", category="{video}",
                      labels={"video": "{video}", "figure": "loss curves"}),
        metrics=report("results/{video}/report/metrics.html", caption="../report/metrics.rst", category="{video}",
                       labels={"video": "{video}", "figure": "metrics"}),
    params:
        names=edit_names,
        flow=flow_option,  # the flow input, or dis (common.smk)
    resources:
        gpu=1,
    log:
        "results/{video}/logs/report.log",
    benchmark:
        "results/{video}/benchmarks/report.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv report-assets --video {input.video:q} --crops {input.crops:q} --meta {input.meta:q}"
        " --align {input.align:q} --landmarks {input.landmarks:q} --outputs {input.outputs:q} --edits {input.edits:q}"
        " --names {params.names} --stitched {input.stitched:q} --noise {input.noise:q} --generator {input.generator:q}"
        " --shards {input.shards:q} --flow {params.flow:q} --vgg16 {input.vgg16:q}"
        " --lpips {input.lpips:q} --out \"$(dirname {output.stills:q})\" 2> {log:q}"

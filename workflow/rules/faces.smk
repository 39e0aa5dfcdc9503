# Probe, landmarks and alignment: from a video file to aligned face crops.


checkpoint probe:
    input:
        video=video_path,
    output:
        "results/{video}/meta.json",
    log:
        "results/{video}/logs/probe.log",
    benchmark:
        "results/{video}/benchmarks/probe.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv probe {input.video:q} --out {output:q} 2> {log:q}"


rule landmarks:
    input:
        video=video_path,
        meta="results/{video}/meta.json",
        models=landmark_models,
    output:
        "results/{video}/landmarks.npz",
    params:
        settings=video_settings("landmarks"),  # the video's own (a sheet row may override them)
    threads: 2  # decoding (an ffmpeg process) beside the detector
    resources:
        gpu=landmarks_gpu,
    log:
        "results/{video}/logs/landmarks.log",
    benchmark:
        "results/{video}/benchmarks/landmarks.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv landmarks {input.video:q} --meta {input.meta:q} --out {output:q} {params.settings}"
        " --fan-files {input.models:q} --threads {threads} 2> {log:q}"


rule align:
    input:
        video=video_path,
        meta="results/{video}/meta.json",
        landmarks="results/{video}/landmarks.npz",
    output:
        npz="results/{video}/align.npz",
        crops="results/{video}/crops.mkv",
    params:
        settings=cli_settings("align"),
    threads: 2  # decoding, cropping (OpenCV) and the crops' lossless encoding, side by side
    log:
        "results/{video}/logs/align.log",
    benchmark:
        "results/{video}/benchmarks/align.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv align {input.video:q} --meta {input.meta:q} --landmarks {input.landmarks:q}"
        " --out {output.npz:q} --crops {output.crops:q} {params.settings} --threads {threads} 2> {log:q}"

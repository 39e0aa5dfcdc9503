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
        detector=config["landmarks"]["detector"],
        max_gap=config["landmarks"]["max_gap"],
    resources:
        gpu=1 if config["landmarks"]["detector"] == "fan" else 0,
    log:
        "results/{video}/logs/landmarks.log",
    benchmark:
        "results/{video}/benchmarks/landmarks.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv landmarks {input.video:q} --meta {input.meta:q} --out {output:q}"
        " --detector {params.detector} --max-gap {params.max_gap} --models-dir {config[models_dir]:q} 2> {log:q}"


rule align:
    input:
        video=video_path,
        meta="results/{video}/meta.json",
        landmarks="results/{video}/landmarks.npz",
    output:
        npz="results/{video}/align.npz",
        crops="results/{video}/crops.mkv",
    params:
        resolution=config["align"]["resolution"],
        center_sigma=config["align"]["center_sigma"],
        axes_sigma=config["align"]["axes_sigma"],
    log:
        "results/{video}/logs/align.log",
    benchmark:
        "results/{video}/benchmarks/align.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv align {input.video:q} --meta {input.meta:q} --landmarks {input.landmarks:q}"
        " --out {output.npz:q} --crops {output.crops:q} --resolution {params.resolution}"
        " --center-sigma {params.center_sigma} --axes-sigma {params.axes_sigma} 2> {log:q}"

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


# A checkpoint: with `faces: all` the number of faces (and so the jobs per face) is known only
# once the landmarks are (face_dirs, common.smk).
checkpoint landmarks:
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


# One face of several (`faces: all`): its track of landmarks.npz on its own, in the one-face format.
rule face_landmarks:
    wildcard_constraints:
        k="[0-9]+",
    input:
        "results/{video}/landmarks.npz",
    output:
        "results/{video}/face{k}/landmarks.npz",
    log:
        "results/{video}/face{k}/logs/landmarks.log",
    benchmark:
        "results/{video}/face{k}/benchmarks/landmarks.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv face-landmarks --landmarks {input:q} --face {wildcards.k} --out {output:q} 2> {log:q}"


# {face} is empty (one face: today's layout) or face<k>/ (faces: all, common.smk face_dirs); so in
# every rule below that works on one face.
rule align:
    input:
        video=video_path,
        meta="results/{video}/meta.json",
        landmarks="results/{video}/{face}landmarks.npz",
    output:
        npz="results/{video}/{face}align.npz",
        crops="results/{video}/{face}crops.mkv",
    params:
        settings=cli_settings("align"),
    threads: 2  # decoding, cropping (OpenCV) and the crops' lossless encoding, side by side
    log:
        "results/{video}/{face}logs/align.log",
    benchmark:
        "results/{video}/{face}benchmarks/align.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv align {input.video:q} --meta {input.meta:q} --landmarks {input.landmarks:q}"
        " --out {output.npz:q} --crops {output.crops:q} {params.settings} --threads {threads} 2> {log:q}"

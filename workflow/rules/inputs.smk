# The inputs before probing: a sheet row's trim, and the names several inputs would share.


# A sample sheet's start/end (seconds): the span cut frame-exactly into a lossless file with its sound,
# which every stage then reads as the video (video_path, common.smk).
rule trim:
    input:
        video=source_path,
    output:
        "results/{video}/trimmed.mkv",
    params:
        span=trim_span,  # --start/--end: the sheet row's (a changed one redoes this video only)
    threads: 2  # decoding and the lossless encoding, side by side
    log:
        "results/{video}/logs/trim.log",
    benchmark:
        "results/{video}/benchmarks/trim.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv trim {input.video:q} {params.span} --out {output:q} --threads {threads} 2> {log:q}"


# Two files (a.mp4, a.mov) or two sheet rows that would give the same results folder: none is
# processed, and this job fails naming them, so the run's summary counts them and it exits non-zero.
# Its output is never written.
rule collision:
    output:
        "results/{video}/collision.txt",
    params:
        files=collision_files,
    localrule: True
    log:
        "results/{video}/logs/collision.log",
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv collision {wildcards.video:q} {params.files} 2> {log:q}"

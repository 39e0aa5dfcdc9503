# Joint inversion of consecutive frames (one GPU job per shard of windows), then the merge.

rule invert:
    input:
        crops="results/{video}/{face}crops.mkv",
        meta="results/{video}/meta.json",
        generator=model_path(config["models"]["generator"]),
        flow=flow_files,
        vgg16=model_path(config["models"]["vgg16"]),
        encoder=encoder_files,
    output:
        "results/{video}/{face}latents/shard_{shard}.pt",
    params:
        flow=flow_option,  # the flow input, or dis (common.smk)
        settings=cli_settings("invert", skip=INVERT_EXECUTION_KEYS),
    resources:
        gpu=1,
        # How the job runs, not what it computes (common.smk): never a reason to rerun it.
        windows_per_batch=config["invert"]["windows_per_batch"],
        checkpoint_every=config["invert"]["checkpoint_every"],
    log:
        "results/{video}/{face}logs/invert_{shard}.log",
    benchmark:
        "results/{video}/{face}benchmarks/invert_{shard}.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv invert --crops {input.crops:q} --meta {input.meta:q} --shard {wildcards.shard}"
        " --generator {input.generator:q} --flow {params.flow:q} --vgg16 {input.vgg16:q}"
        " --encoder={input.encoder:q} {params.settings} --windows-per-batch {resources.windows_per_batch}"
        " --checkpoint-every {resources.checkpoint_every} --out {output:q} 2> {log:q}"


rule merge:
    input:
        shards=shard_files,
        meta="results/{video}/meta.json",
    output:
        latents="results/{video}/{face}latents.npy",
        noise="results/{video}/{face}noise.pt",
    log:
        "results/{video}/{face}logs/merge.log",
    benchmark:
        "results/{video}/{face}benchmarks/merge.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv merge {input.shards:q} --meta {input.meta:q} --out {output.latents:q}"
        " --noise {output.noise:q} 2> {log:q}"

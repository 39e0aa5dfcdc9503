# Joint inversion of consecutive frames (one GPU job per shard of windows), then the merge.

rule invert:
    input:
        crops="results/{video}/crops.mkv",
        meta="results/{video}/meta.json",
        generator=model_path(config["models"]["generator"]),
        flow=flow_files,
        vgg16=model_path(config["models"]["vgg16"]),
        encoder=encoder_files,
    output:
        "results/{video}/latents/shard_{shard}.pt",
    params:
        flow=flow_spec,
        settings=json.dumps(
            {k: v for k, v in config["invert"].items() if k not in INVERT_EXECUTION_KEYS}, sort_keys=True
        ),
    resources:
        gpu=1,
    log:
        "results/{video}/logs/invert_{shard}.log",
    benchmark:
        "results/{video}/benchmarks/invert_{shard}.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv invert --crops {input.crops:q} --meta {input.meta:q} --shard {wildcards.shard}"
        " --settings {params.settings:q} --generator {input.generator:q} --flow {params.flow:q}"
        " --vgg16 {input.vgg16:q} --encoder={input.encoder:q} --windows-per-batch {config[invert][windows_per_batch]}"
        " --checkpoint-every {config[invert][checkpoint_every]} --out {output:q} 2> {log:q}"


rule merge:
    input:
        shards=shard_files,
        meta="results/{video}/meta.json",
    output:
        latents="results/{video}/latents.npy",
        noise="results/{video}/noise.pt",
    log:
        "results/{video}/logs/merge.log",
    benchmark:
        "results/{video}/benchmarks/merge.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv merge {input.shards:q} --meta {input.meta:q} --out {output.latents:q}"
        " --noise {output.noise:q} 2> {log:q}"

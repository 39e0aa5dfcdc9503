# Pivotal tuning (optional, `pti.enabled`): after the merge, one GPU job per video tunes a copy of the
# generator so that the fixed codes reproduce the crops. The assemble and report rules take their generator
# from video_generator (common.smk): this file when PTI is on, the configured generator otherwise.


rule pti:
    input:
        crops="results/{video}/crops.mkv",
        latents="results/{video}/latents.npy",
        noise="results/{video}/noise.pt",
        generator=model_path(config["models"]["generator"]),
        vgg16=model_path(config["models"]["vgg16"]),
        lpips=pti_lpips_files,
    output:
        "results/{video}/generator_pti.pt",
    params:
        # Only the pti settings (checkpoint_every, which changes nothing computed, is read in the shell line).
        settings=json.dumps(
            {k: v for k, v in config["pti"].items() if k not in PTI_EXECUTION_KEYS}, sort_keys=True
        ),
    resources:
        gpu=1,
    log:
        "results/{video}/logs/pti.log",
    benchmark:
        "results/{video}/benchmarks/pti.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv pti --crops {input.crops:q} --latents {input.latents:q} --noise {input.noise:q}"
        " --generator {input.generator:q} --vgg16 {input.vgg16:q} --lpips {input.lpips:q}"
        " --settings {params.settings:q} --checkpoint-every {config[pti][checkpoint_every]}"
        " --out {output:q} 2> {log:q}"

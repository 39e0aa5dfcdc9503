# Pivotal tuning (optional, `pti.enabled`): after the merge, one GPU job per video tunes a copy of the
# generator so that the fixed codes reproduce the crops. The assemble and report rules take their generator
# from video_generator (common.smk): this file when PTI is on, the configured generator otherwise.


rule pti:
    input:
        crops="results/{video}/{face}crops.mkv",
        latents="results/{video}/{face}latents.npy",
        noise="results/{video}/{face}noise.pt",
        generator=model_path(config["models"]["generator"]),
        vgg16=model_path(config["models"]["vgg16"]),
        lpips=pti_lpips_files,
    output:
        "results/{video}/{face}generator_pti.pt",
    params:
        # `enabled` is the workflow's switch for this rule, not a setting of the job.
        settings=cli_settings("pti", skip=PTI_EXECUTION_KEYS + ("enabled",)),
    resources:
        gpu=1,
        checkpoint_every=config["pti"]["checkpoint_every"],  # how, not what: a resource (common.smk)
    log:
        "results/{video}/{face}logs/pti.log",
    benchmark:
        "results/{video}/{face}benchmarks/pti.tsv"
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv pti --crops {input.crops:q} --latents {input.latents:q} --noise {input.noise:q}"
        " --generator {input.generator:q} --vgg16 {input.vgg16:q} --lpips {input.lpips:q}"
        " {params.settings} --checkpoint-every {resources.checkpoint_every} --out {output:q} 2> {log:q}"

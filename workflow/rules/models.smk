# Model files. Compute jobs take them as inputs and never download; these rules fetch what is missing.


rule download_models:
    input:
        configured_models(),


rule download_model:
    output:
        f"{MODELS_DIR}/{{filename}}",
    wildcard_constraints:
        filename="|".join(re.escape(entry.filename) for entry in CATALOGUE.values()),
    localrule: True
    resources:
        models_dir=MODELS_DIR,  # where, not what: a resource, not a param (common.smk)
    log:
        f"{MODELS_DIR}/logs/{{filename}}.log",
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv models fetch --file {wildcards.filename:q} --models-dir {resources.models_dir:q} 2> {log:q}"

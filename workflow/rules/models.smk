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
    log:
        f"{MODELS_DIR}/logs/{{filename}}.log",
    conda:
        "../../envs/ciinv.yaml"
    shell:
        # The folder of {output}: with storage that is the job's local copy, uploaded afterwards.
        "ciinv models fetch --file {wildcards.filename:q} --models-dir \"$(dirname {output:q})\" 2> {log:q}"

# Model files. Compute jobs take them as inputs and never download; these rules fetch what is missing.


def configured_models():
    """Registry files the current config uses (paths given directly are not ours to fetch)."""
    names = list(config["models"].values()) + [e["direction"] for e in config["edits"] if "direction" in e]
    if config["landmarks"]["detector"] == "fan":
        names += [n for n, entry in REGISTRY.items() if entry.used_by == "landmarks.detector=fan"]
    return sorted({model_path(n) for n in names if n in REGISTRY})


rule download_models:
    input:
        configured_models(),


rule download_model:
    output:
        f"{MODELS_DIR}/{{filename}}",
    wildcard_constraints:
        filename="|".join(re.escape(entry.filename) for entry in REGISTRY.values()),
    localrule: True
    log:
        f"{MODELS_DIR}/logs/{{filename}}.log",
    conda:
        "../../envs/ciinv.yaml"
    shell:
        "ciinv models fetch --file {wildcards.filename:q} --models-dir {MODELS_DIR:q} 2> {log:q}"

# Stage 3b: BoB's class-folder image retrieval on frozen features.


rule retrieval:
    input:
        features=rules.extract_features.output.features,
        info=rules.extract_features.output.info,
        code=code("tasks", "stats", "cells", "config", "features", "gpu"),
    output:
        record=cell_record("retrieval", "{backbone}", "{dataset}"),
    log:
        "logs/retrieval/{backbone}/{dataset}.log",
    benchmark:
        "logs/benchmarks/retrieval/{backbone}/{dataset}.tsv"
    conda:
        "../environment.yml"
    threads: 1
    resources:
        gpu=1,
    params:
        retrieval=options("retrieval"),
        bootstrap=options("bootstrap"),
        seed=config["seed"],
    script:
        "../workflow_scripts/retrieval.py"

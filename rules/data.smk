# Stage 1: one prepared, memory-mappable copy of each dataset.


rule prepare_dataset:
    input:
        code=code("datasets"),
    output:
        prepared("{dataset}"),
    log:
        logfile("prepare_dataset/{dataset}.log"),
    benchmark:
        logfile("benchmarks/prepare_dataset/{dataset}.tsv")
    conda:
        "../environment.yml"
    params:
        entry=lambda wc: bobench_config.dataset_entry(config, DATASETS, wc.dataset),
        raw_dir=lambda wc: f"{DATA}/raw/{wc.dataset}",
    script:
        "../workflow_scripts/prepare_dataset.py"

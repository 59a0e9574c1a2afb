# Stage 1: one prepared, memory-mappable copy of each dataset.


rule prepare_dataset:
    input:
        standin=lambda wc: standin_data(wc.dataset),
        # ImageNet's 1% / 10% subsets read the class folders ImageNet's preparation unpacks.
        shared_raw=lambda wc: [
            f
            for d in raw_folders_shared_with(DATASETS[wc.dataset])
            for f in prepared(d)
        ],
        code=code("prepare_dataset.py"),
    output:
        prepared("{dataset}"),
    log:
        logfile("prepare_dataset/{dataset}.log"),
    benchmark:
        logfile("benchmarks/prepare_dataset/{dataset}.tsv")
    conda:
        "../environment.yml"
    resources:
        **job_resources("prepare_dataset"),
    params:
        entry=lambda wc: bobench_config.dataset_entry(config, DATASETS, wc.dataset),
        raw_dir=lambda wc: f"{DATA}/raw/{wc.dataset}",
    script:
        "../workflow_scripts/prepare_dataset.py"


# The train split of a dataset kept as image files, decoded once per cache short side (config input_cache;
# bobench.datasets.input_cache): every epoch of every training job that reads it (bobench.plan.InputCaches).
rule prepare_input_cache:
    input:
        dataset=prepared("{dataset}"),
        code=code("prepare_input_cache.py"),
    output:
        input_cache_files("{dataset}", "{short_side}"),
    log:
        logfile("prepare_input_cache/{dataset}/short{short_side}.log"),
    benchmark:
        logfile("benchmarks/prepare_input_cache/{dataset}/short{short_side}.tsv")
    conda:
        "../environment.yml"
    threads: BATTLE.model.constants["input_cache"]["threads"]
    resources:
        **job_resources("prepare_input_cache"),
    script:
        "../workflow_scripts/prepare_input_cache.py"

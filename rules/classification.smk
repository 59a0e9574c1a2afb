# Stage 3a: classification on frozen features: linear probe and kNN.


rule linear_probe:
    input:
        features=rules.extract_features.output.features,
        info=rules.extract_features.output.info,
        code=code("linear_probe.py"),
    output:
        record=cell_record("linear_probe", "{backbone}", "{dataset}"),
    log:
        logfile("linear_probe/{backbone}/{dataset}.log"),
    benchmark:
        logfile("benchmarks/linear_probe/{backbone}/{dataset}.tsv")
    conda:
        "../environment.yml"
    threads: job_threads
    resources:
        **job_resources("linear_probe"),
        gpu=1,
    params:
        probe=options("linear_probe"),
        bootstrap=options("bootstrap"),
        seed=config["seed"],
    script:
        "../workflow_scripts/linear_probe.py"


rule knn:
    input:
        features=rules.extract_features.output.features,
        info=rules.extract_features.output.info,
        code=code("knn.py"),
    output:
        record=cell_record("knn", "{backbone}", "{dataset}"),
    log:
        logfile("knn/{backbone}/{dataset}.log"),
    benchmark:
        logfile("benchmarks/knn/{backbone}/{dataset}.tsv")
    conda:
        "../environment.yml"
    threads: 1
    resources:
        **job_resources("knn"),
        gpu=1,
    params:
        knn=options("knn"),
        bootstrap=options("bootstrap"),
        seed=config["seed"],
    script:
        "../workflow_scripts/knn.py"


rule finetune:
    input:
        standin_weights=lambda wc: standin_weights(wc.backbone),
        dataset=prepared("{dataset}"),
        input_cache=lambda wc: training_input_cache("finetune", wc.backbone, wc.dataset),
        code=code("finetune.py"),
    output:
        record=cell_record("finetune", "{backbone}", "{dataset}"),
        weights=f"{RESULTS}/models/finetune/{{backbone}}/{{dataset}}.pt",
    log:
        logfile("finetune/{backbone}/{dataset}.log"),
    benchmark:
        logfile("benchmarks/finetune/{backbone}/{dataset}.tsv")
    # The next longest after the detectors (and the OOD jobs wait on them): started early too.
    priority: 5
    conda:
        "../environment.yml"
    threads: job_threads
    resources:
        **job_resources("finetune"),
        gpu=1,
    params:
        task="finetune",
        backbone=lambda wc: bobench_config.feature_spec(BACKBONES[wc.backbone]),
        finetune=lambda wc: finetune_options(wc.backbone, wc.dataset),
        bootstrap=options("bootstrap"),
        seed=config["seed"],
        # Not an output: Snakemake deletes the outputs of a failed job, and this
        # epoch checkpoint is what a rerun resumes from.
        checkpoint=lambda wc: f"{RESULTS}/checkpoints/finetune/{wc.backbone}/{wc.dataset}.pt",
    script:
        "../workflow_scripts/finetune.py"


# BoB's LARS probe: the fine-tuning rule with the frozen_probe recipe (see bobench/jobs/finetune.py).
use rule finetune as frozen_probe with:
    input:
        standin_weights=lambda wc: standin_weights(wc.backbone),
        dataset=prepared("{dataset}"),
        input_cache=lambda wc: training_input_cache(
            "frozen_probe", wc.backbone, wc.dataset
        ),
        code=code("finetune.py"),
    output:
        record=cell_record("frozen_probe", "{backbone}", "{dataset}"),
        weights=f"{RESULTS}/models/frozen_probe/{{backbone}}/{{dataset}}.pt",
    log:
        logfile("frozen_probe/{backbone}/{dataset}.log"),
    benchmark:
        logfile("benchmarks/frozen_probe/{backbone}/{dataset}.tsv")
    resources:
        **job_resources("frozen_probe"),
        gpu=1,
    params:
        task="frozen_probe",
        # The feature fields and the head BoB's rule gives the backbone (docs/protocol.md §3.3).
        backbone=lambda wc: bobench_config.probe_spec(BACKBONES[wc.backbone]),
        finetune=options("frozen_probe"),
        bootstrap=options("bootstrap"),
        seed=config["seed"],
        checkpoint=lambda wc: f"{RESULTS}/checkpoints/frozen_probe/{wc.backbone}/{wc.dataset}.pt",

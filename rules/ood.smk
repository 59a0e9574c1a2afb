# Stage 3c: OOD classification: each fine-tuned classifier on its OOD sets, without further training.


rule ood_classification:
    input:
        standin_weights=lambda wc: standin_weights(wc.backbone),
        weights=rules.finetune.output.weights,
        dataset=prepared("{dataset}"),
        ood_datasets=lambda wc: [
            f for d in ood_registry_datasets(wc.dataset) for f in prepared(d)
        ],
        code=code("ood_classification.py"),
    output:
        record=cell_record("ood", "{backbone}", "{dataset}"),
    log:
        logfile("ood_classification/{backbone}/{dataset}.log"),
    benchmark:
        logfile("benchmarks/ood_classification/{backbone}/{dataset}.tsv")
    conda:
        "../environment.yml"
    threads: job_threads
    resources:
        **job_resources("ood_classification"),
        gpu=1,
    params:
        backbone=lambda wc: bobench_config.feature_spec(BACKBONES[wc.backbone]),
        finetune=lambda wc: finetune_options(wc.backbone, wc.dataset),
        sets=lambda wc: [s.describe() for s in OOD_PLAN[wc.dataset]],
        prepared_dirs=lambda wc: {
            d: f"{DATA}/prepared/{d}" for d in ood_registry_datasets(wc.dataset)
        },
        bootstrap=options("bootstrap"),
        seed=config["seed"],
    script:
        "../workflow_scripts/ood_classification.py"

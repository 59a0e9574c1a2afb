# Stage 3d: detection, instance segmentation and OOD detection (BoB §4, §6): COCO-format data,
# then one detector per backbone × setting × learning rate.


rule prepare_detection_dataset:
    input:
        standin=lambda wc: standin_data(wc.dataset),
        # A synthetic set is made from a prepared classification dataset.
        sources=lambda wc: (
            prepared(DATASETS[wc.dataset]["source"]["from_dataset"])
            if "from_dataset" in DATASETS[wc.dataset]["source"]
            else []
        ),
        code=code("prepare_detection_dataset.py"),
    output:
        manifest=detection_manifest("{dataset}"),
    log:
        logfile("prepare_detection_dataset/{dataset}.log"),
    benchmark:
        logfile("benchmarks/prepare_detection_dataset/{dataset}.tsv")
    # Detectors are the longest jobs: their data and then they start first (longest first packs the
    # cores or GPUs best; on the demo's 2 cores it keeps them from running last, alone).
    priority: 10
    conda:
        "../environment.yml"
    resources:
        **job_resources("prepare_detection_dataset"),
    params:
        entry=lambda wc: bobench_config.dataset_entry(config, DATASETS, wc.dataset),
        raw_dir=lambda wc: f"{DATA}/raw/{wc.dataset}",
        prepared_dirs=lambda wc: {
            d: f"{DATA}/prepared/{d}"
            for d in [DATASETS[wc.dataset]["source"].get("from_dataset")]
            if d
        },
    script:
        "../workflow_scripts/prepare_detection_dataset.py"


rule train_detector:
    input:
        standin_weights=lambda wc: standin_weights(wc.backbone, wc.detection_task),
        train=detection_manifest("{dataset}"),
        test_sets=lambda wc: [
            detection_manifest(d)
            for d in (
                DETECTION_SETS[wc.dataset]
                if wc.detection_task == "ood_detection"
                else [wc.dataset]
            )
        ],
        code=code("train_detector.py"),
    output:
        record=detection_record(
            "{detection_task}", "{backbone}", "{dataset}", "{setting}", "{lr}"
        ),
        # The raw per-image detections (COCO results format), re-scorable without the model.
        predictions=f"{RESULTS}/predictions/{{detection_task}}/{{backbone}}/{{dataset}}/{{setting}}_lr{{lr}}.json",
    log:
        logfile(
            "train_detector/{detection_task}/{backbone}/{dataset}/{setting}_lr{lr}.log"
        ),
    benchmark:
        logfile(
            "benchmarks/train_detector/{detection_task}/{backbone}/{dataset}/{setting}_lr{lr}.tsv"
        )
    priority: 10
    conda:
        "../environment.yml"
    threads: job_threads
    resources:
        **job_resources("train_detector"),
        gpu=1,
    params:
        # The backbone as the task builds it (BoB's DeiT and torchvision weights, SD's detection prompt)
        # and the recipe with its per-backbone and per-setting overrides (drop path, SD's single scale,
        # SwinV2 windows, images per step of the fine-tuned setting).
        backbone=lambda wc: bobench_config.feature_spec(
            task_backbone(wc.backbone, wc.detection_task)
        ),
        recipe=lambda wc: bobench_config.detection_recipe(
            config, wc.detection_task, wc.backbone, wc.setting
        ),
        bootstrap=options("bootstrap"),
        seed=config["seed"],
        # Not an output: Snakemake deletes the outputs of a failed job, and this
        # epoch checkpoint is what a rerun resumes from.
        checkpoint=lambda wc: f"{RESULTS}/checkpoints/{wc.detection_task}/{wc.backbone}/{wc.dataset}/{wc.setting}_lr{wc.lr}.pt",
    script:
        "../workflow_scripts/train_detector.py"

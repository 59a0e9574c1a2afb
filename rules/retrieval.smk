# Stage 3b: image retrieval (BoB §7). Retrieval benchmarks (registry tasks [retrieval]) get a versioned
# query/database split and their own features; classification datasets use BoB's class-folder protocol
# on the features already cached for the probes.


rule prepare_retrieval_dataset:
    input:
        standin=lambda wc: standin_data(wc.dataset),
        # A synthetic set is made from a prepared classification dataset.
        sources=lambda wc: (
            prepared(DATASETS[wc.dataset]["source"]["from_dataset"])
            if "from_dataset" in DATASETS[wc.dataset]["source"]
            else []
        ),
        code=code("prepare_retrieval_dataset.py"),
    output:
        retrieval_split("{dataset}"),
    log:
        logfile("prepare_retrieval_dataset/{dataset}.log"),
    benchmark:
        logfile("benchmarks/prepare_retrieval_dataset/{dataset}.tsv")
    conda:
        "../environment.yml"
    resources:
        **job_resources("prepare_retrieval_dataset"),
    params:
        entry=lambda wc: bobench_config.dataset_entry(config, DATASETS, wc.dataset),
        raw_dir=lambda wc: f"{DATA}/raw/{wc.dataset}",
        # A rehearsal's cap on queries and database images (none in a real run).
        max_images=(config["rehearsal"]["max_images_per_split"] if REHEARSAL else None),
        prepared_dirs=lambda wc: {
            d: f"{DATA}/prepared/{d}"
            for d in [DATASETS[wc.dataset]["source"].get("from_dataset")]
            if d
        },
    script:
        "../workflow_scripts/prepare_retrieval_dataset.py"


rule extract_retrieval_features:
    input:
        standin_weights=lambda wc: standin_weights(wc.backbone, "retrieval"),
        split=retrieval_split("{dataset}"),
        code=code("extract_retrieval_features.py", task="retrieval"),
    output:
        features=f"{RESULTS}/retrieval_features/{{backbone}}/{{dataset}}.npz",
        info=f"{RESULTS}/retrieval_features/{{backbone}}/{{dataset}}.json",
    log:
        logfile("extract_retrieval_features/{backbone}/{dataset}.log"),
    benchmark:
        logfile("benchmarks/extract_retrieval_features/{backbone}/{dataset}.tsv")
    conda:
        "../environment.yml"
    threads: job_threads
    resources:
        **job_resources("extract_retrieval_features"),
        gpu=1,
    params:
        # The registry entry as retrieval builds it (its retrieval variant, if any: docs/protocol.md §2.2).
        backbone=lambda wc: bobench_config.feature_spec(
            task_backbone(wc.backbone, "retrieval")
        ),
        transform=lambda wc: retrieval_transform_params(wc.backbone),
        crop_queries=config["retrieval"]["crop_revisited_queries"],
        extraction=options("extraction"),
    script:
        "../workflow_scripts/extract_retrieval_features.py"


rule retrieval:
    input:
        unpack(retrieval_inputs),
        code=code("retrieval.py"),
    output:
        record=cell_record("retrieval", "{backbone}", "{dataset}"),
        predictions=f"{RESULTS}/predictions/retrieval/{{backbone}}/{{dataset}}.npz",
    log:
        logfile("retrieval/{backbone}/{dataset}.log"),
    benchmark:
        logfile("benchmarks/retrieval/{backbone}/{dataset}.tsv")
    conda:
        "../environment.yml"
    threads: 1
    resources:
        **job_resources("retrieval"),
        gpu=1,
    params:
        retrieval=options("retrieval"),
        bootstrap=options("bootstrap"),
        seed=config["seed"],
    script:
        "../workflow_scripts/retrieval.py"

# Stage 2: pooled features of every split, once per backbone × dataset (the only GPU-heavy step here).


rule extract_features:
    input:
        standin_weights=lambda wc: standin_weights(wc.backbone),
        dataset=prepared("{dataset}"),
        code=code("extract_features.py"),
    output:
        features=f"{RESULTS}/features/{{backbone}}/{{dataset}}.npz",
        info=f"{RESULTS}/features/{{backbone}}/{{dataset}}.json",
    log:
        logfile("extract_features/{backbone}/{dataset}.log"),
    benchmark:
        logfile("benchmarks/extract_features/{backbone}/{dataset}.tsv")
    conda:
        "../environment.yml"
    threads: job_threads
    resources:
        **job_resources("extract_features"),
        gpu=1,
    params:
        # Only the fields that change features: renaming a backbone reruns tables, not extraction.
        backbone=lambda wc: bobench_config.feature_spec(BACKBONES[wc.backbone]),
        extraction=options("extraction"),
    script:
        "../workflow_scripts/extract_features.py"

"""Rule retrieval: BoB's class-folder retrieval protocol on cached features."""

import time

from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)

from bobench.cells import load_features, metric_entry, write_record  # noqa: E402
from bobench.features import pick_device  # noqa: E402
from bobench.tasks.retrieval import class_folder_split, retrieval_metrics  # noqa: E402

sm = snakemake  # noqa: F821
started = time.perf_counter()
arrays, info = load_features(sm.input.features, sm.input.info)
params = sm.params.retrieval
features, labels = arrays[f"{params['split']}_features"], arrays[f"{params['split']}_labels"]
query_idx, db_idx = class_folder_split(labels, query_fraction=params["query_fraction"])
result = retrieval_metrics(
    features[query_idx], labels[query_idx], features[db_idx], labels[db_idx], device=pick_device()
)
log.info("mAP %.4f, MRR %.4f over %d queries", result.metrics["map"], result.metrics["mrr"], result.n_queries)
write_record(
    sm.output.record,
    task_name="retrieval",
    backbone=sm.wildcards.backbone,
    dataset=sm.wildcards.dataset,
    features_info={**info, "test_split": info.get("test_split") if params["split"] == "test" else params["split"]},
    protocol_params={
        "split": params["split"], "query_fraction": params["query_fraction"],
        "queries": "first floor(q * n_c) items of each class, clipped to [1, n_c - 1]", "descriptor": "L2-normalised pooled features",
        "similarity": "dot product", "ap": "revisitop trapezoidal AP",
    },
    metrics=[
        metric_entry(name, result.per_query[name], sm.params.bootstrap, sm.params.seed, primary=(name == "map"))
        for name in result.per_query
    ],
    sizes={"queries": result.n_queries, "database": result.n_database},
    seed=sm.params.seed,
    started=started,
)

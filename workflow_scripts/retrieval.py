"""Rule retrieval: rank the database for every query and score it (bobench.retrieval.metrics)."""

import time
from pathlib import Path

from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)

from bobench.cells import load_features, metric_entry, write_record  # noqa: E402
from bobench.features import pick_device  # noqa: E402
from bobench.io import save_npz  # noqa: E402
from bobench.retrieval.ground_truth import REVISITED_PROTOCOLS, GroundTruth  # noqa: E402
from bobench.retrieval.metrics import evaluate_retrieval  # noqa: E402
from bobench.retrieval.splits import class_folder_rule, class_folder_split, load_split  # noqa: E402

sm = snakemake  # noqa: F821
started = time.perf_counter()
params = sm.params.retrieval
arrays, info = load_features(sm.input.features, sm.input.info)
if "split" in sm.input.keys():  # a retrieval benchmark: its own queries, database and protocols
    split, meta = load_split(Path(sm.input.split[0]).parent)
    queries, database, protocols = arrays["query_features"], arrays["database_features"], split.ground_truth
    primary = params["revisited_protocol"] if set(protocols) == set(REVISITED_PROTOCOLS) else split.primary
    split_info = {"split_version": meta["split_version"], "split_sha256": meta["split_sha256"], "rule": meta["rule"]}
    test_split = f"retrieval split v{meta['split_version']} ({meta['split_sha256']})"
else:  # a classification dataset: BoB's class-folder protocol on one cached split
    features, labels = arrays[f"{params['split']}_features"], arrays[f"{params['split']}_labels"]
    query_idx, db_idx = class_folder_split(labels, query_fraction=params["query_fraction"])
    queries, database = features[query_idx], features[db_idx]
    protocols, primary = {"default": GroundTruth.from_labels(labels[query_idx], labels[db_idx])}, "default"
    split_info = {"split": params["split"], "query_fraction": params["query_fraction"],
                  "rule": class_folder_rule(params["query_fraction"])}
    test_split = info.get("test_split") if params["split"] == "test" else params["split"]

results, top = evaluate_retrieval(queries, database, protocols, ks=params["ks"], device=pick_device(), topk=params["topk"])
best = results[primary]
log.info("mAP %.4f, MRR %.4f over %d queries (%s protocol)", best.metrics["map"], best.metrics["mrr"], len(best.scored), primary)
# Raw per-query results: the top of each ranking and every metric of the primary protocol.
save_npz(sm.output.predictions, top=top, scored=best.scored, **{f"per_query_{k}": v for k, v in best.per_query.items()})
write_record(
    sm.output.record,
    task_name="retrieval",
    backbone=sm.wildcards.backbone,
    dataset=sm.wildcards.dataset,
    features_info={**info, "test_split": test_split},
    protocol_params={
        **split_info, "protocols": sorted(protocols), "primary_protocol": primary, "ks": list(params["ks"]),
        "descriptor": "L2-normalised pooled features", "similarity": "dot product, exact (stable sort)",
        "ap": "revisitop trapezoidal AP, junk removed", "transform": info.get("transform_params"),
        "cropped_queries": info.get("cropped_queries", False),
    },
    metrics=[
        # The primary protocol's metrics keep their names; the others (revisited Easy, Hard) get a suffix.
        metric_entry(name if protocol == primary else f"{name}_{protocol}", result.per_query[name], sm.params.bootstrap,
                     sm.params.seed, primary=(protocol == primary and name == "map"))
        for protocol, result in results.items() for name in result.per_query
    ],
    sizes={"queries": best.n_queries, "scored_queries": len(best.scored), "database": best.n_database},
    seed=sm.params.seed,
    started=started,
)

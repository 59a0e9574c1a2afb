"""Rule knn: cosine kNN classifier on cached features (train + val as the bank)."""

import time

import numpy as np

from bobench.workflow import start_job

log = start_job(snakemake)  # noqa: F821 (injected by Snakemake)

from bobench.cells import load_features, metric_entry, write_record  # noqa: E402
from bobench.features import pick_device  # noqa: E402
from bobench.tasks.knn import KnnOptions, knn_classify  # noqa: E402

sm = snakemake  # noqa: F821
started = time.perf_counter()
arrays, info = load_features(sm.input.features, sm.input.info)
options = KnnOptions(k=sm.params.knn["k"], temperature=sm.params.knn["temperature"])
# No hyperparameter is tuned on val, so val joins the bank (as the probe refits on train + val).
bank_x = np.concatenate([arrays["train_features"], arrays["val_features"]])
bank_y = np.concatenate([arrays["train_labels"], arrays["val_labels"]])
result = knn_classify(
    bank_x, bank_y, arrays["test_features"], arrays["test_labels"],
    num_classes=info["num_classes"], options=options, device=pick_device(),
)
log.info("test top-1 %.4f (k=%d, T=%g)", result.top1, result.k, result.temperature)
write_record(
    sm.output.record,
    task_name="knn",
    backbone=sm.wildcards.backbone,
    dataset=sm.wildcards.dataset,
    features_info=info,
    protocol_params={
        "k": result.k, "temperature": result.temperature, "similarity": "cosine",
        "voting": "exp(sim / T) weighted", "bank": "train+val",
    },
    metrics=[metric_entry("top1", result.correct, sm.params.bootstrap, sm.params.seed, primary=True)],
    sizes={"bank": int(len(bank_y)), "test": int(len(arrays["test_labels"]))},
    seed=sm.params.seed,
    started=started,
)

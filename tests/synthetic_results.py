"""A small random results table in the shape of results/results.csv, for figure and report-table tests.

Every value is random: layout data only, never a result. (Shared by several test modules; a test module
never imports another.)"""

from __future__ import annotations

import numpy as np
import pandas as pd

FAMILIES = ["CNN", "ViT", "hierarchical ViT"]
METHODS = ["supervised", "SSL", "vision-language", "generative", "depth", "none"]
SETTINGS = [
    ("classification", "in1k", "linear_probe", "top1"),
    ("classification", "in1k", "knn", "top1"),
    ("retrieval", "cub", "frozen", "map"),
    ("detection", "coco", "finetune", "ap"),
]


def make_results(n_backbones: int, settings=SETTINGS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_backbones):
        method = METHODS[i % len(METHODS)]
        n_params = int(rng.integers(5_000_000, 300_000_000))
        for task, dataset, protocol, metric in settings:
            rows.append({
                "backbone": f"bb{i}", "backbone_name": f"net-{i}", "family": FAMILIES[i % 3],
                "method": method, "pretrain_data": "x", "pretrain_size": 0 if method == "none" else 10**6,
                "n_params": n_params, "task": task, "dataset": dataset, "domain": "natural",
                "protocol": protocol, "metric": metric, "value": float(rng.random()),
                "ci_low": np.nan, "ci_high": np.nan, "primary": True,
            })
    return pd.DataFrame(rows)

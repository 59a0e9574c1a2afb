"""A FABRICATED results table with the shape of the paper run, for drawing tests only.

Every number in it is random (a seeded latent "quality" per backbone plus noise): it is layout
data, made so that the figures can be checked for legibility at paper scale (51 backbones with
their real, long display names × every setting of ``config/paper.yaml``). It is NOT a result,
says nothing about any backbone, and must never be ranked, reported or compared with the paper.
The provenance columns say so too (``host`` = ``fabricated-layout-data``).

What is real is the row structure, taken from the configs and the code that writes the true
``results/results.csv`` (``bobench.results.COLUMNS``, ``bobench.config.cells`` /
``detection_jobs`` / ``ood_plan``, the metric entries of ``bobench.cells`` and the workflow
scripts):

* classification: ``linear_probe`` (6 datasets), ``finetune`` (9) and ``frozen_probe`` (ImageNet),
  primary ``top1`` (``mean_auroc`` plus one ``auroc_<class>`` per class on multi-label CheXpert);
  the trained classifiers (finetune, frozen probe) also report ``nll`` and ``ece``;
* ood_classification: the fine-tuned ImageNet and VisDA classifiers on their OOD sets (5 sets):
  ``top1`` (primary), ``nll``, ``ece``;
* detection and instance_segmentation on COCO: settings ``finetune`` and ``frozen`` (random-init
  backbones: finetune only), one row group per learning rate (4), COCO's six AP numbers, ``ap``
  primary; the backbones of ``task_backbones.detection`` only;
* ood_detection: Sim10k detectors on Cityscapes cars, one lr, ``ap50`` primary;
* retrieval (protocol ``frozen``) on the 8 benchmarks: ``map`` (primary), ``mrr``, precision and
  recall at 1/5/10, and for ROxford/RParis the revisited easy/hard protocols with a suffix.

Parameter counts are not in the registry (they are measured from the built model); the ones here
are rough public figures per architecture, good enough to place backbones on a log axis.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bobench import config as bobench_config
from bobench.ranking import ALL_TASKS, Ranking, compute_ranking
from bobench.results import COLUMNS
from bobench.retrieval.ground_truth import REVISITED_PROTOCOLS

ROOT = Path(__file__).resolve().parents[1]
FABRICATED = "fabricated-layout-data"

#: Rough parameter counts (feature extractor, no head) by timm architecture name prefix.
APPROX_PARAMS = {
    "tf_efficientnet_lite0": 3.4e6, "tf_efficientnet_lite1": 4.2e6, "tf_efficientnet_lite2": 4.8e6,
    "resnet50x64_clip": 420e6, "resnet101_clip": 56e6, "resnet50_clip": 38e6,
    "resnet101": 42.5e6, "resnet50": 23.5e6,
    "convnext_tiny": 27.8e6, "convnext_small": 49.5e6, "convnext_base": 87.6e6, "convnext_xlarge": 348e6,
    "swinv2_tiny": 27.6e6, "swinv2_base": 86.9e6, "swinv2_large": 195e6,
    "vit_small": 21.7e6, "vit_base": 85.8e6, "vit_large": 303e6, "samvit_base": 89.7e6,
}
SD_ENCODER_PARAMS = 430e6  # the Stable Diffusion UNet's encoder half (python entry point, no timm name)
CHEXPERT_CLASSES = ["atelectasis", "cardiomegaly", "consolidation", "edema", "pleural_effusion"]
COCO_STATS = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large")


def paper_config() -> tuple[dict, dict, dict]:
    """``config/paper.yaml`` with the schema's defaults filled in, and the two registries."""
    schemas = ROOT / "config" / "schemas"
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    bobench_config.validate_against_schema(config, schemas / "config.schema.yaml", "config")
    backbones = bobench_config.load_registry(ROOT / "config" / "backbones.yaml", schemas / "backbones.schema.yaml", "backbones")
    datasets = bobench_config.load_registry(ROOT / "config" / "datasets.yaml", schemas / "datasets.schema.yaml", "datasets")
    return config, backbones, datasets


def approx_params(entry: dict) -> float:
    name = entry["architecture"].get("name") or ""
    for prefix, count in APPROX_PARAMS.items():
        if name.startswith(prefix):
            return count
    return SD_ENCODER_PARAMS


def _metrics(task: str, protocol: str, multilabel: bool, dataset: str, retrieval_ks: list[int]) -> list[tuple[str, bool]]:
    """(metric, primary) of one record, as the workflow scripts write them."""
    if task in ("classification", "ood_classification"):
        if multilabel:
            return [("mean_auroc", True), *((f"auroc_{c}", False) for c in CHEXPERT_CLASSES)]
        calibrated = protocol in ("finetune", "frozen_probe")
        return [("top1", True), *((("nll", False), ("ece", False)) if calibrated else ())]
    if task in ("detection", "instance_segmentation", "ood_detection"):
        primary = "ap50" if task == "ood_detection" else "ap"
        return [(m, m == primary) for m in COCO_STATS]
    names = ["map", "mrr", *(f"{m}@{k}" for m in ("precision", "recall") for k in retrieval_ks)]
    rows = [(m, m == "map") for m in names]
    if dataset in ("roxford5k", "rparis6k"):  # revisited protocols: medium primary, the others suffixed
        rows += [(f"{m}_{p}", False) for p in REVISITED_PROTOCOLS if p != "medium" for m in names]
    return rows


def paper_settings() -> list[dict]:
    """Every (task, dataset, protocol, backbones, lrs) record group the paper config makes."""
    config, backbones, datasets = paper_config()
    groups: dict[tuple, dict] = {}

    def add(task: str, dataset: str, protocol: str, backbone: str, lr: str | None = None) -> None:
        group = groups.setdefault((task, dataset, protocol), {"task": task, "dataset": dataset, "protocol": protocol,
                                                             "backbones": [], "lrs": []})
        if backbone not in group["backbones"]:
            group["backbones"].append(backbone)
        if lr is not None and lr not in group["lrs"]:
            group["lrs"].append(lr)

    ood = bobench_config.ood_plan(config)
    for task_name, backbone, dataset in bobench_config.cells(config, datasets):
        spec = bobench_config.TASKS[task_name]
        if task_name in ("detection", "ood_detection"):
            continue  # below, one record per detector
        if task_name == "ood":
            for ood_set in ood[dataset]:
                add(spec.task, ood_set.set_id, spec.protocol, backbone)
            continue
        add(spec.task, dataset, spec.protocol, backbone)
    sets = bobench_config.detection_sets(config)
    for task_name, backbone, dataset, setting, lr in bobench_config.detection_jobs(config, datasets, backbones):
        if task_name == "detection":
            for task in ("detection", "instance_segmentation"):
                add(task, dataset, setting, backbone, lr)
        else:
            for test_set in sets[dataset]:
                add("ood_detection", test_set, setting, backbone, lr)
    return list(groups.values())


def paper_shaped_results(seed: int = 0) -> pd.DataFrame:
    """The fabricated table (see the module docstring): columns of ``bobench.results.COLUMNS``."""
    config, backbones, datasets = paper_config()
    rng = np.random.default_rng(seed)
    ids = list(config["backbones"])
    # A latent quality per backbone, rising with size; random init far below: task scores correlate.
    params = {b: approx_params(backbones[b]) for b in ids}
    quality = {b: (0.35 * np.log10(params[b] / 3e7) + rng.normal(0, 0.6)
                   - (3.0 if backbones[b]["method"] == "none" else 0.0)) for b in ids}
    task_skill = {(b, t): rng.normal(0, 0.5) for b in ids
                  for t in ("classification", "ood_classification", "detection", "instance_segmentation",
                            "ood_detection", "retrieval")}
    rows = []
    ks = list(config["retrieval"]["ks"])
    for group in paper_settings():
        task, dataset, protocol = group["task"], group["dataset"], group["protocol"]
        meta = datasets.get(dataset, {})
        multilabel = bool(meta.get("multilabel"))
        difficulty = rng.uniform(-1.0, 1.5)
        for backbone in group["backbones"]:
            entry = backbones[backbone]
            for lr in group["lrs"] or [None]:
                latent = quality[backbone] + task_skill[backbone, task] + rng.normal(0, 0.35)
                base = float(1 / (1 + np.exp(-(latent + difficulty))))  # a score in (0, 1)
                protocol_params = {"fabricated": True, **({"lr": float(lr), "setting": protocol} if lr else {})}
                for metric, primary in _metrics(task, protocol, multilabel, dataset, ks):
                    if metric == "nll":
                        value = float(np.clip(4.0 * (1 - base) + rng.normal(0, 0.2), 0.05, None))
                    elif metric == "ece":
                        value = float(np.clip(0.03 + 0.15 * (1 - base) * rng.uniform(0.3, 1.2), 0.002, 0.6))
                    else:
                        value = float(np.clip(base * rng.uniform(0.85, 1.0) if not primary else base, 0.0, 1.0))
                    rows.append({
                        "backbone": backbone, "backbone_name": entry["name"], "family": entry["family"],
                        "method": entry["method"], "pretrain_data": entry["pretrain_data"],
                        "pretrain_size": int(entry["pretrain_size"]), "n_params": int(params[backbone]),
                        "task": task, "dataset": dataset, "dataset_name": meta.get("name", dataset),
                        "domain": meta.get("domain", "natural"), "protocol": protocol,
                        "metric": metric, "value": value, "ci_low": max(value - 0.01, 0.0), "ci_high": value + 0.01,
                        "primary": primary, "protocol_params": json.dumps(protocol_params, sort_keys=True),
                        "n_train": 10_000.0, "n_test": 1_000, "test_split": "test",
                        "input_size": int((entry.get("input") or {}).get("size") or 224),
                        "precision": "bf16", "device": "fabricated", "feature_dim": 768,
                        "weights": json.dumps({"source": entry["weights"]["source"]}),
                        "config_hash": "0" * 16, "git_commit": FABRICATED, "packages": "{}", "seed": seed,
                        "wall_time_s": 0.0, "host": FABRICATED,
                    })
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values(["task", "dataset", "protocol", "backbone", "metric"], kind="stable").reset_index(drop=True)


def paper_shaped_ranking(results: pd.DataFrame, seed: int = 0) -> Ranking:
    """The ranking of the fabricated table, with fabricated overall-score intervals (the error bars the
    ranking figures draw from ``ranking_intervals.csv``): score ± a random half-width."""
    ranking = compute_ranking(results)
    rng = np.random.default_rng(seed)
    scored = ranking.overall.dropna(subset=["score"])
    low = scored["score"] - rng.uniform(0.05, 0.35, len(scored))
    high = scored["score"] + rng.uniform(0.05, 0.35, len(scored))
    intervals = pd.DataFrame({"task": ALL_TASKS, "backbone": scored["backbone"], "ci_low": low, "ci_high": high})
    from bobench.figures import with_score_intervals

    return with_score_intervals(ranking, intervals)


if __name__ == "__main__":
    table = paper_shaped_results()
    settings = table[table["primary"]].groupby(["task", "dataset", "protocol"]).size()
    print(f"{len(table)} rows, {table['backbone'].nunique()} backbones, {len(settings)} settings (FABRICATED)")
    print(settings.to_string())

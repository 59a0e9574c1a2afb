"""The covering rehearsal: the fewest jobs of a DAG that still run every code path a paper run takes.

A full rehearsal runs every job of the config it overlays (thousands for the paper). A covering one
keeps, per task, jobs until every backbone and every dataset of that task has run at least once
(detectors: every backbone, dataset, setting and learning rate), and runs every dataset-specific
override with every backbone it applies to: a resolution of its own (CheXpert's 256 px), a label
policy of its own (multi-label CheXpert), class masks (ImageNet-A/R's 200 classes, read by the OOD
jobs of ImageNet classifiers).

The CI slice (``coverage: slice``) is lighter: only the overrides that meet the backbone's own code (a
resolution of the dataset's own: ViTs and SwinV2s take CheXpert's 256 px through their dynamic input size)
run with every backbone; a label policy or class masks act on labels and logits the same way whatever the
backbone, so one backbone each is enough there. ``rehearsal.every_backbone_tasks`` narrows further which
tasks must run every backbone (the others cover every dataset, setting and learning rate).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def greedy_cover(items: Sequence[tuple], attributes: Sequence[int], required: Iterable[tuple] = ()) -> list[tuple]:
    """``required`` plus, in ``items`` order, each item that covers a value of an attribute (a tuple
    index) not yet covered, best first, until every value of every attribute is covered."""
    chosen = list(dict.fromkeys(required))
    covered = {(a, item[a]) for item in chosen for a in attributes}
    wanted = {(a, item[a]) for item in items for a in attributes}
    while not wanted <= covered:
        best = max(items, key=lambda item: sum((a, item[a]) not in covered for a in attributes))
        chosen.append(best)
        covered |= {(a, best[a]) for a in attributes}
    return chosen


def override_datasets(config: dict[str, Any], datasets: dict[str, Any], resolution_only: bool = False) -> dict[str, set[str]]:
    """Per task, the datasets with an override every backbone must run: their own resolution or label
    policy (multi-label), or, for OOD, a source whose OOD sets carry class masks (fewer classes).
    ``resolution_only``: the resolution overrides alone (the CI slice's)."""
    out: dict[str, set[str]] = {}
    finetune_overrides = (config.get("finetune") or {}).get("dataset_overrides") or {}
    if resolution_only:
        return {"finetune": {d for d, recipe in finetune_overrides.items() if "image_size" in recipe and d in config["datasets"]}}
    for task in ("finetune", "frozen_probe", "linear_probe"):
        out[task] = {d for d in config["datasets"] if datasets[d].get("multilabel")}
    out["finetune"] |= {d for d, recipe in finetune_overrides.items() if "image_size" in recipe}
    out["ood"] = set()
    for item in (config.get("ood") or {}).get("sets") or []:
        source_classes = datasets[item["trained_on"]]["source"].get("num_classes")
        for ood_set in item.get("datasets") or []:
            ood_classes = datasets[ood_set]["source"].get("num_classes")
            if source_classes and ood_classes and ood_classes < source_classes:
                out["ood"].add(item["trained_on"])
    return out


def covering_cells(cells: Sequence[tuple[str, str, str]], overrides: dict[str, set[str]],
                   backbone_tasks: Iterable[str] | None = None) -> list[tuple[str, str, str]]:
    """Per task, cells covering every dataset and (for ``backbone_tasks``; None: every task) every
    backbone, all backbones for override datasets; an OOD cell brings the fine-tuning cell whose
    classifier it tests."""
    backbone_tasks = None if backbone_tasks is None else set(backbone_tasks)
    chosen: list[tuple[str, str, str]] = []
    # OOD first: the classifiers its cells test are fine-tuning cells the fine-tuning cover then starts from.
    tasks = sorted(dict.fromkeys(task for task, _, _ in cells), key=lambda task: task != "ood")
    for task in tasks:
        task_cells = [c for c in cells if c[0] == task]
        required = [c for c in task_cells if c[2] in overrides.get(task, ())]
        if task == "finetune":
            required += [("finetune", b, d) for t, b, d in chosen if t == "ood"]
        attributes = (1, 2) if backbone_tasks is None or task in backbone_tasks else (2,)
        chosen += greedy_cover(task_cells, attributes, required)
    return list(dict.fromkeys(chosen))


def covering_detection_jobs(jobs: Sequence[tuple[str, str, str, str, str]],
                            backbone_tasks: Iterable[str] | None = None) -> list[tuple[str, str, str, str, str]]:
    """Per detection task, detectors covering every dataset, setting, learning rate and (for
    ``backbone_tasks``; None: every task) every backbone."""
    backbone_tasks = None if backbone_tasks is None else set(backbone_tasks)
    chosen: list[tuple[str, str, str, str, str]] = []
    for task in dict.fromkeys(job[0] for job in jobs):
        attributes = (1, 2, 3, 4) if backbone_tasks is None or task in backbone_tasks else (2, 3, 4)
        chosen += greedy_cover([j for j in jobs if j[0] == task], attributes)
    return chosen


def rehearsal_selection(config: dict[str, Any], datasets: dict[str, Any], cells: Sequence[tuple[str, str, str]],
                        detection_jobs: Sequence[tuple[str, str, str, str, str]],
                        ) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str, str, str]]]:
    """The cells and detectors a run plans: all of them, or a rehearsal's covering selection
    (``rehearsal.coverage``, ``rehearsal.every_backbone_tasks``). The Snakefile and the rehearsal's check
    both call this, so the check asks for exactly the pairs the run promised."""
    rehearsal = config.get("rehearsal") or {}
    mode = rehearsal.get("coverage", "full")
    if not rehearsal.get("enabled") or mode == "full":
        return list(cells), list(detection_jobs)
    backbone_tasks = rehearsal.get("every_backbone_tasks")
    overrides = override_datasets(config, datasets, resolution_only=mode == "slice")
    return covering_cells(cells, overrides, backbone_tasks), covering_detection_jobs(detection_jobs, backbone_tasks)

"""What a battle will cost before it runs: ``python -m bobench.plan --configfile config/paper.yaml``.

Prints GPU-hours per task, per backbone and in total, CPU-hours of input decoding, the disk for datasets,
the feature cache and the models, and the peak host memory (and cores, runtime) each job class asks for.
Every number is :mod:`bobench.cost`'s, the model the rules' ``resources:`` use (rules/common.smk
``job_resources``), so the plan is what SLURM is asked for. The cells and detectors come from
:func:`planned_cells`, which the Snakefile calls too; :meth:`Battle.jobs` turns them into the jobs of the
rules that have a cost (the aggregates, a few minutes of CPU, are left out).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bobench import config as bobench_config
from bobench.cost import CostModel, JobCost, load_cost_model
from bobench.datasets.entries import is_retrieval_benchmark
from bobench.datasets.input_cache import cache_short_side

ROOT = Path(__file__).resolve().parents[1]

Cell = tuple[str, str, str]
Detector = tuple[str, str, str, str, str]


def planned_cells(
    config: dict[str, Any], datasets: dict[str, Any], backbones: dict[str, Any]
) -> tuple[list[Cell], list[Detector]]:
    """The cells (task, backbone, dataset) and detectors (task, backbone, dataset, setting, lr) a run plans:
    every cell of the config, or a rehearsal's covering selection. The Snakefile (rules/common.smk) and the
    planner both take their jobs from here."""
    from bobench.rehearsal.coverage import rehearsal_selection

    cells = list(bobench_config.cells(config, datasets))
    detectors = bobench_config.detection_jobs(config, datasets, backbones)
    return rehearsal_selection(config, datasets, cells, detectors)


def finetune_recipe(config: dict[str, Any], backbone: str, dataset: str) -> dict[str, Any]:
    """The fine-tuning recipe with this backbone's overrides (BoB's per-model batch, epochs, lr), then this
    dataset's recipe (low-data ImageNet, CheXpert)."""
    section = config["finetune"]
    recipe = {k: v for k, v in section.items() if k not in ("overrides", "dataset_overrides")}
    return bobench_config.canonical(
        {
            **recipe,
            **section.get("overrides", {}).get(backbone, {}),
            **section.get("dataset_overrides", {}).get(dataset, {}),
        }
    )


def training_cache_short_side(
    config: dict[str, Any], backbones: dict[str, Any], task: str, backbone: str, dataset: str
) -> int | None:
    """The short side a training job (``finetune``, ``frozen_probe``) needs of an input cache, or None (config
    ``input_cache`` off, or a backbone with no input size: it reads its image files): round(input size ×
    ``short_side_ratio``), the input size being the recipe's ``image_size``, else the registry's ``input.size``.
    Which cache the job reads is :class:`InputCaches`' decision."""
    options = config.get("input_cache") or {}
    if not options.get("enabled"):
        return None
    recipe = finetune_recipe(config, backbone, dataset) if task == "finetune" else config["frozen_probe"]
    size = recipe.get("image_size") or (backbones[backbone].get("input") or {}).get("size")
    if size is None:
        return None
    return cache_short_side(size, options["short_side_ratio"])


TRAINING_TASKS = ("finetune", "frozen_probe")


class InputCaches:
    """The training input caches a run makes (rule ``prepare_input_cache``, one job per dataset and short side)
    and the one each training job reads. The Snakefile (rules/common.smk ``training_input_cache``) and the
    planner both take them from here, so the plan's disk is the DAG's.

    A job may read any cache of its dataset whose short side is at least the one it needs
    (:func:`training_cache_short_side`): its random-resized crop then draws from a larger image, closer to
    BoB's, who cropped from the JPEG. With ``input_cache.share`` (the default) a dataset's caches are at the
    ``shared_short_sides`` (256 and 512 px: every 224-px backbone reads the first, every other one up to
    448 px the second) and a job reads the smallest that is large enough. A job that needs more than the
    largest reads its image files, unless ``min_jobs`` is set (default: never) and that many of the cells'
    jobs need its short side: then they share a cache of their own.

    The shared short sides are fixed by the config, not taken from what the cells happen to need, and caches
    above them are off by default, so that which cache a job reads depends on its own short side only: adding
    or changing a backbone never changes another backbone's input (Snakemake would rerun its jobs).
    ``share: false``: one cache per short side a job needs, each job reading its own (the layout before the
    shared caches)."""

    def __init__(self, config: dict[str, Any], backbones: dict[str, Any], cells: Iterable[Cell]):
        self.config, self.backbones = config, backbones
        options = config.get("input_cache") or {}
        self.share = options.get("share", True)
        self.shared = sorted(options.get("shared_short_sides", [256, 512]))
        min_jobs = options.get("min_jobs")
        needs: Counter[tuple[str, int]] = Counter()  # (dataset, short side) → training jobs that need it
        for task, b, d in dict.fromkeys(cells):
            if task in TRAINING_TASKS and (side := training_cache_short_side(config, backbones, task, b, d)) is not None:
                needs[d, side] += 1
        largest = max(self.shared, default=0)
        #: (dataset, short side) of the caches above the shared ones (min_jobs or more jobs need them).
        self.larger = sorted(k for k, n in needs.items() if k[1] > largest and min_jobs and n >= min_jobs)

    def short_side(self, task: str, backbone: str, dataset: str) -> int | None:
        """The short side of the cache this training job reads, or None: it reads its image files."""
        needed = training_cache_short_side(self.config, self.backbones, task, backbone, dataset)
        if needed is None or not self.share:
            return needed
        sides = self.shared + [s for d, s in self.larger if d == dataset]
        return min((s for s in sides if s >= needed), default=None)


@dataclass(frozen=True)
class Job:
    rule: str
    wildcards: tuple[tuple[str, str], ...]

    @property
    def values(self) -> dict[str, str]:
        return dict(self.wildcards)

    def task(self) -> str:
        """The row of the plan's per-task table this job's GPU time counts in."""
        if self.rule == "train_detector":
            return self.values["detection_task"]
        return {
            "extract_features": "features (extraction)",
            "extract_retrieval_features": "retrieval features (extraction)",
            "ood_classification": "ood",
            "prepare_input_cache": "input cache (CPU only)",
        }.get(self.rule, self.rule)


def job(rule: str, **wildcards: str) -> Job:
    return Job(rule, tuple(sorted(wildcards.items())))


class Battle:
    """A run's config and registries, and what each of its jobs costs (the rules' ``resources:``)."""

    def __init__(
        self,
        config: dict[str, Any],
        backbones: dict[str, Any],
        datasets: dict[str, Any],
        model: CostModel | None = None,
        cells: Iterable[Cell] = (),
    ):
        self.config, self.backbones, self.datasets = config, backbones, datasets
        self.input_caches = InputCaches(config, backbones, cells)  # decided by the run's cells (planned_cells)
        self.model = model or load_cost_model()
        self.ood_plan = bobench_config.ood_plan(config)
        self.detection_sets = bobench_config.detection_sets(config)
        rehearsal = config.get("rehearsal") or {}
        self.cap = rehearsal.get("max_images_per_split") if rehearsal.get("enabled") else None
        self._costs: dict[tuple[str, tuple[tuple[str, str], ...]], JobCost] = {}

    # ------------------------------------------------------------------ shapes

    def sizes(self, dataset: str) -> dict[str, int]:
        """Images per split as preparation makes them (the registry's split policy on the official pools,
        the run's overrides and a rehearsal's caps applied); queries and database for a retrieval benchmark."""
        info = self.model.dataset(dataset)
        if "queries" in info:
            return {k: min(info[k], self.cap) if self.cap else info[k] for k in ("queries", "database")}
        entry = bobench_config.dataset_entry(self.config, self.datasets, dataset)
        pools = dict(info["pools"])
        if entry.get("source", {}).get("test_split", "test") == "val" and "val" in pools:  # BoB's test on the official val split
            pools["test"] = pools["val"]
        return split_sizes(entry.get("splits") or {}, pools)

    def classes(self, dataset: str) -> int:
        return self.model.dataset(dataset).get("classes", 1000)

    def native(self, backbone: str) -> int:
        return self.model.row(backbone).resolution

    # ------------------------------------------------------------------ costs

    def cost(self, rule: str, wildcards: Mapping[str, str]) -> JobCost:
        """What one job of ``rule`` with these wildcards costs and asks for (computed once per job: Snakemake
        asks for each resource separately)."""
        key = (rule, tuple(sorted(wildcards.items())))
        if key not in self._costs:
            self._costs[key] = self._cost(rule, wildcards)
        return self._costs[key]

    def _cost(self, rule: str, wildcards: Mapping[str, str]) -> JobCost:
        model, config = self.model, self.config
        b, d = wildcards.get("backbone"), wildcards.get("dataset")
        if rule in ("extract_features", "extract_retrieval_features"):
            options = config["extraction"]
            images = sum(self.sizes(d).values())
            return model.extraction(
                b,
                d,
                images=images,
                resolution=options.get("image_size") or self.native(b),
                batch=options["batch_size"],
                workers=options.get("num_workers", 0),
            )
        if rule == "linear_probe":
            n, options = self.sizes(d), config["linear_probe"]
            return model.linear_probe(
                b,
                multilabel=bool(self.datasets[d].get("multilabel")),
                n_train=n["train"],
                n_val=n["val"],
                n_test=n["test"],
                classes=self.classes(d),
                grid=len(options["c_grid"]),
                max_iter=options["max_iter"],
                refit=options.get("refit_on_train_val", True),
            )
        if rule == "knn":
            n = self.sizes(d)
            return model.similarity(b, queries=n["test"], database=n["train"], rows=sum(n.values()))
        if rule == "retrieval":
            n = self.sizes(d)
            if "queries" in n:
                return model.similarity(b, queries=n["queries"], database=n["database"], rows=sum(n.values()))
            pool = n[config["retrieval"].get("split", "test")]
            queries = round(config["retrieval"].get("query_fraction", 0.2) * pool)
            return model.similarity(b, queries=queries, database=pool, rows=sum(n.values()))
        if rule in ("finetune", "frozen_probe"):
            recipe = finetune_recipe(config, b, d) if rule == "finetune" else config["frozen_probe"]
            n = self.sizes(d)
            side, cache_pixels = self.input_caches.short_side(rule, b, d), 1.0
            if side is not None:  # a shared cache may hold more pixels than the job's own short side would
                own = training_cache_short_side(config, self.backbones, rule, b, d)
                cache_pixels = model.cached_megapixels(d, side) / model.cached_megapixels(d, own)
            return model.training(
                b,
                d,
                micro_batch=recipe.get("micro_batch"),
                eval_batch=recipe.get("eval_batch_size", 256),
                cached=side is not None,
                cache_pixels=cache_pixels,
                eval_crops_max_gb=(config.get("input_cache") or {}).get("eval_crops_max_gb", 0.0),
                train=n["train"],
                val=n["val"],
                test=n["test"],
                epochs=recipe["epochs"],
                batch=recipe["batch_size"],
                resolution=recipe.get("image_size") or self.native(b),
                workers=recipe.get("num_workers", 0),
                frozen=rule == "frozen_probe",
                max_steps=recipe.get("max_steps"),
            )
        if rule == "ood_classification":
            recipe = finetune_recipe(config, b, d)
            sets = [
                (s.dataset, self.sizes(s.dataset)["test"]) if s.kind == "dataset" else (d, self.sizes(d)["test"])
                for s in self.ood_plan.get(d, [])
            ]
            return model.evaluation(
                b,
                sets,
                resolution=recipe.get("image_size") or self.native(b),
                batch=recipe.get("eval_batch_size", 256),
                workers=recipe.get("num_workers", 0),
            )
        if rule == "train_detector":
            task = wildcards["detection_task"]
            recipe = bobench_config.detection_recipe(config, task, b)
            entry = bobench_config.task_entry(self.backbones[b], task)
            test_sets = self.detection_sets[d] if task == "ood_detection" else [d]
            return model.detection(
                b,
                d,
                [(t, self.sizes(t)["test"]) for t in test_sets],
                train=self.sizes(d)["train"],
                epochs=recipe["epochs"],
                batch=recipe["batch_size"],
                megapixels=model.detector_megapixels(entry["family"], recipe),
                frozen=wildcards["setting"] == "frozen",
                workers=recipe.get("num_workers", 0),
                max_steps=recipe.get("max_steps"),
            )
        if rule == "prepare_input_cache":
            return model.input_cache(d, images=self.sizes(d)["train"], short_side=int(wildcards["short_side"]))
        if rule in ("make_standin_data", "make_standin_weights", "make_task_standin_weights"):
            return model.standin()
        if rule in ("prepare_dataset", "prepare_detection_dataset", "prepare_retrieval_dataset"):
            # A synthetic set made from another dataset takes no download of its own.
            own = "from_dataset" not in self.datasets[d]["source"]
            cost = model.preparation(d)
            return cost if own else JobCost(**{**cost.__dict__, "disk_gb": 0.0})
        return model.light()

    # ------------------------------------------------------------------ jobs

    def jobs(self, cells: Iterable[Cell], detectors: Iterable[Detector]) -> list[Job]:
        """The jobs of the rules with a cost, one per distinct output, as the Snakefile's rules make them."""
        out: dict[Job, None] = {}
        prepared: dict[str, None] = {}
        for task, b, d in cells:
            if task in ("detection", "ood_detection"):
                continue  # their jobs are the detectors
            if task == "retrieval" and is_retrieval_benchmark(self.datasets[d]):
                out[job("prepare_retrieval_dataset", dataset=d)] = None
                out[job("extract_retrieval_features", backbone=b, dataset=d)] = None
            elif task in ("linear_probe", "knn", "retrieval"):
                out[job("extract_features", backbone=b, dataset=d)] = None
                prepared[d] = None
            else:
                prepared[d] = None
            if task == "ood":
                prepared.update((s.dataset, None) for s in self.ood_plan.get(d, []) if s.kind == "dataset")
            if task in ("finetune", "frozen_probe"):
                short_side = self.input_caches.short_side(task, b, d)
                if short_side is not None:
                    out[job("prepare_input_cache", dataset=d, short_side=str(short_side))] = None
            out[job({"ood": "ood_classification"}.get(task, task), backbone=b, dataset=d)] = None
        for task, b, d, setting, lr in detectors:
            for t in [d, *(self.detection_sets.get(d, []) if task == "ood_detection" else [])]:
                out[job("prepare_detection_dataset", dataset=t)] = None
            out[job("train_detector", detection_task=task, backbone=b, dataset=d, setting=setting, lr=lr)] = None
        for d in list(prepared):  # the datasets whose raw folders another's preparation reads (ImageNet's subsets)
            from bobench.datasets import raw_folders_shared_with

            prepared.update((s, None) for s in raw_folders_shared_with(self.datasets[d]))
        for d in self._synthetic_sources(out):
            prepared[d] = None
        return [job("prepare_dataset", dataset=d) for d in prepared] + list(out)

    def _synthetic_sources(self, jobs: Iterable[Job]) -> list[str]:
        """Classification datasets that synthetic detection and retrieval sets are made from."""
        made = [j.values["dataset"] for j in jobs if j.rule in ("prepare_detection_dataset", "prepare_retrieval_dataset")]
        return [self.datasets[d]["source"]["from_dataset"] for d in made if "from_dataset" in self.datasets[d]["source"]]

    def added_jobs(self, cells: Sequence[Cell], detectors: Sequence[Detector], backbone: str) -> list[Job]:
        """The jobs a run makes for ``backbone`` once every other backbone's results are there: the jobs of
        all the cells less those of the other backbones' cells (its own cells, and any preparation only it
        needs, such as an input cache no other backbone reads)."""
        others = self.jobs([c for c in cells if c[1] != backbone], [d for d in detectors if d[1] != backbone])
        done = set(others)
        return [j for j in self.jobs(cells, detectors) if j not in done]


def split_sizes(splits: Mapping[str, Any], pools: Mapping[str, int]) -> dict[str, int]:
    """Images per split from the registry's policy and the official pools' sizes, as
    :func:`bobench.datasets.prepared.make_splits` draws them: test, then val, then train, each from its own
    official pool or carved out of train (or of ``all``); an int is a count, a float a share of the pool's full
    size, ``all`` what is left."""
    base = "all" if "all" in pools else "train"
    left = dict(pools)
    sizes = {}
    for split in ("test", "val", "train"):
        pool = split if split in pools else base
        request = splits.get(split)
        if request == 0 or pool not in pools:
            sizes[split] = 0
            continue
        if request is None or request == "all":
            n = left[pool]
        elif isinstance(request, float):
            n = round(request * pools[pool])
        else:
            n = int(request)
        n = min(n, left[pool])
        left[pool] -= n
        sizes[split] = n
    return sizes


# ---------------------------------------------------------------------------------------------- the command


def load_battle(
    configfiles: Sequence[str | Path], overrides: Mapping[str, Any] | None = None
) -> tuple[Battle, list[Cell], list[Detector]]:
    """A run's battle as the Snakefile sets it up: the config files merged in order, schema defaults filled,
    the registries loaded and the config checked against them, a rehearsal's caps applied."""
    from snakemake.utils import update_config

    from bobench.rehearsal.caps import apply_caps

    files = [str(f) for f in configfiles or [ROOT / "config" / "config.yaml"]]
    config: dict[str, Any] = {}
    for path in files:
        update_config(config, yaml.safe_load(Path(path).read_text()) or {})
    update_config(config, dict(overrides or {}))
    backbones, datasets = bobench_config.check_run(config, files, None, ROOT)
    config = apply_caps(config)
    cells, detectors = planned_cells(config, datasets, backbones)
    return Battle(config, backbones, datasets, cells=cells), cells, detectors


@dataclass(frozen=True)
class Plan:
    """Totals of a battle's jobs."""

    jobs: list[tuple[Job, JobCost]]
    datasets_gb: float
    cache_gb: float
    features_gb: float
    models_gb: float
    backbone: str | None = None  # a plan of one backbone added to the others' results (--backbone)

    @property
    def disk_gb(self) -> float:
        return self.datasets_gb + self.cache_gb + self.features_gb + self.models_gb

    def gpu_hours(self, key: Any) -> dict[str, float]:
        total: dict[str, float] = defaultdict(float)
        for j, cost in self.jobs:
            if cost.gpu:
                total[key(j)] += cost.gpu_s / 3600
        return dict(total)

    @property
    def total_gpu_hours(self) -> float:
        return sum(c.gpu_s for _, c in self.jobs if c.gpu) / 3600

    @property
    def total_cpu_hours(self) -> float:
        return sum(c.cpu_s for _, c in self.jobs) / 3600


def make_plan(battle: Battle, cells: Sequence[Cell], detectors: Sequence[Detector], backbone: str | None = None) -> Plan:
    """The plan of every job of the cells and detectors, or (``backbone``) of the jobs that adding that
    backbone to the others' finished results makes (:meth:`Battle.added_jobs`)."""
    if backbone is not None and backbone not in {c[1] for c in cells} | {d[1] for d in detectors}:
        planned = sorted({c[1] for c in cells} | {d[1] for d in detectors})
        raise SystemExit(f"--backbone {backbone}: no cell of this config has it (its backbones: {', '.join(planned)})")
    chosen = battle.jobs(cells, detectors) if backbone is None else battle.added_jobs(cells, detectors, backbone)
    jobs = [(j, battle.cost(j.rule, j.values)) for j in chosen]
    return Plan(
        jobs=jobs,
        datasets_gb=sum(c.disk_gb for j, c in jobs if j.rule in DATASET_RULES),
        cache_gb=sum(c.disk_gb for j, c in jobs if j.rule == "prepare_input_cache"),
        features_gb=sum(c.disk_gb for j, c in jobs if j.rule.startswith("extract_")),
        models_gb=sum(c.disk_gb for j, c in jobs if j.rule in ("finetune", "frozen_probe", "train_detector")),
        backbone=backbone,
    )


#: The rules that download and unpack datasets (their disk is the datasets').
DATASET_RULES = ("prepare_dataset", "prepare_detection_dataset", "prepare_retrieval_dataset")


def _hours(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def render(plan: Plan, battle: Battle, sources: Sequence[str]) -> str:
    """The plan as markdown."""
    model = battle.model
    gpu = model.constants["gpu"]
    used = sorted({j.values["backbone"] for j, _ in plan.jobs if "backbone" in j.values})
    estimated = [b for b in used if model.row(b).status != "measured"]
    title = f"# Plan of {' + '.join(sources) or 'the demo battle (config/config.yaml)'}"
    lines = [title if plan.backbone is None else f"{title}: {plan.backbone} added to the others' results", ""]
    if plan.backbone is not None:
        lines += [
            f"The jobs {plan.backbone} adds once every other backbone's results are in the results folder: its "
            "own cells, and any preparation no other backbone needed. Snakemake runs only these, then the "
            "aggregates (collect_results, rank, tables, figures, report: minutes of CPU, not costed here).",
            "",
        ]
    lines += [
        f"{len(plan.jobs):,} jobs; **{_hours(plan.total_gpu_hours)} GPU-hours** ({gpu}), "
        f"**{_hours(plan.total_cpu_hours)} CPU core-hours** of input decoding; disk "
        f"**{plan.disk_gb:,.0f} GB**. Throughput of "
        f"{len(used) - len(estimated)} of the {len(used)} backbones measured, {len(estimated)} estimated from FLOPs "
        "(config/throughput.csv); the assumptions are in config/cost.yaml.",
        "",
        "| task | jobs | GPU-hours | decoding CPU-hours | longest job asks (h) |",
        "|---|---:|---:|---:|---:|",
    ]
    by_task: dict[str, list[JobCost]] = defaultdict(list)
    for j, cost in plan.jobs:
        if cost.gpu or j.rule == "prepare_input_cache":  # GPU jobs, and the input cache's decoding
            by_task[j.task()].append(cost)
    for task, costs in sorted(by_task.items(), key=lambda kv: (-sum(c.gpu_s for c in kv[1]), -sum(c.cpu_s for c in kv[1]))):
        lines.append(
            f"| {task} | {len(costs):,} | {_hours(sum(c.gpu_s for c in costs) / 3600)} | "
            f"{_hours(sum(c.cpu_s for c in costs) / 3600)} | {max(c.runtime_min for c in costs) / 60:,.1f} |"
        )
    lines.append(
        f"| **total** | {sum(map(len, by_task.values())):,} | **{_hours(plan.total_gpu_hours)}** | "
        f"{_hours(plan.total_cpu_hours)} | |"
    )
    lines += ["", "| backbone | throughput | GPU-hours | share |", "|---|---|---:|---:|"]
    per_backbone = plan.gpu_hours(lambda j: j.values.get("backbone", ""))
    for backbone, hours in sorted(per_backbone.items(), key=lambda kv: -kv[1]):
        share = hours / plan.total_gpu_hours if plan.total_gpu_hours else 0.0
        lines.append(f"| {backbone} | {model.row(backbone).status} | {_hours(hours)} | {share:.1%} |")
    lines += [
        "",
        "| disk | GB |",
        "|---|---:|",
        f"| datasets (raw archives and unpacked files) | {plan.datasets_gb:,.1f} |",
        f"| input cache (train splits decoded once: prepare_input_cache) | {plan.cache_gb:,.1f} |",
        f"| feature cache | {plan.features_gb:,.1f} |",
        f"| models and checkpoints | {plan.models_gb:,.1f} |",
        "",
        "| job class | jobs | peak host memory (GB) | cores | longest runtime asked (h) | its largest job |",
        "|---|---:|---:|---:|---:|---|",
    ]
    by_rule: dict[str, list[tuple[Job, JobCost]]] = defaultdict(list)
    for j, cost in plan.jobs:
        by_rule[j.rule].append((j, cost))
    for rule, items in by_rule.items():
        biggest = max(items, key=lambda item: item[1].mem_mb)
        label = "/".join(
            biggest[0].values[k] for k in ("detection_task", "backbone", "dataset", "setting") if k in biggest[0].values
        )
        lines.append(
            f"| {rule} | {len(items):,} | {biggest[1].mem_mb / 1000:,.1f} | {max(c.cpus for _, c in items)} | "
            f"{max(c.runtime_min for _, c in items) / 60:,.1f} | {label} |"
        )
    gpu_jobs = [(j, c) for j, c in plan.jobs if c.gpu]
    if plan.backbone is not None and gpu_jobs:
        j, longest = max(gpu_jobs, key=lambda item: item[1].gpu_s)
        walls = ", ".join(f"{k} GPU{'s' if k > 1 else ''} {_hours(wall_hours(plan, k))} h" for k in (1, 8, 32))
        lines += [
            "",
            f"Time to {plan.backbone}'s rank, at least (GPU-hours / GPUs, or its longest job, one GPU each: "
            f"{j.rule} {'/'.join(j.values.values())}, {_hours(longest.gpu_s / 3600)} h): {walls}.",
        ]
    probes = [(j, c) for j, c in plan.jobs if j.rule == "linear_probe"]
    if probes:
        j, c = max(probes, key=lambda item: item[1].device_mb)
        streamed = sum(c.streamed for _, c in probes)
        lines += [
            "",
            f"linear_probe's peak GPU memory (its law, `device_bytes_needed`): at most {c.device_mb / 1000:,.1f} GB "
            f"({'/'.join(j.values.values())}); {streamed} of {len(probes)} probes stream their features from "
            f"host memory (those over 90% of the GPU's {model.constants['gpu_memory_gb']} GB).",
        ]
    long = [(j, c) for j, c in plan.jobs if c.runtime_min > LONG_JOB_H * 60]
    if long:
        j, c = max(long, key=lambda item: item[1].runtime_min)
        lines += [
            "",
            f"{len(long):,} jobs ask for more than {LONG_JOB_H} h on one GPU (the longest, {j.rule} "
            f"{'/'.join(j.values.values())}, {c.runtime_min / 60:,.0f} h): past a partition's time limit, "
            "fine-tuning and detectors resume from their epoch checkpoints when rerun.",
        ]
    return "\n".join(lines) + "\n"


def wall_hours(plan: Plan, gpus: int) -> float:
    """A lower bound on the plan's wall time on ``gpus`` GPUs: its GPU-hours shared out evenly, but never
    less than its longest job (every job holds one GPU)."""
    longest = max((c.gpu_s for _, c in plan.jobs if c.gpu), default=0.0) / 3600
    return max(plan.total_gpu_hours / gpus, longest)


#: Jobs longer than this (hours) are listed under the plan: a common partition time limit.
LONG_JOB_H = 48


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bobench.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", nargs="+", default=[], help="the run's config files, in order (as snakemake's)")
    parser.add_argument("--jobs", action="store_true", help="also list every job with what it asks for")
    parser.add_argument(
        "--backbone",
        metavar="ID",
        help="only the jobs this backbone adds once the others' results are there (the time to a new backbone's rank)",
    )
    args = parser.parse_args(argv)
    battle, cells, detectors = load_battle(args.configfile)
    plan = make_plan(battle, cells, detectors, args.backbone)
    out = render(plan, battle, [str(f) for f in args.configfile])
    if args.jobs:
        out += "\n| rule | wildcards | GPU-hours | mem_mb | cores | runtime (min) |\n|---|---|---:|---:|---:|---:|\n"
        out += "".join(
            f"| {j.rule} | {' '.join(j.values.values())} | {c.gpu_s / 3600:.3f} | {c.mem_mb} | {c.cpus} | {c.runtime_min} |\n"
            for j, c in plan.jobs
        )
    sys.stdout.write(out)


if __name__ == "__main__":
    main()

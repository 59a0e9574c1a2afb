# Helpers shared by every stage: config checks, registries, paths, code dependencies.

import os
import sys
from pathlib import Path

sys.path.insert(
    0, workflow.basedir
)  # import bobench from the checkout even when not installed

from bobench import config as bobench_config
from bobench.datasets import prepared_filenames, raw_folders_shared_with
from bobench.datasets.input_cache import cache_filenames
from bobench.datasets.entries import is_retrieval_benchmark
from bobench.imports import closure_files, entry_point_files
from bobench.names import FIGURE_NAMES, REPORT_TABLES
from bobench.plan import (
    Battle,
    finetune_recipe,
    planned_cells,
)
from bobench.retrieval.splits import prepared_split_files
from bobench.workflow import job_threads as workflow_job_threads
from bobench.rehearsal.caps import apply_caps
from bobench.rehearsal.standins import (
    needs_standin_data,
    needs_standin_weights,
    standin_weights_dir,
    with_standin_weights,
)

# Structure and types first (fills defaults), then ids against the registries.
bobench_config.check_configfile_options(sys.argv)
# The files this run's config came from (the demo's only when no --configfile was given).
CONFIG_FILES = [
    os.path.relpath(f) if Path(f).resolve().is_relative_to(Path.cwd()) else str(f)
    for f in workflow.configfiles
]
# Every check, before any job: a fault is one message naming the file (or --config), key, value and
# what was expected. --config values are typed here as in a file (Snakemake leaves nested ones text).
BACKBONES, DATASETS = bobench_config.check_run(
    config,
    CONFIG_FILES,
    getattr(workflow.config_settings, "config_args", None),
    workflow.basedir,
)
# A rehearsal (config/rehearsal.yaml) caps images, batches and steps, and points every backbone
# fetched from the network at a stand-in checkpoint that the workflow writes.
config.update(apply_caps(config))
REHEARSAL = config["rehearsal"]["enabled"]
REGISTRY_BACKBONES = BACKBONES  # as published: what stand-in checkpoints imitate

DATA = config["data_dir"]
RESULTS = config["results_dir"]
FIGURES = config["figures_dir"]
STANDINS = f"{DATA}/standin"  # a rehearsal's stand-in weights (its stand-in data sit in {DATA}/raw)
if REHEARSAL:
    BACKBONES = with_standin_weights(BACKBONES, f"{STANDINS}/weights")
LOGS = f"{RESULTS}/logs"  # per run, like its results: a rehearsal never overwrites a real run's logs
OOD_PLAN = bobench_config.ood_plan(config)  # source dataset → its OOD test sets
OOD_DATASETS = sorted(
    {s.dataset for sets in OOD_PLAN.values() for s in sets if s.dataset}
)
# Every cell and detector of the config, or a rehearsal's covering selection: the fewest jobs that still take
# every code path. The planner (python -m bobench.plan) takes its jobs from the same function.
CELLS, DETECTION_JOBS = planned_cells(config, DATASETS, BACKBONES)
# What each job costs and asks for (resources), from the cost model the planner prints (bobench/cost.py),
# and the input caches the training jobs read (BATTLE.input_caches, decided from the cells).
BATTLE = Battle(config, BACKBONES, DATASETS, cells=CELLS)
DETECTION_SETS = bobench_config.detection_sets(
    config
)  # OOD detection: training set → test sets
# Classification datasets that synthetic detection and retrieval sets are made from.
DETECTION_SOURCES = sorted(
    {
        DATASETS[d]["source"]["from_dataset"]
        for d in DATASETS
        if "from_dataset" in DATASETS[d]["source"]
    }
)
DETECTION_DATASETS = sorted(
    {d for _, _, d, _, _ in DETECTION_JOBS}
    | {
        d
        for _, _, source, _, _ in DETECTION_JOBS
        for d in DETECTION_SETS.get(source, [])
    }
)
RETRIEVAL_REFERENCE = str(
    bobench_config.resolve_path(
        config["registries"]["retrieval_reference"], workflow.basedir
    )
)


wildcard_constraints:
    backbone="|".join(config["backbones"]),
    dataset="|".join(
        [*config["datasets"], *OOD_DATASETS, *DETECTION_DATASETS, *DETECTION_SOURCES]
    ),
    detection_task="detection|ood_detection",
    weights_task="|".join(bobench_config.VARIANT_TASKS),
    setting="|".join(bobench_config.DETECTION_SETTINGS),
    short_side=r"\d+",


def code(script, task=None):
    """The library files a rule's script can import (bobench.imports), as the rule's inputs: editing
    one reruns exactly the rules that can run it (Snakemake itself watches only the script file).
    For a rule with a backbone wildcard, also the module the backbone's registry entry (its task's
    variant, for a detector or for ``task``'s jobs) names as its architecture's entry point.
    """
    files = closure_files(
        Path(workflow.basedir) / "workflow_scripts" / script, workflow.basedir
    )

    def with_entry_point(wc):
        backbone = getattr(wc, "backbone", None)
        if backbone is None:
            return files
        entry = task_backbone(
            backbone,
            getattr(wc, "detection_task", None)
            or getattr(wc, "weights_task", None)
            or task,
        )
        return sorted({*files, *entry_point_files(entry, workflow.basedir)})

    return with_entry_point


def job_threads(wildcards):
    """CPU threads of a job on a backbone: config job_threads (bobench.workflow.job_threads)."""
    entry = task_backbone(
        wildcards.backbone, getattr(wildcards, "detection_task", None)
    )
    return workflow_job_threads(config["job_threads"], entry, REHEARSAL)


def job_resources(rule):
    """A rule's ``mem_mb``, ``runtime`` (minutes) and cores per GPU (``cpus_per_gpu``, for a GPU rule) from
    its job's shape (bobench/cost.py: the model ``python -m bobench.plan`` prints). A retry (``--retries``)
    asks for twice the memory and time. Snakemake gates local jobs only on resources given with
    ``--resources``, so these never hold back a run that passes none."""

    def value(name):
        def of(wildcards, attempt):
            cost = BATTLE.cost(rule, dict(wildcards))
            return {
                "mem_mb": cost.mem_mb * attempt,
                "runtime": cost.runtime_min * attempt,
                "cpus_per_gpu": cost.cpus,
            }[name]

        return of

    names = ["mem_mb", "runtime"] + (["cpus_per_gpu"] if rule in GPU_RULES else [])
    return {name: value(name) for name in names}


# The rules whose jobs hold a GPU (resources: gpu=1).
GPU_RULES = (
    "extract_features",
    "extract_retrieval_features",
    "linear_probe",
    "knn",
    "retrieval",
    "finetune",
    "frozen_probe",
    "ood_classification",
    "train_detector",
)


def logfile(name):
    """A job's log (or benchmark record) under this run's results folder."""
    return f"{LOGS}/{name}"


def task_backbone(backbone, task=None):
    """The registry entry the jobs of ``task`` build (its task variant, if any: docs/protocol.md §2.2)."""
    return bobench_config.task_entry(BACKBONES[backbone], task)


def standin_weights(backbone, task=None):
    """In a rehearsal, the stand-in checkpoint a backbone loads in ``task``'s jobs (none for installed
    or random weights); a task variant's weights have their own (make_task_standin_weights)
    under the first task that loads them."""
    if REHEARSAL and needs_standin_weights(task_backbone(backbone, task)):
        weights_task = bobench_config.variant_weights_task(
            REGISTRY_BACKBONES[backbone], task
        )
        root = standin_weights_dir(f"{STANDINS}/weights", weights_task)
        return [f"{root}/{backbone}.json"]
    return []


def standin_data(dataset):
    """In a rehearsal, the manifest of a dataset's stand-in (none for data made here or installed)."""
    if REHEARSAL and needs_standin_data(DATASETS[dataset]):
        return [f"{DATA}/raw/{dataset}/STANDIN.json"]
    return []


def prepared(dataset):
    return [f"{DATA}/prepared/{dataset}/{name}" for name in prepared_filenames()]


def input_cache_files(dataset, short_side):
    return [
        f"{DATA}/input_cache/{dataset}/short{short_side}/{name}"
        for name in cache_filenames()
    ]


def training_input_cache(task, backbone, dataset):
    """The input cache a training job reads (config input_cache; none when off, or for a job that reads its
    image files): the dataset's shared cache, or one of a larger short side (bobench.plan.InputCaches, from
    which the planner costs the prepare_input_cache jobs)."""
    short_side = BATTLE.input_caches.short_side(task, backbone, dataset)
    return [] if short_side is None else input_cache_files(dataset, short_side)


def cell_record(task, backbone, dataset):
    return f"{RESULTS}/cells/{task}/{backbone}/{dataset}.json"


def detection_record(task, backbone, dataset, setting, lr):
    return f"{RESULTS}/cells/{task}/{backbone}/{dataset}/{setting}_lr{lr}.json"


def all_cell_records():
    """Every record file: one per cell, one per detector (backbone × setting × lr) for detection tasks."""
    return [
        cell_record(*cell)
        for cell in CELLS
        if cell[0] not in ("detection", "ood_detection")
    ] + [detection_record(*job) for job in DETECTION_JOBS]


def retrieval_split(dataset):
    return [f"{DATA}/retrieval/{dataset}/{name}" for name in prepared_split_files()]


def retrieval_inputs(wildcards):
    """A retrieval benchmark's split and features, or a classification dataset's cached features
    (extracted with the entry's own weights: a backbone with a retrieval variant cannot use them).
    """
    if is_retrieval_benchmark(DATASETS[wildcards.dataset]):
        return {
            "split": retrieval_split(wildcards.dataset),
            "features": f"{RESULTS}/retrieval_features/{wildcards.backbone}/{wildcards.dataset}.npz",
            "info": f"{RESULTS}/retrieval_features/{wildcards.backbone}/{wildcards.dataset}.json",
        }
    if "retrieval" in (BACKBONES[wildcards.backbone].get("task_variants") or {}):
        raise ValueError(
            f"backbone {wildcards.backbone!r} has a retrieval task variant (other weights), but class-folder "
            f"retrieval on {wildcards.dataset!r} reuses the features cached with its own weights: leave "
            f"{wildcards.dataset!r} out of task_datasets.retrieval or the backbone out of task_backbones.retrieval"
        )
    return {
        "features": f"{RESULTS}/features/{wildcards.backbone}/{wildcards.dataset}.npz",
        "info": f"{RESULTS}/features/{wildcards.backbone}/{wildcards.dataset}.json",
    }


def retrieval_transform_params(backbone):
    from bobench.retrieval.transform import transform_params

    return transform_params(task_backbone(backbone, "retrieval"), config["retrieval"])


def detection_manifest(dataset):
    return f"{DATA}/detection/{dataset}/manifest.json"


def options(section):
    return bobench_config.canonical(config[section])


def finetune_options(backbone, dataset):
    """The fine-tuning recipe with this backbone's overrides, then this dataset's (bobench.plan)."""
    return finetune_recipe(config, backbone, dataset)


def ood_registry_datasets(source):
    """Registry datasets among the OOD sets of classifiers trained on ``source``."""
    return [s.dataset for s in OOD_PLAN.get(source, []) if s.kind == "dataset"]


def dataset_display():
    """Name and domain of every dataset a results row can name, OOD sets included."""
    from bobench.ood import describe_sets

    shown = {
        d: {
            "name": DATASETS[d]["name"],
            "domain": DATASETS[d]["domain"],
            "standin": bool(standin_data(d)),
        }
        for d in [*config["datasets"], *OOD_DATASETS, *DETECTION_DATASETS]
    }
    for sets in OOD_PLAN.values():
        shown.update(describe_sets(sets, shown))
    return shown


def reference_table(description):
    """The table file a reference description (YAML) names."""
    import yaml

    return str(
        Path(description).parent
        / yaml.safe_load(Path(description).read_text())["table"]
    )


def published_methods():
    """Pretraining method of each backbone of the published table, by BoB's name (from the registry)."""
    import yaml

    mapping = yaml.safe_load(Path(RETRIEVAL_REFERENCE).read_text())["backbones"]
    return {
        bob: BACKBONES[ours]["method"]
        for bob, ours in mapping.items()
        if ours in BACKBONES  # a custom registry may lack them: the label stays black
    }


def compares_with_published():
    """Whether the run has retrieval results on a dataset of the published reference table."""
    import yaml

    if "retrieval" not in config["tasks"]:
        return False
    reference = yaml.safe_load(Path(RETRIEVAL_REFERENCE).read_text())
    return any(
        task == "retrieval" and dataset in reference["datasets"].values()
        for task, _, dataset in CELLS
    )


def final_targets():
    comparison = (
        [
            f"{RESULTS}/tables/retrieval_vs_published.md",
            *expand(f"{FIGURES}/retrieval_vs_published.{{ext}}", ext=["png", "pdf"]),
        ]
        if compares_with_published()
        else []
    )
    published = expand(f"{FIGURES}/published_retrieval_mrr.{{ext}}", ext=["png", "pdf"])
    return (
        comparison
        + published
        + [
            f"{RESULTS}/config.resolved.yaml",
            f"{RESULTS}/results.csv",
            f"{RESULTS}/results.parquet",
            f"{RESULTS}/ranking/ranking.md",
            f"{RESULTS}/tables/table1.md",
            *expand(f"{RESULTS}/report/{{name}}.html", name=REPORT_TABLES),
            *expand(
                f"{FIGURES}/{{name}}.{{ext}}", name=FIGURE_NAMES, ext=["png", "pdf"]
            ),
        ]
    )

# Helpers shared by every stage: config checks, registries, paths, code dependencies.

import os
import sys
from pathlib import Path

sys.path.insert(
    0, workflow.basedir
)  # import bobench from the checkout even when not installed

from bobench import config as bobench_config
from bobench.datasets import prepared_filenames

SCHEMAS = Path(workflow.basedir) / "config" / "schemas"

# Structure and types first (fills defaults), then ids against the registries.
bobench_config.validate_against_schema(config, SCHEMAS / "config.schema.yaml", "config")
BACKBONES = bobench_config.load_registry(
    bobench_config.resolve_path(config["registries"]["backbones"], workflow.basedir),
    SCHEMAS / "backbones.schema.yaml",
    "backbone registry",
)
DATASETS = bobench_config.load_registry(
    bobench_config.resolve_path(config["registries"]["datasets"], workflow.basedir),
    SCHEMAS / "datasets.schema.yaml",
    "dataset registry",
)
bobench_config.check_config(config, BACKBONES, DATASETS)

DATA = config["data_dir"]
RESULTS = config["results_dir"]
FIGURES = config["figures_dir"]
CELLS = list(bobench_config.cells(config, DATASETS))
OOD_PLAN = bobench_config.ood_plan(config)  # source dataset → its OOD test sets
OOD_DATASETS = sorted(
    {s.dataset for sets in OOD_PLAN.values() for s in sets if s.dataset}
)
FIGURE_NAMES = ["overall_ranking", "zscore_heatmap", "task_scatter", "zscore_vs_params"]


wildcard_constraints:
    backbone="|".join(config["backbones"]),
    dataset="|".join([*config["datasets"], *OOD_DATASETS]),


def code(*modules):
    """Library files a rule depends on, so that editing them reruns the rule
    (Snakemake only watches the script file itself)."""
    files = []
    for module in ("io", "provenance", "workflow", *modules):
        path = Path(workflow.basedir) / "bobench" / module
        if path.is_dir():
            files += sorted(str(p) for p in path.glob("*.py"))
        else:
            files.append(str(path.with_suffix(".py")))
    return files


def prepared(dataset):
    return [f"{DATA}/prepared/{dataset}/{name}" for name in prepared_filenames()]


def cell_record(task, backbone, dataset):
    return f"{RESULTS}/cells/{task}/{backbone}/{dataset}.json"


def all_cell_records():
    return [cell_record(*cell) for cell in CELLS]


def options(section):
    return bobench_config.canonical(config[section])


def finetune_options(backbone, dataset):
    """The fine-tuning recipe with this backbone's overrides (BoB's per-model batch, epochs, lr),
    then this dataset's recipe (low-data ImageNet, CheXpert)."""
    section = config["finetune"]
    recipe = {
        k: v for k, v in section.items() if k not in ("overrides", "dataset_overrides")
    }
    return bobench_config.canonical(
        {
            **recipe,
            **section.get("overrides", {}).get(backbone, {}),
            **section.get("dataset_overrides", {}).get(dataset, {}),
        }
    )


def ood_registry_datasets(source):
    """Registry datasets among the OOD sets of classifiers trained on ``source``."""
    return [s.dataset for s in OOD_PLAN.get(source, []) if s.kind == "dataset"]


def dataset_display():
    """Name and domain of every dataset a results row can name, OOD sets included."""
    from bobench.ood import describe_sets

    shown = {
        d: {"name": DATASETS[d]["name"], "domain": DATASETS[d]["domain"]}
        for d in [*config["datasets"], *OOD_DATASETS]
    }
    for sets in OOD_PLAN.values():
        shown.update(describe_sets(sets, shown))
    return shown


def final_targets():
    return [
        f"{RESULTS}/results.csv",
        f"{RESULTS}/results.parquet",
        f"{RESULTS}/ranking/ranking.md",
        f"{RESULTS}/tables/table1.md",
        *expand(f"{FIGURES}/{{name}}.{{ext}}", name=FIGURE_NAMES, ext=["png", "pdf"]),
    ]

"""Test helper: the test battle cut to seconds a job, for runs that check where jobs ran, not what they
compute (the SLURM test, a run inside a GPU allocation)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def small_battle_config(tasks: tuple[str, ...] = ("linear_probe", "knn")) -> dict:
    """config/test.yaml with two backbones (one pretrained, one random-init) on 300 digits at 32 px."""
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config.update(
        backbones=["effnet_lite0_in1k", "random_effnet_lite0"],
        datasets=["digits"],
        tasks=list(tasks),
        dataset_splits={"digits": {"train": 150, "val": 50, "test": 100}},
        task_datasets={"knn": ["digits"]},
    )
    config["extraction"]["image_size"] = 32
    config.pop("task_backbones")
    return config


def write_config(directory: Path, config: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    return directory


def snakemake(directory: Path, *args: str) -> list[str]:
    """The command that runs the workflow in ``directory`` on its config.yaml. ``args`` come first, since
    targets after a many-valued option (--configfile, --resources) would be read as its values."""
    return [sys.executable, "-m", "snakemake", *args, "-s", str(ROOT / "Snakefile"), "--directory", str(directory),
            "--configfile", str(directory / "config.yaml")]  # fmt: skip

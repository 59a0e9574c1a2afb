"""Shared fixtures (the repository root, registries) and how the suite is spread over cores.

``pytest`` runs on every core (pytest-xdist, ``-n auto --dist loadfile`` in pyproject.toml). Each test
module stays on one worker, so that its module fixtures (a whole battle, for some) are built once. Modules
that run whole battles start first (longest first), so that the many short modules fill the other core
beside them instead of leaving one battle to run alone at the end. (The few tests that run the workflow for
real in the repository root may then overlap: Snakemake's locks are per file, and their files are disjoint.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

#: Modules whose fixtures run battles, longest first (measured with ``pytest --durations``); the rest follow
#: in collection order.
LONGEST_FIRST = ["test_workflow", "test_crashes", "test_slurm", "test_byo", "test_bad_inputs", "test_zoo", "test_figures"]


def pytest_collection_modifyitems(config, items):
    start = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: start.get(item.module.__name__, len(start)))  # stable: the rest keep their order


@pytest.fixture(scope="session", autouse=True)
def one_thread_per_worker():
    """Under xdist every core runs a worker: in-process torch work takes one thread, not every core."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def backbone_registry() -> dict:
    return yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())


@pytest.fixture(scope="session")
def dataset_registry() -> dict:
    return yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())

"""Shared fixtures: the repository root, registries, and a thread cap for speed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def backbone_registry() -> dict:
    return yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())


@pytest.fixture(scope="session")
def dataset_registry() -> dict:
    return yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())

"""The scripts in workflow_scripts/ are thin: they read ``snakemake.*``, call the library (bobench.jobs for the
jobs that compute), and write the outputs. Their logic is the library's, tested without a workflow run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "workflow_scripts").glob("*.py"))
MAX_LINES = 25  # every line of the file, docstring and blank lines included


def test_there_are_scripts():
    assert len(SCRIPTS) > 10


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.stem)
def test_a_script_has_at_most_25_lines(script):
    lines = script.read_text().splitlines()
    assert len(lines) <= MAX_LINES, f"{script.name}: {len(lines)} lines; move its logic into bobench.jobs"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.stem)
def test_a_script_imports_nothing_but_bobench(script):
    """Everything else (paths, arrays, tables, torch) is the library's business; ``snakemake`` is injected."""
    for node in ast.walk(ast.parse(script.read_text())):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            assert name == "bobench" or name.startswith("bobench."), f"{script.name} imports {name}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.stem)
def test_a_script_decides_no_primary_metric_and_hashes_nothing(script):
    text = script.read_text()
    for choice in ("primary=", "canonical_hash", "fingerprint", "dataclasses"):
        assert choice not in text, f"{script.name} uses {choice}: the library decides it"


def test_the_job_package_imports_none_of_its_modules():
    """A script's closure (its rule's library inputs) holds the job module it calls, not its siblings."""
    tree = ast.parse((ROOT / "bobench" / "jobs" / "__init__.py").read_text())
    assert not [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_an_edit_of_scoring_code_reruns_no_feature_extraction():
    from bobench.imports import script_closure

    closure = script_closure(ROOT / "workflow_scripts" / "extract_features.py", ROOT)
    scoring = [m for m in closure if m.startswith(("bobench.cells", "bobench.config", "bobench.tasks", "bobench.retrieval"))]
    assert not scoring, f"extract_features can import {scoring}"

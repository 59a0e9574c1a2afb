"""The workflow stays lint-clean (`snakemake --lint`, ruff on the Python) and snakefmt-formatted."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_snakemake_lint_is_clean():
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "-s", str(ROOT / "Snakefile"), "--directory", str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_snakefmt_leaves_rules_unchanged():
    snakefmt = shutil.which("snakefmt", path=str(Path(sys.executable).parent))
    if snakefmt is None:
        pytest.skip("snakefmt is not installed (pip install -e '.[test]')")
    run = subprocess.run([snakefmt, "--check", "Snakefile", "rules"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_ruff_is_clean():
    """Unused or undefined names, import order, likely bugs (pyproject.toml's [tool.ruff])."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is a test dependency: pip install -e '.[test]'"
    run = subprocess.run([ruff, "check", "bobench", "workflow_scripts", "tests", "benchmarks"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_no_test_module_imports_another():
    """Shared helpers live in conftest.py or in helper modules (archives, synthetic_results, …), never in a
    test module, so that each test file can be read and run alone."""
    import ast

    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(name.split(".")[0].startswith("test_") for name in names), path.name


def test_code_cites_the_protocol_page_of_this_repository():
    """Comments cite docs/protocol.md (or the paper), never a document outside the repository, and every
    section they cite exists on the page."""
    import re

    page = (ROOT / "docs" / "protocol.md").read_text()
    sections = set(re.findall(r"^##+ §([\d.]+)", page, re.M))
    for folder in ("bobench", "rules", "workflow_scripts", "config", "tests"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".smk", ".yaml") or path.name == "test_workflow_style.py":
                continue
            text = path.read_text()
            assert not re.search(r"digest\s*§", text), f"{path}: cites a document outside the repository"
            for cited in re.findall(r"docs/protocol\.md §([\d.]*\d)", text):
                assert cited in sections, f"{path}: docs/protocol.md has no §{cited}"

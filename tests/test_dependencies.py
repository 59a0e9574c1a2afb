"""Each rule's library inputs are its script's import closure (bobench.imports), nothing more or less.

The closure is checked against the standard library's own import scanner (``modulefinder``), and the inputs
that every job of the test battle, the rehearsal's CI slice and the bring-your-own path declare are checked
against the closure of the rule's script. Which jobs an edit reruns is tested on a finished battle in
``test_workflow.py``.
"""

from __future__ import annotations

import ast
import modulefinder
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bobench.imports import closure_files, entry_point_files, rule_scripts, rules_importing, script_closure

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "workflow_scripts").glob("*.py"))
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def dry_run_jobs(*configfiles: str) -> list[dict]:
    """Every job of a ``--forceall`` dry run from the repository root: rule, inputs and wildcards."""
    run = subprocess.run([*SNAKEMAKE, "-n", "--forceall", "--cores", "2", "--configfile", *configfiles],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", run.stdout):
        rule = re.match(r"(?:local)?rule (\w+):", block.strip())
        if rule:
            inputs = re.search(r"^\s+input: (.*)$", block, re.M)
            backbone = re.search(r"backbone=(\w+)", block)
            jobs.append({"rule": rule.group(1), "inputs": inputs.group(1).split(", ") if inputs else [],
                         "backbone": backbone.group(1) if backbone else None})
    return jobs


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.stem)
def test_closure_matches_the_standard_library_import_scanner(script):
    finder = modulefinder.ModuleFinder(path=[str(ROOT)])  # project modules only: the rest is not scanned
    finder.run_script(str(script))
    found = sorted(name for name in finder.modules if name == "bobench" or name.startswith("bobench."))
    assert script_closure(script, ROOT) == found


def test_closure_follows_function_level_and_relative_imports(tmp_path):
    package = tmp_path / "bobench"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "leaf.py").write_text("X = 1\n")
    (package / "sub" / "middle.py").write_text("def f():\n    from .leaf import X\n    return X\n")
    (package / "unused.py").write_text("import bobench.sub.leaf\n")
    script = tmp_path / "script.py"
    script.write_text("import torch\nfrom bobench.sub import middle\n")
    assert script_closure(script, tmp_path) == ["bobench", "bobench.sub", "bobench.sub.leaf", "bobench.sub.middle"]


def test_a_backbone_entry_point_adds_its_module():
    entry = {"architecture": {"library": "python", "entry_point": "bobench.backbones.stable_diffusion:stable_diffusion_encoder"}}
    files = entry_point_files(entry, ROOT)
    assert str(ROOT / "bobench" / "backbones" / "stable_diffusion.py") in files
    assert str(ROOT / "bobench" / "__init__.py") in files
    assert entry_point_files({"architecture": {"library": "timm", "name": "resnet50"}}, ROOT) == []
    assert entry_point_files({"architecture": {"entry_point": "my_models:net"}}, ROOT) == []  # not the project's


@pytest.mark.slow
def test_every_job_declares_exactly_its_scripts_import_closure(backbone_registry):
    """Every job of the test battle and of the rehearsal's CI slice (between them, every rule)."""
    scripts = rule_scripts(ROOT)
    library = str(ROOT / "bobench") + "/"
    seen = set()
    for configfiles in (["config/test.yaml"], ["config/paper.yaml", "config/rehearsal.yaml", "config/rehearsal_ci.yaml"]):
        for job in dry_run_jobs(*configfiles):
            declared = sorted(path for path in job["inputs"] if path.startswith(library))
            candidates = []
            for script in sorted(scripts.get(job["rule"], ())):
                expected = set(closure_files(ROOT / "workflow_scripts" / script, ROOT))
                if job["backbone"]:
                    expected |= set(entry_point_files(backbone_registry[job["backbone"]], ROOT))
                candidates.append(sorted(expected))
            assert declared in (candidates or [[]]), job["rule"]
            seen.add(job["rule"])
    assert seen >= set(scripts)


def test_a_rule_copied_with_use_rule_runs_its_parents_script():
    assert rule_scripts(ROOT)["frozen_probe"] == rule_scripts(ROOT)["finetune"] == {"finetune.py"}


def test_every_script_is_run_by_a_rule():
    assert sorted(set().union(*rule_scripts(ROOT).values())) == sorted(path.name for path in SCRIPTS)


def test_workflow_scripts_import_no_test_code():
    for script in SCRIPTS:
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("tests"), script.name


def test_the_command_names_the_rules_an_edit_reruns():
    assert rules_importing(ROOT / "bobench" / "tasks" / "knn.py", ROOT) == ["knn"]
    assert "train_detector" in rules_importing(ROOT / "bobench" / "detection" / "train.py", ROOT)
    run = subprocess.run([sys.executable, "-m", "bobench.imports", "bobench/tasks/knn.py"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "bobench/tasks/knn.py: knn", run.stderr

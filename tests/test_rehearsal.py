"""The rehearsal overlay: the paper's job list on stand-ins, its caps, its coverage, its isolation."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from bobench.rehearsal.caps import apply_caps, cap_splits
from bobench.rehearsal.coverage import greedy_cover
from bobench.rehearsal.manifest import StandinError, apply_manifest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
PAPER = "snakemake -n --cores 2 --configfile config/paper.yaml"
REHEARSAL = "snakemake -n --cores 2 --configfile config/paper.yaml config/rehearsal.yaml"
COVERING = "snakemake -n --cores 2 --configfile config/paper.yaml config/rehearsal.yaml config/rehearsal_covering.yaml"
SLICE = "snakemake -n --cores 2 --configfile config/paper.yaml config/rehearsal.yaml config/rehearsal_ci.yaml"
MAKERS = ("make_standin_data", "make_standin_weights", "make_task_standin_weights")


def dry_run_jobs(command: str) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """(rule, wildcards) of every job of the command's DAG (run from the repository root; ``--forceall`` so
    that what is already on disk does not matter)."""
    run = subprocess.run([SNAKEMAKE, "--forceall", *command.split()[1:]], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", run.stdout):
        match = re.match(r"(?:local)?rule (\w+):", block.strip())
        if match:
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, flags=re.MULTILINE)
            pairs = tuple(sorted(tuple(p.split("=", 1)) for p in wildcards.group(1).split(", "))) if wildcards else ()
            jobs.append((match.group(1), pairs))
    return jobs


@pytest.fixture(scope="module")
def paper_jobs():
    return dry_run_jobs(PAPER)


def test_full_rehearsal_plans_the_paper_jobs_plus_the_stand_in_makers(paper_jobs):
    rehearsal = dry_run_jobs(REHEARSAL)
    assert Counter(j for j in rehearsal if j[0] not in MAKERS) == Counter(paper_jobs)
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    registry = yaml.safe_load((ROOT / "config/backbones.yaml").read_text())
    weights = {dict(w)["backbone"] for rule, w in rehearsal if rule == "make_standin_weights"}
    assert weights == {b for b in paper["backbones"] if registry[b]["weights"]["source"] in ("timm", "url", "hf_hub")}
    # The detection weights of their own (BoB's DeiT, torchvision and FB ConvNeXt ones), one stand-in for both
    # detection tasks; retrieval's (the IN-21k→1k ConvNeXt-B) under retrieval.
    detectors = {*paper["task_backbones"]["detection"], *paper["task_backbones"]["ood_detection"]}
    task_weights = {(dict(w)["weights_task"], dict(w)["backbone"])
                    for rule, w in rehearsal if rule == "make_task_standin_weights"}
    assert task_weights == {("detection", b) for b in detectors
                            if "weights" in registry[b].get("task_variants", {}).get("detection", {})} | {
                               ("retrieval", b) for b in paper["backbones"]
                               if "weights" in registry[b].get("task_variants", {}).get("retrieval", {})}
    assert task_weights == {("detection", b) for b in ("sup_rn50_in1k", "sup_rn101_in1k", "sup_vit_s_in1k",
                                                       "sup_vit_b_in1k", "sup_cnxt_t_in1k", "sup_cnxt_b_in1k")} | {
                               ("retrieval", "sup_cnxt_b_in21k")}
    data = {dict(w)["dataset"] for rule, w in rehearsal if rule == "make_standin_data"}
    # Every paper dataset, OOD set and detection test set (the paper has no dataset made here or installed).
    assert set(paper["datasets"]) <= data and {"imagenet_a", "imagenet_r", "visda2017_real", "cityscapes_cars"} <= data


def test_covering_rehearsal_runs_every_backbone_and_dataset_of_every_task(paper_jobs):
    covering = [j for j in dry_run_jobs(COVERING) if j[0] not in MAKERS]
    assert set(covering) <= set(paper_jobs)
    assert len(covering) < len(paper_jobs) / 3
    for rule in ("extract_features", "linear_probe", "finetune", "frozen_probe", "ood_classification",
                 "extract_retrieval_features", "retrieval", "train_detector"):
        for key in ("backbone", "dataset", "setting", "lr", "detection_task"):
            wanted = {dict(w).get(key) for r, w in paper_jobs if r == rule}
            got = {dict(w).get(key) for r, w in covering if r == rule}
            assert wanted == got, (rule, key, wanted - got)
    # Dataset-specific overrides with every backbone they apply to: CheXpert's 256 px and multi-label policy,
    # ImageNet-A/R's class masks (the OOD jobs of the ImageNet classifiers).
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    for rule, dataset in (("finetune", "chexpert"), ("linear_probe", "chexpert"), ("ood_classification", "imagenet")):
        backbones = {dict(w)["backbone"] for r, w in covering if r == rule and dict(w)["dataset"] == dataset}
        task = {"ood_classification": "finetune"}.get(rule, rule)  # SSCD's descriptors are retrieval-only
        assert backbones == set(paper["task_backbones"][task]), (rule, dataset)
    # Every aggregate still runs, on the covering table.
    assert {"collect", "rank", "figures", "report_tables", "retrieval_reference"} <= {r for r, _ in covering}


def test_ci_slice_runs_every_dataset_and_task_and_each_backbone_where_its_code_differs(paper_jobs):
    """The CI slice (.ci/run): every paper task and dataset (detectors: every setting and lr); each of its
    backbones in the tasks that config/rehearsal_ci.yaml names; CheXpert's own resolution with every backbone."""
    ci = yaml.safe_load((ROOT / "config/rehearsal_ci.yaml").read_text())["rehearsal"]
    rules = {"linear_probe": ["extract_features", "linear_probe"], "finetune": ["finetune"], "frozen_probe": ["frozen_probe"],
             "ood": ["ood_classification"], "retrieval": ["extract_retrieval_features", "retrieval"],
             "detection": ["train_detector"], "ood_detection": ["train_detector"]}
    sliced = [j for j in dry_run_jobs(SLICE) if j[0] not in MAKERS]
    assert set(sliced) <= set(paper_jobs)
    for task, task_rules in rules.items():
        for rule in task_rules:
            def jobs(plan, rule=rule, task=task):
                return [dict(w) for r, w in plan if r == rule and (rule != "train_detector" or dict(w)["detection_task"] == task)]
            for key in ("dataset", "setting", "lr"):
                assert {w.get(key) for w in jobs(sliced)} == {w.get(key) for w in jobs(paper_jobs)}, (rule, key)
            backbones = {w["backbone"] for w in jobs(sliced)}
            if task in ci["every_backbone_tasks"]:
                assert backbones == {w["backbone"] for w in jobs(paper_jobs)} & set(ci["backbones"]), rule
            else:
                assert len(backbones) < len(ci["backbones"]), rule
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    fine_tuned = set(ci["backbones"]) & set(paper["task_backbones"]["finetune"])  # SSCD: retrieval only
    assert "sscd_rn50_im" in ci["backbones"] and "sscd_rn50_im" not in fine_tuned
    assert {dict(w)["backbone"] for r, w in sliced if r == "finetune" and dict(w)["dataset"] == "chexpert"} == fine_tuned
    assert {"collect", "rank", "figures", "report_tables", "retrieval_reference"} <= {r for r, _ in sliced}


def test_rehearsal_keeps_the_paper_settings_except_its_caps(tmp_path):
    target = "results/rehearsal/config.resolved.yaml"
    run = subprocess.run([SNAKEMAKE, target, *REHEARSAL.split()[2:]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    resolved = yaml.safe_load((ROOT / target).read_text())
    assert resolved["data_dir"] == "data/rehearsal" and resolved["results_dir"] == "results/rehearsal"
    assert resolved["figures_dir"].startswith("results/rehearsal")
    # The paper's protocol...
    assert resolved["finetune"]["epochs"] == 100 and resolved["finetune"]["image_size"] is None
    assert resolved["finetune"]["dataset_overrides"]["chexpert"]["image_size"] == 256
    assert resolved["detection"]["lrs"] == [8e-5, 1e-4, 2e-4, 3e-4] and resolved["detection"]["epochs"] == 36
    assert resolved["extraction"]["image_size"] is None and resolved["ranking"]["exclude_random_from_stats"] is True
    # ...with the caps, overrides included.
    assert resolved["finetune"]["batch_size"] == 2 and resolved["finetune"]["max_steps"] == 1
    assert resolved["finetune"]["overrides"]["sd_v14"]["micro_batch"] == 2
    assert resolved["finetune"]["dataset_overrides"]["imagenet_1pct"]["batch_size"] == 2
    assert resolved["frozen_probe"]["batch_size"] == 2
    # One image per detector step: two 1,333-px images of SwinV2-B exceed 24 GB on a CPU.
    assert resolved["detection"]["batch_size"] == 1 and resolved["detection"]["micro_batch"] == 1
    assert resolved["extraction"]["batch_size"] == 2
    assert resolved["linear_probe"]["max_iter"] == 20 and len(resolved["linear_probe"]["c_grid"]) > 1


def test_a_repeated_configfile_option_is_refused():
    """Snakemake keeps only the last --configfile: the overlay would silently be the whole config."""
    run = subprocess.run([SNAKEMAKE, "-n", "--cores", "1", "--configfile", "config/paper.yaml", "--configfile",
                          "config/rehearsal.yaml"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "--configfile is given 2 times" in run.stdout + run.stderr
    assert "--configfile config/paper.yaml config/rehearsal.yaml" in run.stdout + run.stderr


def test_caps_reach_every_recipe_and_leave_the_rest():
    config = {
        "backbones": ["a", "b"], "task_backbones": {"detection": ["a", "b"]},
        "rehearsal": {"enabled": True, "max_batch_size": 4, "max_detector_batch": 3, "max_steps": 3, "max_workers": 1,
                      "max_solver_iterations": 7, "backbones": ["b"]},
        "linear_probe": {"max_iter": 1000, "c_grid": [0.1, 1.0]},
        "extraction": {"batch_size": 256, "num_workers": 8},
        "finetune": {"batch_size": 1024, "micro_batch": 128, "eval_batch_size": 256, "lr": 1e-3, "num_workers": 8,
                     "overrides": {"a": {"micro_batch": 32}}, "dataset_overrides": {"x": {"batch_size": 512, "epochs": 60}}},
        "detection": {"batch_size": 16, "micro_batch": 2, "lrs": [1e-4, 2e-4]},
        "ood_detection": {"lrs": [1e-4]},
    }
    capped = apply_caps(config)
    assert capped["backbones"] == ["b"] and capped["task_backbones"] == {"detection": ["b"]}
    assert capped["extraction"] == {"batch_size": 4, "num_workers": 1}
    assert capped["finetune"]["batch_size"] == 4 and capped["finetune"]["micro_batch"] == 4 and capped["finetune"]["lr"] == 1e-3
    assert capped["finetune"]["overrides"]["a"] == {"micro_batch": 4}
    assert capped["finetune"]["dataset_overrides"]["x"] == {"batch_size": 4, "epochs": 60}
    assert capped["finetune"]["max_steps"] == 3 and capped["detection"]["max_steps"] == 3
    assert capped["detection"]["batch_size"] == 3 and capped["detection"]["micro_batch"] == 2
    assert capped["detection"]["lrs"] == [1e-4, 2e-4]
    assert capped["ood_detection"] == {"lrs": [1e-4]}  # inherits detection's caps
    assert capped["linear_probe"] == {"max_iter": 7, "c_grid": [0.1, 1.0]}
    assert config["finetune"]["batch_size"] == 1024  # the input is not modified
    assert apply_caps({**config, "rehearsal": {"enabled": False}}) == {**config, "rehearsal": {"enabled": False}}


def test_split_caps():
    assert cap_splits({"train": "all", "val": 10000, "test": None}, 8) == {"train": 8, "val": 8, "test": 8}
    assert cap_splits({"train": 0.6, "val": 3, "test": 0}, 8) == {"train": 8, "val": 3, "test": 0}
    assert cap_splits({"train": "all"}, None) == {"train": "all"}


def test_detection_datasets_take_their_own_cap():
    from bobench.config import dataset_entry

    datasets = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
    rehearsal = yaml.safe_load((ROOT / "config" / "rehearsal.yaml").read_text())["rehearsal"]
    config = {"rehearsal": rehearsal}
    assert dataset_entry(config, datasets, "coco2017")["splits"] == {"train": 1, "val": 0, "test": 1}
    assert dataset_entry(config, datasets, "cityscapes_cars")["splits"]["test"] == 1
    assert dataset_entry(config, datasets, "flowers102")["splits"]["test"] == rehearsal["max_images_per_split"] == 3
    without = {"rehearsal": {**rehearsal, "max_detection_images_per_split": None}}
    assert dataset_entry(without, datasets, "coco2017")["splits"]["test"] == 3


def test_greedy_cover_covers_every_value_with_few_items():
    items = [(b, d) for b in "abcd" for d in "xy"]
    chosen = greedy_cover(items, (0, 1))
    assert {b for b, _ in chosen} == set("abcd") and {d for _, d in chosen} == set("xy") and len(chosen) == 4
    assert greedy_cover(items, (0, 1), required=[("a", "x"), ("b", "x")])[:2] == [("a", "x"), ("b", "x")]


def test_a_stand_in_may_replace_only_checksums_and_expected_counts():
    entry = {"name": "d", "source": {"loader": "image_folder", "expect": {"train": 1000},
                                     "files": [{"name": "a.tar", "sha256": "aa", "md5": "bb", "extract": True}]}}
    manifest = {"source": {"expect": {"train": 8}, "files": [{"sha256": "cc", "md5": "dd"}]}}
    out = apply_manifest(entry, manifest)
    assert out["standin"] is True and out["source"]["expect"] == {"train": 8}
    assert out["source"]["files"] == [{"name": "a.tar", "sha256": "cc", "md5": "dd", "extract": True}]
    assert entry["source"]["files"][0]["sha256"] == "aa"
    for bad in ({"loader": "cifar100"}, {"files": [{"name": "b.tar"}]}, {"files": []}, {"how_to_get": "x"}):
        with pytest.raises(StandinError):
            apply_manifest(entry, {"source": bad})

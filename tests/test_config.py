"""Bad configs stop before any job runs, with one message naming key, value and choices."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bobench.config import ConfigError, check_config, load_registry, validate_against_schema

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "config" / "schemas"


def load_config(name: str = "config.yaml") -> dict:
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    validate_against_schema(config, SCHEMAS / "config.schema.yaml", "config")
    return config


@pytest.fixture(scope="module")
def registries():
    backbones = load_registry(ROOT / "config/backbones.yaml", SCHEMAS / "backbones.schema.yaml", "backbone registry")
    datasets = load_registry(ROOT / "config/datasets.yaml", SCHEMAS / "datasets.schema.yaml", "dataset registry")
    return backbones, datasets


@pytest.mark.parametrize("name", ["config.yaml", "test.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name, registries):
    check_config(load_config(name), *registries)


def test_schema_fills_defaults():
    config = {"backbones": ["a"], "datasets": ["b"], "tasks": ["knn"]}
    validate_against_schema(config, SCHEMAS / "config.schema.yaml", "config")
    assert config["knn"] == {"k": 20, "temperature": 0.07}
    assert config["ranking"]["aggregate"] == "task_mean"
    assert config["registries"]["backbones"] == "config/backbones.yaml"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["backbones"].append("resnet9000"), ["backbones[5]", "unknown backbone 'resnet9000'", "effnet_lite0_in1k"]),
        (lambda c: c["backbones"].append("effnet_lite0_in1"), ["did you mean 'effnet_lite0_in1k'"]),
        (lambda c: c["datasets"].append("imagenet_z"), ["datasets[5]", "unknown dataset 'imagenet_z'", "fashion_mnist"]),
        (lambda c: c["backbones"].append("effnet_lite1_in1k"), ["'backbones'", "more than once", "effnet_lite1_in1k"]),
        (lambda c: c.__setitem__("dataset_splits", {"cifar": {"train": 5}}), ["dataset_splits.cifar", "unknown dataset"]),
    ],
)
def test_unknown_ids_name_key_value_and_choices(mutate, expected, registries):
    config = load_config()
    mutate(config)
    with pytest.raises(ConfigError) as error:
        check_config(config, *registries)
    for text in expected:
        assert text in str(error.value)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["tasks"].append("segmentation"), ["tasks[7]", "'segmentation' is not one of", "'retrieval'"]),
        (lambda c: c["finetune"].__setitem__("overrides", {"effnet_lite0_in1k": {"lr_max": 1}}),
         ["finetune.overrides.effnet_lite0_in1k", "'lr_max' is not one of"]),
        (lambda c: c.__setitem__("task_datasets", {"finetune": []}), ["task_datasets.finetune", "should be non-empty"]),
        (lambda c: c["extraction"].__setitem__("batch_size", 0), ["extraction.batch_size", "0 is less than the minimum of 1"]),
        (lambda c: c["extraction"].__setitem__("precision", "fp8"), ["extraction.precision", "'fp8' is not one of", "'bf16'"]),
        (lambda c: c["knn"].__setitem__("k", "twenty"), ["knn.k", "'twenty' is not of type 'integer'"]),
        (lambda c: c["ranking"].__setitem__("aggregate", "median"), ["ranking.aggregate", "'median' is not one of", "task_mean"]),
        (lambda c: c.__setitem__("epochs", 3), ["'epochs' was unexpected"]),
        (lambda c: c["linear_probe"].__setitem__("c_grid", [1.0, -1.0]), ["linear_probe.c_grid[1]", "-1.0"]),
    ],
)
def test_malformed_values_name_key_and_value(mutate, expected):
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    mutate(config)
    with pytest.raises(ConfigError) as error:
        validate_against_schema(config, SCHEMAS / "config.schema.yaml", "config")
    message = str(error.value)
    assert "\n" not in message
    for text in expected:
        assert text in message


def test_malformed_registry_entry_names_it(tmp_path):
    registry = yaml.safe_load((ROOT / "config/backbones.yaml").read_text())
    registry["effnet_lite0_in1k"]["family"] = "MLP"
    path = tmp_path / "backbones.yaml"
    path.write_text(yaml.safe_dump(registry))
    with pytest.raises(ConfigError) as error:
        load_registry(path, SCHEMAS / "backbones.schema.yaml", "backbone registry")
    assert "effnet_lite0_in1k.family" in str(error.value)
    assert "'MLP' is not one of ['CNN', 'ViT', 'hierarchical ViT', 'UNet']" in str(error.value)


def test_unknown_converter_in_a_used_entry_is_caught(registries):
    backbones, datasets = copy.deepcopy(registries[0]), registries[1]
    backbones["effnet_lite0_in1k"]["weights"]["converter"] = "lukemelas_effnet"
    with pytest.raises(ConfigError) as error:
        check_config(load_config(), backbones, datasets)
    assert "effnet_lite0_in1k.weights.converter" in str(error.value)
    assert "did you mean 'lukemelas_efficientnet'" in str(error.value)


def test_entry_point_backbone_without_input_is_caught(registries):
    backbones, datasets = copy.deepcopy(registries[0]), registries[1]
    backbones["mine"] = {
        "name": "mine", "family": "CNN", "method": "none", "pretrain_data": "none", "pretrain_size": 0,
        "architecture": {"library": "python", "entry_point": "my.models:build"}, "weights": {"source": "builtin"},
        "input": {"size": 224},
    }
    config = load_config()
    config["backbones"], config["task_backbones"] = ["mine"], {}
    with pytest.raises(ConfigError, match="'mine.input' needs mean, std"):
        check_config(config, backbones, datasets)


def test_bad_split_override_is_caught(registries):
    config = load_config()
    config["dataset_splits"] = {"digits": {"train": 0.0}}
    with pytest.raises(ConfigError, match="digits"):
        check_config(config, *registries)


def test_snakemake_stops_before_any_job(tmp_path):
    """End to end: a bad config makes `snakemake -n` fail at parse time with the message."""
    config = yaml.safe_load((ROOT / "config/test.yaml").read_text())
    config["backbones"] = ["effnet_lite0_in1k", "convnext_huge"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(path), "--cores", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert "config key 'backbones[1]': unknown backbone 'convnext_huge'" in output
    assert "Building DAG" not in output
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


def test_paper_config_builds_its_dag(tmp_path):
    """`snakemake -n --configfile config/paper.yaml` plans the whole suite."""
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(ROOT / "config" / "paper.yaml"), "--cores", "16", "--resources", "gpu=4"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    registry = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())
    n_backbones, chosen = len(paper["backbones"]), paper["task_datasets"]
    ood_sets = {item["trained_on"] for item in paper["ood"]["sets"]}
    retrieval_sets = ["cub200", "inaturalist_val", "objectnet", "instre_s1", "gldv2_retrieval", "roxford5k", "rparis6k", "copydays"]
    expected = {
        # BoB's suite: every backbone fine-tuned on each classification dataset (low-data ImageNet, CheXpert and
        # VisDA included), probed on cached features, LARS-probed on ImageNet, and tested on the OOD sets.
        "prepare_dataset": len(set(paper["datasets"]) - {"coco2017", "sim10k", *retrieval_sets})
        + sum(len(item["datasets"]) for item in paper["ood"]["sets"]),
        "finetune": n_backbones * len(chosen["finetune"]),
        "linear_probe": n_backbones * len(chosen["linear_probe"]),
        "extract_features": n_backbones * len(chosen["linear_probe"]),
        "frozen_probe": n_backbones * len(chosen["frozen_probe"]),
        "ood_classification": n_backbones * len(ood_sets),
        # COCO, Sim10k and Cityscapes; every detector of BoB's sweep: pretrained backbones fine-tuned and
        # frozen, random-init ones fine-tuned, each at every lr (4 for COCO, 1e-4 for Sim10k → Cityscapes).
        "prepare_detection_dataset": 3,
        "train_detector": sum(
            (1 if registry[b]["weights"]["source"] == "random" else 2) * n_lrs
            for task, n_lrs in (("detection", 4), ("ood_detection", 1)) for b in paper["task_backbones"][task]
        ),
        # BoB's eight retrieval benchmarks (§7), each with its versioned split, for every backbone.
        "prepare_retrieval_dataset": 8,
        "extract_retrieval_features": n_backbones * 8,
        "retrieval": n_backbones * 8,
        "figures": 1,
    }
    assert set(retrieval_sets) <= set(paper["datasets"]) and "retrieval" not in paper.get("task_backbones", {})
    assert len(paper["task_backbones"]["detection"]) == 33 and len(paper["task_backbones"]["ood_detection"]) == 29
    assert set(paper["datasets"]) >= {"imagenet", "imagenet_1pct", "imagenet_10pct", "cifar100", "flowers102",
                                      "fgvc_aircraft", "eurosat", "chexpert", "visda2017_synthetic"}
    for rule, count in expected.items():
        assert re.search(rf"^{rule}\s+{count}$", run.stdout, re.MULTILINE), (rule, count)


def test_task_datasets_and_overrides_name_unknown_ids(registries):
    backbones, datasets = registries
    config = load_config()
    config["task_datasets"] = {"finetune": ["fashion_mnst"]}
    with pytest.raises(ConfigError, match=r"task_datasets.finetune\[0\].*did you mean 'fashion_mnist'"):
        check_config(config, backbones, datasets)
    config = load_config()
    config["finetune"]["overrides"] = {"effnet_lite9_in1k": {"lr": 1e-4}}
    with pytest.raises(ConfigError, match=r"finetune.overrides.effnet_lite9_in1k.*unknown backbone"):
        check_config(config, backbones, datasets)


def test_checking_the_config_does_not_import_torch():
    """The Snakefile checks the config at every invocation (dry runs included): no multi-second torch import."""
    code = (
        "import sys, bobench.config, bobench.datasets, bobench.ood;"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr


def test_ood_detection_sets_and_recipe_keys_are_checked(registries):
    backbones, datasets = registries
    good = load_config()
    assert good["task_backbones"]["detection"] == ["effnet_lite0_in1k", "random_effnet_lite0"]
    bad = copy.deepcopy(good)
    bad["ood_detection"]["sets"][0]["datasets"] = ["digits"]
    with pytest.raises(ConfigError, match=r"ood_detection.sets\[0\].datasets\[0\].*'digits' is not an OOD detection dataset"):
        check_config(bad, backbones, datasets)
    bad = copy.deepcopy(good)
    bad["ood_detection"]["epoch"] = 3
    with pytest.raises(ConfigError, match=r"ood_detection.epoch.*did you mean 'epochs'"):
        check_config(bad, backbones, datasets)
    bad = copy.deepcopy(good)
    bad["task_backbones"] = {"detection": ["sup_rn50_in1k"]}
    with pytest.raises(ConfigError, match=r"task_backbones.detection\[0\].*unknown backbone 'sup_rn50_in1k'"):
        check_config(bad, backbones, datasets)


def test_detection_registry_entries_are_checked_before_any_job(registries):
    backbones, datasets = copy.deepcopy(registries[0]), copy.deepcopy(registries[1])
    config = load_config()
    datasets["synthetic_objects"]["source"]["background"] = "meadow"
    with pytest.raises(ConfigError, match=r"synthetic_objects.*source.background = 'meadow' is not one of plain, texture"):
        check_config(config, backbones, datasets)
    datasets["synthetic_objects"]["source"]["background"] = "plain"
    del datasets["synthetic_objects_textured"]["source"]["canvas_size"]
    with pytest.raises(ConfigError, match=r"synthetic_objects_textured.*lacks canvas_size"):
        check_config(config, backbones, datasets)
    datasets["synthetic_objects_textured"]["source"]["canvas_size"] = 128
    datasets["synthetic_objects"]["source"]["from_dataset"] = "fashion_mnst"
    with pytest.raises(ConfigError, match=r"synthetic_objects.source.from_dataset.*did you mean 'fashion_mnist'"):
        check_config(config, backbones, datasets)
    datasets["synthetic_objects"]["splits"]["val"] = 10
    datasets["synthetic_objects"]["source"]["from_dataset"] = "fashion_mnist"
    with pytest.raises(ConfigError, match=r"splits.val = 10 must be 0"):
        check_config(config, backbones, datasets)


def test_results_table_must_be_an_existing_table_other_than_the_runs_own(tmp_path, registries, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config()
    for table, message in (("shared/results.txt", "'shared/results.txt' is not a .csv or .parquet results table"),
                           ("shared/results.csv", "no such file 'shared/results.csv'"),
                           ("results/results.csv", "'results/results.csv' is the table this workflow writes")):
        Path(table).parent.mkdir(exist_ok=True)
        if "no such" not in message:
            Path(table).write_text("backbone\n")
        config["results_table"] = table
        with pytest.raises(ConfigError, match=re.escape(f"config key 'results_table': {message}")):
            check_config(config, *registries)
    Path("shared/results.csv").write_text("backbone\n")
    config["results_table"] = "shared/results.csv"
    check_config(config, *registries)


def test_redraw_mode_plans_no_task_job(tmp_path):
    """With results_table set, the DAG holds the aggregates only, whatever the state of the task outputs."""
    table = tmp_path / "elsewhere" / "results.csv"
    table.parent.mkdir()
    table.write_text("backbone\n")
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(ROOT / "config/test.yaml"), "--config", f"results_table={table}", "--cores", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    planned = set(re.findall(r"^(?:local)?rule (\w+):", run.stdout, flags=re.MULTILINE))
    assert planned == {"collect", "rank", "figures", "report_tables", "backbone_tables", "published_figures", "all"}

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
# The columns of a results table that the ranking and figures read (bobench.ranking.REQUIRED_COLUMNS).
RESULTS_HEADER = "backbone,backbone_name,family,method,n_params,pretrain_size,task,dataset,protocol,metric,value,primary\n"


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


def test_job_threads_from_config_and_backbone(registries):
    """The test and demo battles run one thread per job (two side by side on --cores 2); BoB's config keeps
    auto: 2 threads, or 1 for a light backbone in a rehearsal."""
    from bobench.workflow import job_threads

    backbones, _ = registries
    light, large = backbones["sup_vit_s_in1k"], backbones["sup_vit_l_in21k"]
    assert [job_threads("auto", light, rehearsal) for rehearsal in (False, True)] == [2, 1]
    assert job_threads("auto", large, rehearsal=True) == 2
    assert job_threads(1, large, rehearsal=False) == 1
    assert load_config("test.yaml")["job_threads"] == load_config("config.yaml")["job_threads"] == 1
    assert load_config("paper.yaml")["job_threads"] == "auto"
    with pytest.raises(ConfigError, match="job_threads"):
        validate_against_schema({**load_config(), "job_threads": 0}, SCHEMAS / "config.schema.yaml", "config")


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
        (lambda c: c.__setitem__("epochs", 3), ["config key 'epochs': unknown key 'epochs'"]),
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
    assert "bad.yaml: key 'backbones[1]': unknown backbone 'convnext_huge'" in output  # relative to --directory
    assert "Building DAG" not in output
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


PAPER_COMMAND = "snakemake --cores 32 --resources gpu=4 mem_mb=480000 --configfile config/paper.yaml"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def run_from_root(command: str, *extra: str, targets: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """A README command exactly as a user types it in the repository root (targets go first:
    ``--configfile`` takes every word after it)."""
    words = command.split()
    assert words[0] == "snakemake"
    return subprocess.run([SNAKEMAKE, *targets, *words[1:], *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)


def schema_defaults() -> dict:
    config = {"backbones": ["a"], "datasets": ["b"], "tasks": ["knn"]}
    validate_against_schema(config, SCHEMAS / "config.schema.yaml", "config")
    return config


def leaves(tree: dict, prefix: tuple = ()):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def lookup(tree: dict, path: tuple):
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return KeyError
        tree = tree[key]
    return tree


@pytest.fixture(scope="module")
def paper_resolved():
    """The config the README's paper command gets, as the workflow itself writes it down."""
    assert PAPER_COMMAND in (ROOT / "README.md").read_text()
    target = ROOT / "results" / "paper" / "config.resolved.yaml"
    existed = target.is_file()
    run = run_from_root(PAPER_COMMAND, targets=(str(target.relative_to(ROOT)),))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    resolved = yaml.safe_load(target.read_text())
    if not existed:  # leave the checkout as it was
        target.unlink()
    return resolved


def test_paper_command_gets_the_paper_config_and_nothing_of_the_demo(paper_resolved):
    """Every key of the paper run is paper.yaml's or the schema's default (BoB's protocol); no value comes
    from the demo's config/config.yaml, which Snakemake used to merge under every --configfile."""
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    demo = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    defaults = schema_defaults()
    for path, value in leaves(paper):
        got = lookup(paper_resolved, path)
        if isinstance(value, list) and value and isinstance(value[0], dict):  # list items get their own defaults
            assert [{k: item[k] for k in mine} for item, mine in zip(got, value)] == value, path
        else:
            assert got == value, path
    checked = 0
    for path, demo_value in leaves(demo):
        if lookup(paper, path) is KeyError and path[0] not in ("backbones", "datasets", "tasks"):
            expected = lookup(defaults, path)
            assert lookup(paper_resolved, path) == (None if expected is KeyError else expected), path
            checked += expected != demo_value
    assert checked >= 10  # the demo's shrunk recipes really differ from BoB's
    # BoB's protocol, spelled out (docs/protocol.md §3.2, §4, §9).
    assert paper_resolved["finetune"]["epochs"] == 100 and paper_resolved["finetune"]["batch_size"] == 1024
    assert paper_resolved["finetune"]["image_size"] is None and paper_resolved["extraction"]["image_size"] is None
    assert paper_resolved["detection"]["epochs"] == 36 and paper_resolved["detection"]["steps"] == [27, 33]
    assert paper_resolved["detection"]["lrs"] == [8e-5, 1e-4, 2e-4, 3e-4]
    assert paper_resolved["detection"]["settings"] == ["finetune", "frozen"]
    assert paper_resolved["detection"]["augment_scale"] == 1.0
    assert paper_resolved["ranking"]["exclude_random_from_stats"] is True


def test_paper_command_plans_bobs_jobs():
    """The README's paper command, dry-run from the repository root, plans every job of BoB's suite; the
    counts are derived from config/paper.yaml and the registry."""
    run = run_from_root(PAPER_COMMAND, "-n", "--forceall")  # the whole DAG, whatever is on disk
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "config.yaml" not in run.stdout.replace("config.resolved.yaml", "")  # the demo's file is not read
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    registry = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())
    defaults = schema_defaults()
    n_backbones, chosen = len(paper["backbones"]), paper["task_datasets"]
    # Classification runs every backbone but SSCD's two retrieval descriptors (BoB's retrieval-only backbones).
    n_classifiers = {task: len(paper["task_backbones"][task]) for task in ("linear_probe", "finetune", "frozen_probe")}
    assert n_backbones == 51 and set(n_classifiers.values()) == {49}
    ood_sets = {item["trained_on"] for item in paper["ood"]["sets"]}
    retrieval_sets = ["cub200", "inaturalist_val", "objectnet", "instre_s1", "gldv2_retrieval", "roxford5k", "rparis6k", "copydays"]
    detection_lrs = {"detection": defaults["detection"]["lrs"], "ood_detection": paper["ood_detection"]["lrs"]}
    detection_settings = len(defaults["detection"]["settings"])
    expected = {
        # BoB's suite: every backbone fine-tuned on each classification dataset (low-data ImageNet, CheXpert and
        # VisDA included), probed on cached features, LARS-probed on ImageNet, and tested on the OOD sets.
        "prepare_dataset": len(set(paper["datasets"]) - {"coco2017", "sim10k", *retrieval_sets})
        + sum(len(item["datasets"]) for item in paper["ood"]["sets"]),
        "finetune": n_classifiers["finetune"] * len(chosen["finetune"]),
        "linear_probe": n_classifiers["linear_probe"] * len(chosen["linear_probe"]),
        "extract_features": n_classifiers["linear_probe"] * len(chosen["linear_probe"]),
        "frozen_probe": n_classifiers["frozen_probe"] * len(chosen["frozen_probe"]),
        "ood_classification": n_classifiers["finetune"] * len(ood_sets),
        # COCO, Sim10k and Cityscapes; every detector of BoB's sweep: pretrained backbones in every setting
        # (fine-tuned and frozen), random-init ones fine-tuned only, each at every lr of the task.
        "prepare_detection_dataset": 3,
        "train_detector": sum(
            (1 if registry[b]["weights"]["source"] == "random" else detection_settings) * len(detection_lrs[task])
            for task in ("detection", "ood_detection") for b in paper["task_backbones"][task]
        ),
        # BoB's eight retrieval benchmarks (§7), each with its versioned split, for every backbone.
        "prepare_retrieval_dataset": 8,
        "extract_retrieval_features": n_backbones * 8,
        "retrieval": n_backbones * 8,
        "figures": 1,
        "resolved_config": 1,
    }
    assert detection_settings == 2 and len(detection_lrs["detection"]) == 4 and detection_lrs["ood_detection"] == [1e-4]
    assert expected["train_detector"] == 282
    assert set(retrieval_sets) <= set(paper["datasets"]) and "retrieval" not in paper.get("task_backbones", {})
    assert len(paper["task_backbones"]["detection"]) == 33 and len(paper["task_backbones"]["ood_detection"]) == 29
    assert set(paper["datasets"]) >= {"imagenet", "imagenet_1pct", "imagenet_10pct", "cifar100", "flowers102",
                                      "fgvc_aircraft", "eurosat", "chexpert", "visda2017_synthetic"}
    for rule, count in expected.items():
        assert re.search(rf"^{rule}\s+{count}$", run.stdout, re.MULTILINE), (rule, count)


def test_a_user_config_missing_a_required_key_is_refused_by_name(tmp_path):
    """A user's --configfile is the whole run: a required key it leaves out is reported, never filled from the demo."""
    mine = tmp_path / "my_battle.yaml"
    mine.write_text("backbones: [effnet_lite0_in1k]\ndatasets: [digits]\n")
    run = run_from_root(f"snakemake -n --cores 2 --configfile {mine}")
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert f"config ({mine}): required key 'tasks' is missing" in output
    assert "nothing is taken from config/config.yaml" in output
    assert "Building DAG" not in output


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
            Path(table).write_text(RESULTS_HEADER)
        config["results_table"] = table
        with pytest.raises(ConfigError, match=re.escape(f"config key 'results_table': {message}")):
            check_config(config, *registries)
    Path("shared/results.csv").write_text("backbone,task\n")
    config["results_table"] = "shared/results.csv"
    with pytest.raises(ConfigError, match="'shared/results.csv' lacks the column.s. backbone_name, family"):
        check_config(config, *registries)  # columns are checked when the workflow is parsed, not when collect runs
    Path("shared/results.csv").write_text(RESULTS_HEADER)
    config["results_table"] = "shared/results.csv"
    check_config(config, *registries)


def test_redraw_mode_plans_no_task_job(tmp_path):
    """With results_table set, the DAG holds the aggregates only, whatever the state of the task outputs."""
    table = tmp_path / "elsewhere" / "results.csv"
    table.parent.mkdir()
    table.write_text(RESULTS_HEADER)
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(ROOT / "config/test.yaml"), "--config", f"results_table={table}", "--cores", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    planned = set(re.findall(r"^(?:local)?rule (\w+):", run.stdout, flags=re.MULTILINE))
    assert planned == {"collect", "rank", "figures", "report_tables", "backbone_tables", "published_figures", "resolved_config", "all"}

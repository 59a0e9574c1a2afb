"""The three policies the thin scripts rely on: config section → options (bobench.options), what a job's
fingerprint hashes (bobench.provenance.job_fingerprint), and which metric of a cell is primary
(bobench.cells)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml
from snakemake.utils import update_config

from bobench.cells import CellRecord, classification_metrics, detection_metrics, metric_entry, retrieval_metrics
from bobench.config import detection_recipe, validate_against_schema
from bobench.detection.train import DetectionOptions
from bobench.errors import ConfigError
from bobench.features import ExtractionOptions
from bobench.jobs.detection import SWEEP_KEYS, detector_recipe
from bobench.jobs.features import extraction_options
from bobench.jobs.finetune import finetune_recipe
from bobench.jobs.ranking import ranking_options
from bobench.jobs.retrieval import FEATURE_KEYS, RetrievalOptions, retrieval_options
from bobench.options import options_from_config, take
from bobench.provenance import job_fingerprint
from bobench.ranking import RankingOptions
from bobench.ranking_uncertainty import BootstrapOptions
from bobench.rehearsal.caps import apply_caps
from bobench.retrieval.metrics import RetrievalResult
from bobench.tasks.finetune import FROZEN_PROBE_RECIPE, FinetuneOptions
from bobench.tasks.knn import KnnOptions
from bobench.tasks.linear_probe import ProbeOptions

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schemas" / "config.schema.yaml"
BOOTSTRAP = {"n_boot": 50, "level": 0.9}


def schema_defaults() -> dict:
    config = {"backbones": ["a"], "datasets": ["b"], "tasks": ["knn"]}
    validate_against_schema(config, SCHEMA, "config")
    return config


# --------------------------------------------------------------------------- options


def test_an_unknown_key_is_an_error_naming_the_key_and_the_valid_ones():
    with pytest.raises(ConfigError) as error:
        options_from_config(KnnOptions, {"k": 5, "temprature": 0.1}, where="knn")
    message = str(error.value)
    assert "'knn.temprature'" in message
    assert "valid keys: k, temperature, chunk_size" in message


@pytest.mark.parametrize(("name", "convert"), [
    ("extraction", extraction_options),
    ("finetune", lambda section: finetune_recipe(section, "finetune")),
    ("detection", lambda section: detector_recipe(section, "detection", 1e-4)),
    ("retrieval", retrieval_options),
])
def test_a_section_is_converted_strictly_after_its_keys_are_taken_out(name, convert):
    section = {k: v for k, v in schema_defaults()[name].items() if k not in ("overrides", "dataset_overrides")}
    convert(section)
    with pytest.raises(ConfigError, match=f"'{name}.no_such_option': unknown key"):
        convert({**section, "no_such_option": 1})


def test_lists_become_tuples_and_float_tuples_hold_floats():
    options = options_from_config(ProbeOptions, {"c_grid": [1, 0.5], "max_iter": 10}, where="linear_probe")
    assert options.c_grid == (1.0, 0.5) and all(type(c) is float for c in options.c_grid)
    assert options.max_iter == 10 and options.dtype == ProbeOptions().dtype  # not a config key: its default
    detection, _ = detector_recipe({"settings": ["finetune"], "lrs": [1e-4], "bootstrap_resamples": 0, "steps": [2, 3]},
                                   "detection", "0.0002")
    assert detection.steps == (2, 3) and detection.lr == 2e-4


def test_fixed_options_cannot_be_configured():
    assert finetune_recipe({"image_size": None, "epochs": 3}, "frozen_probe")[0].optimizer == "lars"
    with pytest.raises(ConfigError, match="'frozen_probe.optimizer': fixed by the protocol"):
        finetune_recipe({"image_size": None, "optimizer": "adamw"}, "frozen_probe")
    with pytest.raises(ConfigError, match="'detection.lr': fixed by the protocol"):
        detector_recipe({"settings": [], "lrs": [], "bootstrap_resamples": 0, "lr": 1.0}, "detection", 1e-4)


def test_keys_taken_out_by_name_must_be_there():
    assert take({"image_size": 64, "k": 1}, ["image_size"], where="x") == ({"image_size": 64}, {"k": 1})
    with pytest.raises(ConfigError, match="section 'finetune' lacks key 'image_size'"):
        finetune_recipe({"epochs": 3}, "finetune")


# Section → (options class, keys its callers take out by name, keys the rule leaves out, keys whose schema
# default is the section's own protocol value rather than the class default).
SECTIONS = {
    "extraction": (ExtractionOptions, {"image_size"}, set(), set()),
    "linear_probe": (ProbeOptions, set(), set(), set()),
    "knn": (KnnOptions, set(), set(), set()),
    "retrieval": (RetrievalOptions, set(FEATURE_KEYS), set(), set()),
    "finetune": (FinetuneOptions, {"image_size"}, {"overrides", "dataset_overrides"}, set()),
    # BoB's LARS probe: its schedule, head and input are its own (the class defaults are fine-tuning's).
    "frozen_probe": (FinetuneOptions, {"image_size"}, set(),
                     {"epochs", "warmup_epochs", "lr", "micro_batch", "schedule", "head", "input"}),
    "detection": (DetectionOptions, {*SWEEP_KEYS, "bootstrap_resamples"}, {"overrides"}, set()),
    # Overrides of detection's keys (bobench.config.detection_recipe); OOD detection trains with LSJ and a
    # boxes-only Cascade R-CNN (BoB §6).
    "ood_detection": (DetectionOptions, {"lrs", "sets"}, set(), {"augmentation", "detector"}),
    "bootstrap": (BootstrapOptions, set(), set(), set()),
    "ranking": (RankingOptions, set(), set(), set()),
}


@pytest.mark.parametrize("name", SECTIONS)
def test_schema_defaults_equal_the_dataclass_defaults(name):
    """Defaults live in the schema; the dataclass defaults (for callers outside the workflow) cannot drift."""
    cls, taken, left_out, own = SECTIONS[name]
    section = schema_defaults()[name]
    defaults = {field.name: field.default for field in dataclasses.fields(cls)}
    keys = set(section) - taken - left_out
    assert keys <= set(defaults), f"{name}: {sorted(keys - set(defaults))} are not fields of {cls.__name__}"
    assert taken | left_out <= set(section), f"{name}: {sorted((taken | left_out) - set(section))} not in the schema"
    for key in sorted(keys):
        schema_value = tuple(section[key]) if isinstance(section[key], list) else section[key]
        if key in own:
            assert schema_value != defaults[key], f"{name}.{key}: no longer a value of its own; drop it from the list"
        else:
            assert schema_value == defaults[key], f"{name}.{key}: schema default {schema_value!r}, {cls.__name__} {defaults[key]!r}"


def test_the_frozen_probe_recipe_fixes_only_options_its_section_lacks():
    assert not set(FROZEN_PROBE_RECIPE) & set(schema_defaults()["frozen_probe"])


def load_config(*files: str) -> dict:
    config: dict = {}
    for name in files:
        update_config(config, yaml.safe_load((ROOT / "config" / name).read_text()))
    validate_against_schema(config, SCHEMA, "config")
    return apply_caps(config)


@pytest.mark.parametrize("files", [("config.yaml",), ("test.yaml",), ("paper.yaml",),
                                   ("paper.yaml", "rehearsal.yaml", "rehearsal_ci.yaml")], ids="+".join)
def test_every_shipped_config_converts_as_the_rules_pass_it(files):
    config = load_config(*files)
    extraction, image_size = extraction_options(config["extraction"])
    assert image_size == config["extraction"]["image_size"]
    options_from_config(ProbeOptions, config["linear_probe"], where="linear_probe")
    options_from_config(KnnOptions, config["knn"], where="knn")
    retrieval_options(config["retrieval"])
    ranking_options(config["ranking"], config["bootstrap"], seed=config["seed"])
    section = config["finetune"]
    base = {k: v for k, v in section.items() if k not in ("overrides", "dataset_overrides")}
    for override in [{}, *section["overrides"].values(), *section["dataset_overrides"].values()]:
        finetune_recipe({**base, **override}, "finetune")  # as rules/common.smk's finetune_options
    frozen, _ = finetune_recipe(config["frozen_probe"], "frozen_probe")
    assert frozen.freeze_backbone and frozen.epochs == config["frozen_probe"]["epochs"]
    for task in ("detection", "ood_detection"):
        recipe = detection_recipe(config, task)
        options, resamples = detector_recipe(recipe, task, recipe["lrs"][0])
        assert resamples == recipe["bootstrap_resamples"] and options.augmentation == recipe["augmentation"]
        assert options.detector == recipe["detector"]
        for backbone in config["detection"]["overrides"]:  # as rules/detection.smk passes each detector's
            per_backbone = detection_recipe(config, task, backbone)
            detector_recipe(per_backbone, task, per_backbone["lrs"][0])


# --------------------------------------------------------------------------- fingerprints


def test_a_fingerprint_ignores_loader_processes_and_nothing_else():
    spec, data = {"architecture": {"name": "x"}}, {"train_images.npy": "abc"}
    base = job_fingerprint(spec, data, {"batch_size": 64, "num_workers": 0})
    assert job_fingerprint(spec, data, {"batch_size": 64, "num_workers": 8}) == base
    assert job_fingerprint(spec, data, {"batch_size": 32, "num_workers": 0}) != base
    assert job_fingerprint(spec, {"train_images.npy": "abd"}, {"batch_size": 64}) != base
    assert job_fingerprint({"architecture": {"name": "y"}}, data, {"batch_size": 64}) != base


# --------------------------------------------------------------------------- primary metrics


def test_single_label_cells_are_top1_with_calibration_where_there_are_probabilities():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=40)
    labels = rng.integers(0, 4, 40)
    entries = classification_metrics("finetune", labels, probs=probs, bootstrap=BOOTSTRAP, seed=1)
    assert [(e["metric"], e["primary"]) for e in entries] == [("top1", True), ("nll", False), ("ece", False)]
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    assert entries[0] == metric_entry("top1", correct, BOOTSTRAP, 1, primary=True)
    scored = classification_metrics("linear_probe", labels, scores=np.log(probs), bootstrap=BOOTSTRAP, seed=1)
    assert scored == entries[:1]  # logits: no calibration
    voted = classification_metrics("knn", labels, correct=correct > 0, bootstrap=BOOTSTRAP, seed=1)
    assert voted == entries[:1]


def test_multilabel_cells_are_mean_auroc_and_knn_has_none():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, (50, 3))
    scores = targets + rng.normal(size=targets.shape)
    entries = classification_metrics("finetune", targets, probs=scores, class_names=["a", "b", "c"],
                                     bootstrap=BOOTSTRAP, seed=0)
    assert [e["metric"] for e in entries if e["primary"]] == ["mean_auroc"]
    assert [e["metric"] for e in entries] == ["mean_auroc", "auroc_a", "auroc_b", "auroc_c"]
    with pytest.raises(ValueError, match="no multi-label metric"):
        classification_metrics("knn", targets, scores=scores, bootstrap=BOOTSTRAP, seed=0)


def test_retrieval_and_detection_primaries_come_from_the_task_table():
    per_query = {"map": np.array([0.5, 1.0]), "mrr": np.array([1.0, 1.0])}
    results = {p: RetrievalResult({}, per_query, np.arange(2), 2, 5) for p in ("easy", "medium", "hard")}
    entries = retrieval_metrics(results, "medium", BOOTSTRAP, 0)
    assert [e["metric"] for e in entries if e["primary"]] == ["map"]
    assert {e["metric"] for e in entries} == {"map", "mrr", "map_easy", "mrr_easy", "map_hard", "mrr_hard"}
    values = {"ap": (0.4, np.full(5, 0.4)), "ap50": (0.7, np.full(5, 0.7))}
    for task, primary in (("detection", "ap"), ("ood_detection", "ap50"), ("instance_segmentation", "ap")):
        assert [e["metric"] for e in detection_metrics(task, values, 0.95) if e["primary"]] == [primary]


def test_a_record_checks_its_primary_metric_when_made():
    entry = metric_entry("top1", np.ones(3), BOOTSTRAP, 0, primary=False)
    with pytest.raises(ValueError, match="exactly one primary metric"):
        CellRecord("knn", "b", "d", {"fingerprint": "f"}, {}, [entry], {}, 0, 0.0)

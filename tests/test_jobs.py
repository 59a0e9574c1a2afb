"""The job functions (bobench.jobs) on small inputs, without a workflow: each record's metrics are what the
task function computes, the primary metric is the task's, and the outputs round-trip."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from bobench.backbones.model import create_backbone
from bobench.cells import auroc_entries, classification_metrics, detection_metrics, metric_entry
from bobench.config import feature_spec
from bobench.datasets import load_prepared, prepare_dataset
from bobench.features import ExtractionOptions, FeatureSet, extract_features
from bobench.io import read_json
from bobench.jobs.detection import detector_cells, detector_recipe
from bobench.jobs.features import extract_dataset_features
from bobench.jobs.finetune import finetune_recipe, train_classifier
from bobench.jobs.knn import knn_cell
from bobench.jobs.linear_probe import linear_probe_cell
from bobench.jobs.ood import ood_cells
from bobench.jobs.retrieval import RetrievalOptions, retrieval_cell
from bobench.ood import apply_shift, plan_ood_sets, restricted_probs
from bobench.provenance import job_fingerprint
from bobench.retrieval.ground_truth import GroundTruth
from bobench.retrieval.metrics import evaluate_retrieval
from bobench.retrieval.splits import class_folder_split
from bobench.tasks.finetune import build_classifier, finetune, predict_logits
from bobench.tasks.knn import KnnOptions, knn_classify
from bobench.tasks.linear_probe import ProbeOptions, linear_probe

BOOTSTRAP = {"n_boot": 100, "level": 0.9}
SEED = 3
CPU = torch.device("cpu")
SPLITS = ("train", "val", "test")
# A tiny random CNN (timm's test_resnet) at 32 px: seconds per job on a CPU.
TINY = {"architecture": {"library": "timm", "name": "test_resnet"}, "weights": {"source": "random", "seed": 0},
        "input": {"size": 32, "crop_pct": 1.0, "mean": [0.5] * 3, "std": [0.5] * 3}, "family": "CNN"}


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory, dataset_registry):
    """scikit-learn's digits, prepared as the workflow prepares it (80 / 40 / 40 images)."""
    out = tmp_path_factory.mktemp("digits")
    entry = {**dataset_registry["digits"], "splits": {"train": 80, "val": 40, "test": 40}}
    prepare_dataset("digits", entry, out_dir=out / "prepared", raw_dir=out / "raw")
    return out / "prepared"


@pytest.fixture(scope="module")
def pixel_features() -> FeatureSet:
    """Standardised digit pixels as cached features (900 / 300 / 597)."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order], y[order]
    x = ((x - x[:900].mean(0)) / (x[:900].std(0) + 1e-6)).astype(np.float32)
    parts = {"train": slice(0, 900), "val": slice(900, 1200), "test": slice(1200, None)}
    arrays = {**{f"{s}_features": x[p] for s, p in parts.items()}, **{f"{s}_labels": y[p] for s, p in parts.items()}}
    info = {"num_classes": 10, "class_names": [str(d) for d in range(10)], "test_split": "test", "fingerprint": "f0",
            "n_params": 0, "feature_dim": 64, "transform": {"size": 8}, "precision": "fp32", "device": "cpu"}
    return FeatureSet(arrays, info)


def same(a, b) -> bool:
    """Equal, NaN included (an AP without any detection of a size is NaN)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def without_provenance(record: dict) -> dict:
    return {key: value for key, value in record.items() if key != "provenance"}


# --------------------------------------------------------------------------- features


def test_extracted_features_are_the_extractors_and_round_trip(digits_dir, tmp_path):
    options = ExtractionOptions(batch_size=16, num_workers=0)
    features = extract_dataset_features("tiny", TINY, digits_dir, options, 32, dataset="digits")
    prepared = load_prepared(digits_dir)
    arrays, _ = extract_features(create_backbone("tiny", TINY, image_size=32), {s: prepared.split(s) for s in SPLITS},
                                 family="CNN", options=options, device=CPU)
    assert set(features.arrays) == set(arrays)
    for key, array in arrays.items():
        np.testing.assert_array_equal(features.arrays[key], array)
    info = features.info
    assert (info["dataset"], info["num_classes"], info["test_split"]) == ("digits", 10, prepared.meta["test_split"])
    expected = job_fingerprint(TINY, prepared.meta["manifest"], {"image_size": 32, "batch_size": 16, "precision": "auto",
                                                                "channels_last": "auto", "num_threads": None})
    assert info["fingerprint"] == expected
    features.write(tmp_path / "f.npz", tmp_path / "f.json")
    loaded = FeatureSet.load(str(tmp_path / "f.npz"), str(tmp_path / "f.json"))
    assert loaded.info == json.loads(json.dumps(info)) and loaded.arrays.keys() == arrays.keys()


# --------------------------------------------------------------------------- probes on cached features


def test_linear_probe_record_is_the_probes_result(pixel_features, tmp_path):
    a = pixel_features.arrays
    options = ProbeOptions(c_grid=(0.01, 1.0), max_iter=300)
    record = linear_probe_cell(pixel_features, options, backbone="b", dataset="digits", bootstrap=BOOTSTRAP, seed=SEED,
                               device=CPU)
    result = linear_probe(a["train_features"], a["train_labels"], a["val_features"], a["val_labels"],
                          a["test_features"], a["test_labels"], num_classes=10, options=options, device=CPU)
    assert record.metrics == [metric_entry("top1", result.test_correct, BOOTSTRAP, SEED, primary=True)]
    assert record.primary["value"] == pytest.approx(result.test_top1)
    assert record.protocol_params["chosen_c"] == result.chosen_c
    assert record.sizes == {"train": 900, "val": 300, "test": 597}
    written = record.write(str(tmp_path / "r.json"))
    assert without_provenance(read_json(tmp_path / "r.json")) == json.loads(json.dumps(without_provenance(written)))
    assert written["task"] == "classification" and written["protocol"] == "linear_probe"


def test_a_multilabel_probe_is_scored_by_mean_auroc(pixel_features):
    a = dict(pixel_features.arrays)
    findings = ["even", "large", "one_or_seven"]
    for split in SPLITS:
        y = pixel_features.arrays[f"{split}_labels"]
        a[f"{split}_labels"] = np.stack([y % 2 == 0, y > 4, np.isin(y, [1, 7])], axis=1).astype(np.int64)
    features = FeatureSet(a, {**pixel_features.info, "num_classes": 3, "class_names": findings})
    options = ProbeOptions(c_grid=(0.1,), max_iter=200)
    record = linear_probe_cell(features, options, backbone="b", dataset="d", bootstrap=BOOTSTRAP, seed=SEED, device=CPU)
    result = linear_probe(a["train_features"], a["train_labels"], a["val_features"], a["val_labels"],
                          a["test_features"], a["test_labels"], num_classes=3, options=options, device=CPU)
    assert record.metrics == auroc_entries(result.test_scores, a["test_labels"], findings, BOOTSTRAP, SEED, primary="mean_auroc")
    assert record.primary["metric"] == "mean_auroc"
    assert record.primary["value"] == pytest.approx(result.test_top1)
    assert record.protocol_params["selection"] == "val mean AUROC"


def test_knn_record_is_the_classifiers_result(pixel_features):
    a = pixel_features.arrays
    options = KnnOptions(k=10, temperature=0.1)
    record = knn_cell(pixel_features, options, backbone="b", dataset="digits", bootstrap=BOOTSTRAP, seed=SEED, device=CPU)
    result = knn_classify(np.concatenate([a["train_features"], a["val_features"]]),
                          np.concatenate([a["train_labels"], a["val_labels"]]),
                          a["test_features"], a["test_labels"], num_classes=10, options=options, device=CPU)
    assert record.metrics == [metric_entry("top1", result.correct, BOOTSTRAP, SEED, primary=True)]
    assert record.primary["value"] == pytest.approx(result.top1)
    assert record.sizes == {"bank": 1200, "test": 597}
    assert (record.protocol_params["k"], record.protocol_params["temperature"]) == (10, 0.1)


def test_retrieval_record_is_the_class_folder_protocols_result(pixel_features, tmp_path):
    options = RetrievalOptions(split="val", query_fraction=0.25, ks=(1, 5), topk=7)
    cell = retrieval_cell(pixel_features, options, backbone="b", dataset="digits", split_dir=None, bootstrap=BOOTSTRAP,
                          seed=SEED, device=CPU)
    features, labels = pixel_features.arrays["val_features"], pixel_features.arrays["val_labels"]
    query, db = class_folder_split(labels, query_fraction=0.25)
    results, top = evaluate_retrieval(features[query], features[db], {"default": GroundTruth.from_labels(labels[query], labels[db])},
                                      ks=(1, 5), device=CPU, topk=7)
    expected = results["default"]
    assert cell.record.primary == metric_entry("map", expected.per_query["map"], BOOTSTRAP, SEED, primary=True)
    assert {m["metric"]: m["value"] for m in cell.record.metrics} == pytest.approx(expected.metrics)
    np.testing.assert_array_equal(cell.predictions["top"], top)
    assert cell.record.features_info["test_split"] == "val" and cell.record.protocol_params["ks"] == [1, 5]
    cell.write(str(tmp_path / "r.json"), str(tmp_path / "p.npz"))
    with np.load(tmp_path / "p.npz") as saved:
        assert set(saved.files) == {"top", "scored", *(f"per_query_{k}" for k in expected.per_query)}


# --------------------------------------------------------------------------- training jobs

RECIPE = {"image_size": 32, "epochs": 1, "warmup_epochs": 0, "batch_size": 16, "micro_batch": 16, "eval_batch_size": 64,
          "precision": "fp32", "mixup": 0.0, "cutmix": 0.0, "randaugment": None, "max_steps": 3}


@pytest.fixture(scope="module")
def trained(digits_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("finetune")
    options, image_size = finetune_recipe(RECIPE, "finetune")
    cell = train_classifier("tiny", TINY, digits_dir, options, image_size, task="finetune", dataset="digits",
                            checkpoint=out / "ckpt.pt", bootstrap=BOOTSTRAP, seed=SEED, device=CPU)
    cell.write(str(out / "record.json"), str(out / "weights.pt"))
    return cell, out


def test_a_finetune_record_is_the_training_engines_result(trained, digits_dir, tmp_path):
    cell, out = trained
    options, image_size = finetune_recipe(RECIPE, "finetune")
    prepared = load_prepared(digits_dir)
    model, backbone = build_classifier("tiny", TINY, 10, image_size, False, options.drop_path, SEED)
    result = finetune(model, {s: prepared.split(s) for s in SPLITS}, 10, backbone.transform, options, tmp_path / "c.pt",
                      seed=SEED, device=CPU, channels_last=True)
    expected = classification_metrics("finetune", result.test_labels, probs=result.test_probs, bootstrap=BOOTSTRAP, seed=SEED)
    assert cell.record.metrics == expected
    assert [m["metric"] for m in expected] == ["top1", "nll", "ece"]
    assert cell.record.protocol_params["best_epoch"] == result.best_epoch
    assert not (out / "ckpt.pt").exists() and (out / "weights.pt").is_file()
    assert read_json(out / "record.json")["metrics"][0]["primary"]


def test_the_frozen_probe_gets_its_fixed_recipe(digits_dir, tmp_path):
    options, image_size = finetune_recipe({k: v for k, v in RECIPE.items() if k not in ("mixup", "cutmix", "randaugment")},
                                          "frozen_probe")
    cell = train_classifier("tiny", TINY, digits_dir, options, image_size, task="frozen_probe", dataset="digits",
                            checkpoint=tmp_path / "ckpt.pt", bootstrap=BOOTSTRAP, seed=SEED, device=CPU)
    params = cell.record.protocol_params
    assert (params["optimizer"], params["freeze_backbone"], params["mixup"]) == ("lars", True, 0.0)
    assert cell.record.primary["metric"] == "top1" and cell.record.as_dict()["protocol"] == "frozen_probe"


def test_ood_records_are_the_classifiers_scores_on_each_set(trained, digits_dir):
    _, out = trained
    options, image_size = finetune_recipe(RECIPE, "finetune")
    sets = plan_ood_sets("digits", ["digits"], ["invert"], [1])
    records = ood_cells("tiny", TINY, digits_dir, out / "weights.pt", options, image_size, [s.describe() for s in sets],
                        dataset="digits", prepared_dirs={"digits": digits_dir}, bootstrap=BOOTSTRAP, seed=SEED, device=CPU)
    assert [r.dataset for r in records] == [s.set_id for s in sets]
    model, backbone = build_classifier("tiny", TINY, 10, image_size, frozen=False, drop_path=0.0, seed=SEED)
    model.load_state_dict(torch.load(out / "weights.pt", weights_only=True))
    model = model.to(memory_format=torch.channels_last)
    images, labels = load_prepared(digits_dir).split("test")
    for ood, record in zip(sets, records):
        shown = apply_shift(images, ood.shift, ood.severity, SEED) if ood.kind == "shift" else images
        logits = predict_logits(model, shown, backbone.transform, 64, CPU, None, torch.channels_last)
        subset = None if ood.kind == "shift" else np.arange(10)
        probs = restricted_probs(logits, subset)
        assert record.metrics == classification_metrics("ood", labels, probs=probs, bootstrap=BOOTSTRAP, seed=SEED)
        assert record.protocol_params["ood_set"] == ood.describe()


def test_a_detector_record_is_the_detection_pieces_result(digits_dir, dataset_registry, backbone_registry, tmp_path):
    from bobench.detection.job import augmentation_used, build, evaluate_on, train_on
    from bobench.detection.sources import prepare_detection_dataset, read_manifest

    entry = {**dataset_registry["synthetic_objects"], "splits": {"train": 4, "val": 0, "test": 3},
             "source": {**dataset_registry["synthetic_objects"]["source"], "from_dataset": "digits",
                        "categories": ["0", "1"], "canvas_size": 64, "object_size": [16, 24]}}
    prepare_detection_dataset("canvases", entry, raw_dir=tmp_path / "raw", out_dir=tmp_path / "det",
                              prepared_dirs={"digits": str(digits_dir)}, log=logging.getLogger("test"))
    manifest = str(tmp_path / "det" / "manifest.json")
    recipe = {"settings": ["finetune"], "lrs": [1e-3], "bootstrap_resamples": 5, "epochs": 1, "steps": [1],
              "warmup_iters": 1, "batch_size": 2, "micro_batch": 2, "augment_scale": 0.0625, "rois_per_image": 16,
              "proposals_per_image": 20, "precision": "fp32", "max_steps": 1}
    options, resamples = detector_recipe(recipe, "detection", "0.001")
    spec = feature_spec({**backbone_registry["random_effnet_lite0"], "weights": {"source": "random", "seed": 0}})
    cells = detector_cells("random_effnet_lite0", spec, manifest, [manifest], options, task="detection",
                           setting="finetune", dataset="canvases", checkpoint=tmp_path / "a.pt",
                           bootstrap_resamples=resamples, bootstrap=BOOTSTRAP, seed=SEED, device=CPU)
    assert [(r.task_name, r.primary["metric"]) for r in cells.records] == [("detection", "ap"), ("instance_segmentation", "ap")]
    detector, backbone = build("random_effnet_lite0", spec, ["0", "1"], True, "finetune", options, SEED)
    train = read_manifest(manifest)
    train_on(detector, augmentation_used(backbone, options), train, ["0", "1"], True, options, tmp_path / "b.pt", SEED, CPU)
    _, metrics, _ = evaluate_on(detector, train, ["0", "1"], True, options, CPU, None, n_boot=5, seed=SEED)
    assert same(cells.records[0].metrics, detection_metrics("detection", metrics["bbox"], BOOTSTRAP["level"]))
    assert same(cells.records[1].metrics, detection_metrics("instance_segmentation", metrics["segm"], BOOTSTRAP["level"]))
    cells.write(str(tmp_path / "r.json"), str(tmp_path / "p.json"))
    assert len(read_json(tmp_path / "r.json")) == 2 and not (tmp_path / "a.pt").exists()

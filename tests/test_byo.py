"""Bring your own backbone: each of the four registry routes runs through the battle.

Routes: a timm name with a pretrained tag, a Hugging Face hub id, a local
checkpoint with a converter, and a ``module:function`` entry point. The hub
routes read a pre-populated offline Hugging Face cache: the code path is the
real one up to the network call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import save_file

from bobench.io import sha256_file

ROOT = Path(__file__).resolve().parents[1]
REVISION = "0123456789abcdef0123456789abcdef01234567"
pytestmark = pytest.mark.slow


def fake_hub_repo(cache: Path, repo: str, model: torch.nn.Module, config: dict) -> None:
    """The layout huggingface_hub leaves after downloading ``repo`` at ``main``."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(REVISION)
    snapshot = folder / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "model.safetensors"))
    (snapshot / "config.json").write_text(json.dumps(config))


COMMON = {"method": "supervised", "pretrain_data": "my data", "pretrain_size": 1000}


@pytest.fixture(scope="module")
def byo_battle(tmp_path_factory):
    import timm

    work = tmp_path_factory.mktemp("byo")
    cache = work / "hf-cache"
    torch.manual_seed(0)
    resnet = timm.create_model("resnet18", pretrained=False)
    fake_hub_repo(cache, "timm/resnet18.a1_in1k", resnet, {"architecture": "resnet18", "num_classes": 1000})
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=7)
    fake_hub_repo(cache, "someone/tiny-vit", vit, {
        "architecture": "vit_tiny_patch16_224", "num_classes": 7,
        "pretrained_cfg": {"input_size": [3, 224, 224], "crop_pct": 0.9, "interpolation": "bicubic",
                           "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    })
    # The same ResNet-18 weights as a DDP-style training checkpoint on disk.
    checkpoint = work / "my_resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in resnet.state_dict().items()}, "epoch": 90}, checkpoint)

    registry = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())
    registry.update({
        "byo_timm": {"name": "ResNet-18 (timm tag)", "family": "CNN", **COMMON,
                     "architecture": {"library": "timm", "name": "resnet18"},
                     "weights": {"source": "timm", "tag": "a1_in1k"}},
        "byo_hub": {"name": "Tiny ViT (HF hub)", "family": "ViT", **COMMON,
                    "architecture": {"library": "timm", "name": "hf-hub:someone/tiny-vit", "kwargs": {"dynamic_img_size": True}},
                    "weights": {"source": "timm"}},
        "byo_file": {"name": "ResNet-18 (local file)", "family": "CNN", **COMMON,
                     "architecture": {"library": "timm", "name": "resnet18"},
                     "weights": {"source": "file", "path": str(checkpoint), "sha256": sha256_file(checkpoint),
                                 "converter": "strip_module", "state_dict_key": "state_dict", "num_classes": 1000},
                     "input": {"size": 224, "crop_pct": 0.95, "interpolation": "bicubic",
                               "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}},
        "byo_python": {"name": "My tiny CNN (entry point)", "family": "CNN", **COMMON,
                       "architecture": {"library": "python", "entry_point": "byo_models:tiny_convnet", "kwargs": {"width": 16}},
                       "weights": {"source": "builtin"},
                       "input": {"size": 64, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}},
    })
    (work / "backbones.yaml").write_text(yaml.safe_dump(registry))
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    config.update(
        backbones=["byo_timm", "byo_hub", "byo_file", "byo_python"], datasets=["digits"],
        dataset_splits={"digits": {"train": 150, "val": 50, "test": 100}},
        # The routes differ in how the model is built and loaded: the tasks on cached features and fine-tuning
        # (which builds the trainable model) cover both paths. The frozen-backbone probe and OOD reuse them
        # (the battle of tests/test_workflow.py runs them); detection needs timm-style multi-scale maps, which
        # the entry-point CNN lacks (tests/test_detection.py plugs every registry family into the detector).
        tasks=["linear_probe", "knn", "finetune", "retrieval"], task_backbones={}, ood_detection={}, ood={"sets": []},
        task_datasets={"finetune": ["digits"]},
        registries={"backbones": str(work / "backbones.yaml"), "datasets": str(ROOT / "config" / "datasets.yaml")},
    )
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
         "--configfile", str(work / "config.yaml"), "--cores", "2"],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    return work, config


def test_every_route_joins_the_tasks_and_the_ranking(byo_battle):
    work, config = byo_battle
    results = pd.read_parquet(work / config["results_dir"] / "results.parquet")
    primary = results[results["primary"]]
    # linear_probe, knn, finetune, retrieval
    assert sorted(primary.groupby("backbone").size().items()) == [(b, 4) for b in sorted(config["backbones"])]
    ranking = pd.read_csv(work / config["results_dir"] / "ranking" / "ranking_overall.csv")
    assert set(ranking["backbone"]) == set(config["backbones"])
    params = primary.groupby("backbone")["n_params"].first()
    assert params["byo_timm"] == params["byo_file"] == 11_176_512  # ResNet-18 without its classifier
    assert params["byo_python"] == 3 * 16 * 9 + 16 + 16 * 32 * 9 + 32
    # The file route loads the very weights the hub route does: same features, same numbers.
    by_route = primary.set_index(["backbone", "task", "protocol"])["value"]
    pd.testing.assert_series_equal(
        by_route["byo_timm"], by_route["byo_file"], check_names=False, rtol=0, atol=0
    )


def test_routes_record_where_the_weights_came_from(byo_battle):
    work, config = byo_battle
    info = {b: json.loads((work / config["results_dir"] / "features" / b / "digits.json").read_text())
            for b in config["backbones"]}
    assert info["byo_timm"]["weights"] == {"weights": "timm:timm/resnet18.a1_in1k"}
    assert info["byo_hub"]["weights"] == {"weights": "timm:someone/tiny-vit"}
    assert info["byo_file"]["weights"]["converter"] == "strip_module"
    assert info["byo_python"]["weights"] == {"weights": "builtin:byo_models:tiny_convnet"}
    assert info["byo_python"]["feature_dim"] == 32

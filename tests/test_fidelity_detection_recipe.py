"""BoB's detection recipe in the paper config (docs/protocol.md §4, §6): Stable Diffusion at one scale with its
detection prompt, BoB's drop path per backbone, and the weights BoB's detection code loaded (DeiT ViTs for the
"in1k" ViTs, torchvision ResNets: §2.2), rehearsable with stand-ins."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml
from snakemake.utils import update_config
from torchvision import tv_tensors

from bobench.backbones.model import build_architecture, create_backbone
from bobench.config import (
    ConfigError,
    check_config,
    detection_recipe,
    feature_spec,
    load_registry,
    task_entry,
    validate_against_schema,
    variant_weights_task,
)
from bobench.detection.data import evaluation_sizes, train_transform
from bobench.detection.job import augmentation_used
from bobench.detection.model import detection_spec
from bobench.jobs.detection import detector_recipe
from bobench.rehearsal.caps import apply_caps
from bobench.rehearsal.standin_weights import timm_plan, write_standin_weights
from bobench.rehearsal.standins import needs_standin_weights, with_standin_weights

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "config" / "schemas"
REGISTRY = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())
DATASETS = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
IMAGENET_MEAN = (0.485, 0.456, 0.406)


def paper_config(*overlays: str) -> dict:
    """config/paper.yaml (and overlays) as the Snakefile reads it: merged, schema defaults filled, checked."""
    config: dict = {}
    for name in ("paper.yaml", *overlays):
        update_config(config, yaml.safe_load((ROOT / "config" / name).read_text()))
    validate_against_schema(config, SCHEMAS / "config.schema.yaml", "config")
    check_config(config, REGISTRY, DATASETS)
    return apply_caps(config)


@pytest.fixture(scope="module")
def paper():
    return paper_config()


# BoB's drop_path_rate per detection config (hsouri/bob-detection configs/bob/<dir>/*.py, transcribed in
# docs/protocol.md §4). mmdet's ResNet has no drop path, nor has SD's encoder.
BOB_DETECTION_DROP_PATH = {
    **dict.fromkeys(["sup_rn50_in1k", "sup_rn101_in1k", "dino_rn50", "vicreg_rn50", "random_rn50", "random_rn101",
                     "sd_v14"], 0.0),
    "sup_cnxt_t_in1k": 0.4, "random_cnxt_t": 0.4,  # convnext-t_..._in1k*
    "sup_cnxt_b_in1k": 0.7, "random_cnxt_b": 0.7,  # convnext-b_..._in1k*
    "sup_cnxt_b_in21k": 0.6,  # convnext-b_..._in22k*
    "sup_swinv2_t_in1k": 0.2, "random_swinv2_t": 0.2,  # swin2tiny-w8-256*
    "sup_swinv2_b_in1k": 0.5, "random_swinv2_b": 0.5,  # swin2base-w8-256*
    "sup_swinv2_b_in21k_256": 0.2, "sup_swinv2_b_in21k_384": 0.2,  # swin2base-w16-256*, swin2base-w24-384*
    "midas_swinv2_t": 0.2, "midas_swinv2_b": 0.2,  # midas/*
    # ViTDet/*, dino/*vitdet*, mocov3/*, mae/*, clip/*, sam/* (vitdet-b base config)
    **dict.fromkeys(["sup_vit_s_in1k", "sup_vit_b_in1k", "dino_vit_s", "dino_vit_b", "mocov3_vit_s", "mocov3_vit_b",
                     "mae_vit_b", "clip_vit_b_laion", "sam_vit_b", "random_vit_s16", "random_vit_b16"], 0.1),
}
# hsouri/bob-ood-detection configs/bob_sim2real: the same, except ConvNeXt-B IN-21k (convnext-b_..._in22k*: 0.7).
BOB_OOD_DETECTION_DROP_PATH = {**BOB_DETECTION_DROP_PATH, "sup_cnxt_b_in21k": 0.7}


# --------------------------------------------------------------------------- Stable Diffusion


def test_sd_detects_at_bobs_single_scale_with_bobs_prompt(paper):
    recipe = detection_recipe(paper, "detection", "sd_v14")
    options, _ = detector_recipe(recipe, "detection", recipe["lrs"][0])
    assert (options.augmentation, options.single_scale_size, options.augment_scale) == ("single_scale", 512, 1.0)
    assert augmentation_used(None, options) == "single_scale"  # whatever the backbone's shape
    assert evaluation_sizes("single_scale", options.augment_scale, options.single_scale_size) == (512, 512)
    # mmdet's Resize((512, 512), keep_ratio=True): the longer side becomes 512, always (no random scale).
    transform = train_transform("single_scale", options.augment_scale, options.single_scale_size)
    for height, width, expected in [(480, 640, (384, 512)), (1024, 256, (512, 128)), (200, 100, (512, 256))]:
        image = tv_tensors.Image(torch.zeros(3, height, width, dtype=torch.uint8))
        boxes = tv_tensors.BoundingBoxes([[10, 10, 50, 60]], format="XYXY", canvas_size=(height, width))
        for _ in range(3):
            out, target = transform(image, {"boxes": boxes, "labels": torch.tensor([1])})
            assert tuple(out.shape[-2:]) == expected and len(target["boxes"]) == 1
    # Its prompt is BoB's detection one, its weights the classification entry's.
    detection = task_entry(REGISTRY["sd_v14"], "detection")
    assert detection["architecture"]["kwargs"]["prompt"] == "object detection"
    assert REGISTRY["sd_v14"]["architecture"]["kwargs"]["prompt"] == "image classification"
    assert task_entry(REGISTRY["sd_v14"], "finetune")["architecture"]["kwargs"]["prompt"] == "image classification"
    assert detection["weights"] == REGISTRY["sd_v14"]["weights"] and variant_weights_task(REGISTRY["sd_v14"], "detection") is None
    assert feature_spec(detection)["architecture"]["kwargs"]["prompt"] == "object detection"  # what the rule passes


def test_every_other_detector_keeps_the_multi_scale_or_lsj_recipe(paper):
    for backbone in paper["task_backbones"]["detection"]:
        if backbone != "sd_v14":
            assert detection_recipe(paper, "detection", backbone)["augmentation"] == "auto", backbone
    # OOD detection's overrides replace detection's: its LSJ for every backbone stays (BoB §6).
    assert detection_recipe(paper, "ood_detection", "sd_v14")["augmentation"] == "lsj"


def test_the_other_augmentations_are_unchanged():
    assert evaluation_sizes("lsj") == (1024, 1024) and evaluation_sizes("multi_scale") == (800, 1333)
    with pytest.raises(ValueError, match="must be one of"):
        train_transform("auto")


# --------------------------------------------------------------------------- drop path


@pytest.mark.parametrize(("task", "table"), [("detection", BOB_DETECTION_DROP_PATH),
                                             ("ood_detection", BOB_OOD_DETECTION_DROP_PATH)])
def test_drop_path_per_backbone_is_bobs(paper, task, table):
    pool = paper["task_backbones"][task]
    assert set(pool) - set(table) <= {"sup_cnxt_s_in1k", "sup_cnxt_s_in21k", "sam_vit_b", "sd_v14"}  # ours only
    for backbone in pool:
        if backbone in table:
            recipe = detection_recipe(paper, task, backbone)
            options, _ = detector_recipe(recipe, task, recipe["lrs"][0])
            assert options.drop_path == table[backbone], (task, backbone)


def test_the_drop_path_reaches_the_built_backbone(paper):
    """detection_spec puts the recipe's rate into timm's constructor; 0 (ResNets) leaves timm's default, none."""
    convnext = detection_spec(REGISTRY["sup_cnxt_b_in1k"], detection_recipe(paper, "detection", "sup_cnxt_b_in1k")["drop_path"])
    assert convnext["architecture"]["kwargs"]["drop_path_rate"] == 0.7
    resnet = detection_spec(REGISTRY["sup_rn50_in1k"], detection_recipe(paper, "detection", "sup_rn50_in1k")["drop_path"])
    assert "drop_path_rate" not in resnet["architecture"].get("kwargs", {})
    with torch.device("meta"):
        blocks = build_architecture(convnext).stages[-1].blocks
    assert blocks[-1].drop_path.drop_prob == pytest.approx(0.7)  # timm's linear rule: the last block gets the rate


def test_overrides_are_checked_and_capped():
    unknown = {"backbones": ["sup_rn50_in1k"], "datasets": ["coco2017"], "tasks": ["detection"],
               "detection": {"overrides": {"no_such_backbone": {"drop_path": 0.1}}}}
    validate_against_schema(unknown, SCHEMAS / "config.schema.yaml", "config")
    with pytest.raises(ConfigError, match="'detection.overrides.no_such_backbone'"):
        check_config(unknown, REGISTRY, DATASETS)
    sweep = {"backbones": ["sd_v14"], "datasets": ["coco2017"], "tasks": ["detection"],
             "detection": {"overrides": {"sd_v14": {"lrs": [1.0e-4]}}}}  # the sweep is the task's
    with pytest.raises(ConfigError, match="detection.overrides.sd_v14"):
        validate_against_schema(sweep, SCHEMAS / "config.schema.yaml", "config")
    # The rehearsal caps a per-backbone micro-batch at its detector batch.
    rehearsed = paper_config("rehearsal.yaml")
    config = copy.deepcopy(rehearsed)
    config["detection"]["overrides"]["sd_v14"]["micro_batch"] = 8
    assert apply_caps(config)["detection"]["overrides"]["sd_v14"]["micro_batch"] == rehearsed["rehearsal"]["max_detector_batch"]


# --------------------------------------------------------------------------- weights


# What BoB's detection configs load (docs/protocol.md §2.2; configs/bob/{ViTDet,resnet}); mmcv's
# torchvision://resnet50 and ://resnet101 are torchvision 0.12's files (mmcv/model_zoo/torchvision_0.12.json).
BOB_DETECTION_FILES = {
    "sup_vit_s_in1k": ("deit_small_patch16_224", "https://dl.fbaipublicfiles.com/deit/deit_small_patch16_224-cd65a155.pth"),
    "sup_vit_b_in1k": ("deit_base_patch16_384", "https://dl.fbaipublicfiles.com/deit/deit_base_patch16_384-8de9b5d1.pth"),
    "sup_rn50_in1k": ("resnet50", "https://download.pytorch.org/models/resnet50-0676ba61.pth"),
    "sup_rn101_in1k": ("resnet101", "https://download.pytorch.org/models/resnet101-63fe2227.pth"),
}


@pytest.mark.parametrize("backbone", sorted(BOB_DETECTION_FILES))
def test_detectors_load_the_weights_bobs_detection_code_loaded(backbone):
    import timm

    entry = REGISTRY[backbone]
    architecture, url = BOB_DETECTION_FILES[backbone]
    for task in ("detection", "ood_detection"):
        variant = task_entry(entry, task)
        assert variant["architecture"]["name"] == architecture and variant["weights"]["source"] == "timm"
        cfg = timm.models.get_pretrained_cfg(f"{architecture}.{variant['weights']['tag']}")
        assert cfg.url == url and cfg.hf_hub_id == f"timm/{architecture}.{variant['weights']['tag']}"
        assert variant_weights_task(entry, task) == "detection"  # one download, one stand-in for both tasks
        assert "task_variants" not in variant
    # Every other task keeps the classification weights (AugReg, ResNet strikes back).
    for task in (None, "finetune", "retrieval"):
        assert task_entry(entry, task) == {k: v for k, v in entry.items() if k != "task_variants"}
    # Same architecture as the entry's own: only the weights (and DeiT's mean and std) differ.
    assert timm_plan(task_entry(entry, "detection")).keys() == timm_plan(entry).keys()


class NetworkCall(Exception):
    """Raised where a download would start."""


@pytest.mark.parametrize("backbone", sorted(BOB_DETECTION_FILES))
def test_a_detector_fetches_its_variants_checkpoint(backbone, monkeypatch):
    """The paper run's path (no stand-in): timm asks the hub for the variant's repository, not the entry's."""
    import timm.models._hub as timm_hub

    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, kwargs.get("revision")))
        raise NetworkCall(repo_id)

    monkeypatch.setattr(timm_hub, "hf_hub_download", fake_download)
    spec = detection_spec(feature_spec(task_entry(REGISTRY[backbone], "detection")), drop_path=0.1)
    with pytest.raises(NetworkCall):
        create_backbone(backbone, spec)
    architecture, _ = BOB_DETECTION_FILES[backbone]
    assert calls[0] == (f"timm/{architecture}.{spec['weights']['tag']}", None)  # not pinned to a commit yet


def test_task_variants_are_validated_by_the_registry_schema(tmp_path):
    path = tmp_path / "backbones.yaml"
    load_registry(ROOT / "config" / "backbones.yaml", SCHEMAS / "backbones.schema.yaml", "backbone registry")
    base = {k: v for k, v in REGISTRY["sup_rn50_in1k"].items() if k != "task_variants"}
    for variants, message in [
        ({"finetune": {"weights": {"source": "timm", "tag": "tv_in1k"}}}, "task_variants"),  # no rule reads it
        ({"detection": {"notes": "x"}}, "task_variants.detection"),  # architecture, weights, input only
        ({"detection": {}}, "task_variants.detection"),
        ({"detection": {"weights": {"source": "url", "url": "https://example.org/a.pth"}}}, "sha256"),
    ]:
        path.write_text(yaml.safe_dump({"a": {**base, "task_variants": variants}}))
        with pytest.raises(ConfigError, match=message):
            load_registry(path, SCHEMAS / "backbones.schema.yaml", "backbone registry")


def test_a_variants_converter_is_checked_like_the_entrys():
    registry = copy.deepcopy(REGISTRY)
    registry["dino_rn50"]["task_variants"] = {"detection": {"weights": {**registry["dino_rn50"]["weights"], "converter": "nope"}}}
    config = {"backbones": ["dino_rn50"], "datasets": ["coco2017"], "tasks": ["detection"]}
    validate_against_schema(config, SCHEMAS / "config.schema.yaml", "config")
    with pytest.raises(ConfigError, match="dino_rn50.task_variants.detection.weights.converter"):
        check_config(config, registry, DATASETS)


def test_a_variant_with_weights_of_its_own_is_rehearsed_with_its_own_stand_in(tmp_path):
    pointed = with_standin_weights(REGISTRY, str(tmp_path))
    vit = pointed["sup_vit_s_in1k"]
    assert vit["weights"]["standin_dir"] == str(tmp_path)
    for task in ("detection", "ood_detection"):
        assert task_entry(vit, task)["weights"]["standin_dir"] == str(tmp_path / "detection")
    assert task_entry(pointed["sd_v14"], "detection")["weights"]["standin_dir"] == str(tmp_path)  # SD's own weights
    assert needs_standin_weights(task_entry(REGISTRY["sup_vit_s_in1k"], "detection"))
    # The real fetch → verify → strict-load path on the DeiT stand-in, offline: DeiT's weights and its ImageNet
    # statistics in the detector, the AugReg stand-in (never written here) untouched.
    write_standin_weights("sup_vit_s_in1k", task_entry(REGISTRY["sup_vit_s_in1k"], "detection"), tmp_path / "detection")
    spec = feature_spec(task_entry(vit, "detection"))
    backbone = create_backbone("sup_vit_s_in1k", detection_spec(spec, drop_path=0.1))
    assert backbone.provenance["weights"] == "timm:timm/deit_small_patch16_224.fb_in1k"
    assert backbone.provenance["standin"] is True and backbone.is_plain()
    assert tuple(backbone.transform.mean) == pytest.approx(IMAGENET_MEAN)
    assert not (tmp_path / "sup_vit_s_in1k.json").exists()

"""BoB's detection details in the paper config (docs/protocol.md §4, §6), each against BoB's MMDetection configs
(hsouri/bob-detection configs/bob/*, hsouri/bob-ood-detection configs/bob_sim2real/*): RPN proposals in training
per backbone family, RoIAlign with ``aligned=True`` and mmdet's level rule, images per step per backbone and
setting, ``frozen_stages=1`` (and ``norm_eval``) of the OOD-detection ResNets, and the SwinV2 windows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from snakemake.utils import update_config
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import LevelMapper

from bobench.backbones.model import create_backbone
from bobench.config import ConfigError, check_config, detection_recipe, validate_against_schema
from bobench.detection.job import build, norm_eval_used
from bobench.detection.model import build_detector, detection_spec
from bobench.detection.roi import AlignedMultiScaleRoIAlign, mmdet_level_mapper
from bobench.detection.train import DetectionOptions
from bobench.rehearsal.caps import apply_caps

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schemas" / "config.schema.yaml"
REGISTRY = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())
DATASETS = yaml.safe_load((ROOT / "config" / "datasets.yaml").read_text())
SMALL = dict(test_short_side=64, test_max_side=96, rois_per_image=16, proposals_per_image=20)
SMALL_OPTIONS = dict(rois_per_image=16, proposals_per_image=20, augment_scale=0.0625)


def config_of(*files: str, caps: bool = True) -> dict:
    config: dict = {}
    for name in files:
        update_config(config, yaml.safe_load((ROOT / "config" / name).read_text()))
    validate_against_schema(config, SCHEMA, "config")
    check_config(config, REGISTRY, DATASETS)
    return apply_caps(config) if caps else config


@pytest.fixture(scope="module")
def paper():
    return config_of("paper.yaml")


def random_spec(backbone_id: str, **architecture) -> dict:
    entry = {**REGISTRY[backbone_id], "weights": {"source": "random", "seed": 0}}
    if architecture:
        entry["architecture"] = {**entry["architecture"], **architecture}
    return entry


# --------------------------------------------------------------------------- 1. RPN proposals in training

# rpn_proposal.max_per_img of BoB's train_cfg: configs/_base_/models/cascade_*_r50_fpn.py (hierarchical) and
# configs/bob/ViTDet/cascade_mask_rcnn_vitdet-b_fpn_3x_coco_base.py (plain ViTs); nms_pre 2000 in both;
# test_cfg.rpn: nms_pre 1000, max_per_img 1000.
BOB_RPN = {"hierarchical": {"training": 2000, "testing": 1000}, "plain": {"training": 1000, "testing": 1000}}


@pytest.mark.parametrize(("backbone_id", "family"), [("random_effnet_lite0", "hierarchical"), ("random_vit_s16", "plain")])
def test_the_rpn_keeps_bobs_training_proposals_per_family(paper, backbone_id, family):
    recipe = detection_recipe(paper, "detection", backbone_id)
    assert (recipe["train_proposals_per_image"], recipe["proposals_per_image"]) == ("bob", 1000)
    torch.manual_seed(0)
    backbone = create_backbone(backbone_id, detection_spec(random_spec(backbone_id)))
    detector = build_detector(
        backbone,
        2,
        masks=False,
        detector="cascade_rcnn",
        train_proposals_per_image=recipe["train_proposals_per_image"],
        proposals_per_image=recipe["proposals_per_image"],
    )
    assert detector.rpn._post_nms_top_n == BOB_RPN[family]
    assert detector.rpn._pre_nms_top_n == {"training": 2000, "testing": 1000}  # per level, as mmdet's nms_pre
    # the switch: a number is that many for every family; the demo and test configs keep their small counts
    fixed = build_detector(backbone, 2, masks=False, detector="cascade_rcnn", train_proposals_per_image=300)
    assert fixed.rpn._post_nms_top_n["training"] == 300
    for name, count in (("config.yaml", 100), ("test.yaml", 20)):
        small = detection_recipe(config_of(name), "detection")
        assert small["train_proposals_per_image"] == small["proposals_per_image"] == count


# --------------------------------------------------------------------------- 2. RoIAlign aligned=True


def mmdet_levels(boxes: torch.Tensor, n_levels: int) -> torch.Tensor:
    """mmdet 2.x ``SingleRoIExtractor.map_roi_levels``, transcribed."""
    scale = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    return torch.floor(torch.log2(scale / 56 + 1e-6)).clamp(min=0, max=n_levels - 1).long()


def square_boxes(sides: list[float], centre: float = 128.0) -> torch.Tensor:
    return torch.tensor([[centre - s / 2, centre - s / 2, centre + s / 2, centre + s / 2] for s in sides])


SIDES = [8, 20, 55, 56, 57, 111, 112, 113, 200, 224, 300, 447, 448, 449, 900, 2000]
EXPECTED_LEVELS = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3]  # ⌊log2(side / 56)⌋ in [0, 3]


@pytest.mark.parametrize("first_stride", [4, 8])
def test_boxes_go_to_mmdets_levels(first_stride):
    boxes = square_boxes(SIDES)
    assert mmdet_levels(boxes, 4).tolist() == EXPECTED_LEVELS
    # counted from the finest level whatever its stride, as mmdet (torchvision's own rule is absolute)
    assert mmdet_level_mapper(first_stride, 4)([boxes]).tolist() == EXPECTED_LEVELS
    if first_stride == 4:  # torchvision's default (224 at level 4) is the same rule on a stride-4 pyramid
        assert LevelMapper(2, 5)([boxes]).tolist() == EXPECTED_LEVELS
    else:
        assert LevelMapper(3, 6)([boxes]).tolist() != EXPECTED_LEVELS


def toy_pyramid(n_levels: int = 4, size: int = 256) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {str(i): torch.randn(2, 3, size // (4 * 2**i), size // (4 * 2**i), generator=generator) for i in range(n_levels)}


def test_the_pooling_is_torchvisions_roi_align_with_aligned_true_on_mmdets_level():
    features = toy_pyramid()
    boxes = [square_boxes([20, 112, 300], centre=100.0), square_boxes([60.5, 449, 33], centre=131.3)]
    pool = AlignedMultiScaleRoIAlign(list(features), [4, 8, 16, 32], output_size=7)
    pooled = pool(features, boxes, [(256, 256), (256, 256)])
    expected = []
    for image, image_boxes in enumerate(boxes):
        for box, level in zip(image_boxes, mmdet_levels(image_boxes, 4).tolist()):
            stride = 4 * 2**level
            rois = torch.cat([torch.tensor([[float(image)]]), box[None]], dim=1)
            expected.append(roi_align(features[str(level)], rois, (7, 7), 1 / stride, sampling_ratio=0, aligned=True))
    assert torch.allclose(pooled, torch.cat(expected), atol=1e-6)
    # the half-pixel offset is what differs from torchvision's MultiScaleRoIAlign (aligned=False)
    unaligned = MultiScaleRoIAlign(list(features), 7, 0)(features, boxes, [(256, 256), (256, 256)])
    assert not torch.allclose(pooled, unaligned, atol=1e-3)


def test_every_box_and_mask_head_pools_as_bob_and_the_switch_restores_torchvisions(paper):
    assert detection_recipe(paper, "detection")["roi_align_aligned"] is True
    assert detection_recipe(paper, "ood_detection")["roi_align_aligned"] is True
    torch.manual_seed(0)
    backbone = create_backbone("random_effnet_lite0", detection_spec(random_spec("random_effnet_lite0")))
    for aligned, kind in ((True, AlignedMultiScaleRoIAlign), (False, MultiScaleRoIAlign)):
        for name, masks in (("cascade_mask_rcnn", True), ("mask_rcnn", True), ("cascade_rcnn", False)):
            detector = build_detector(backbone, 2, detector=name, masks=masks, roi_align_aligned=aligned, **SMALL)
            stages = getattr(detector.roi_heads, "stages", [detector.roi_heads])
            pools = [s.box_roi_pool for s in stages] + [s.mask_roi_pool for s in stages if masks]
            assert pools and all(type(p) is kind for p in pools), (name, aligned)
    # Stable Diffusion's fifth map (stride 64) feeds the RPN only: BoB's featmap_strides are [4, 8, 16, 32]
    pool = AlignedMultiScaleRoIAlign([str(i) for i in range(5)], [4, 8, 16, 32, 64], output_size=7)
    assert pool.featmap_names == ["0", "1", "2", "3"] and pool.strides == [4, 8, 16, 32]


# --------------------------------------------------------------------------- 3. images per step


# samples_per_gpu × 8 GPUs (coco_instance.py's 2 unless a config says otherwise): 1 in the fine-tuned and
# random-init configs of convnext-b (in1k, in22k), swin2base-w8/w16/w24, midas swin2base-w24 and stable_diff,
# 4 in sam's fine-tuned config; no OOD-detection config changes it (2).
BOB_FINETUNED_BATCH = {
    **dict.fromkeys(
        [
            "sup_cnxt_b_in1k",
            "sup_cnxt_b_in21k",
            "random_cnxt_b",
            "sup_swinv2_b_in1k",
            "random_swinv2_b",
            "sup_swinv2_b_in21k_256",
            "sup_swinv2_b_in21k_384",
            "midas_swinv2_b",
            "sd_v14",
        ],
        8,
    ),
    "sam_vit_b": 32,
}


def test_images_per_step_are_bobs_per_backbone_and_setting(paper):
    for backbone in paper["task_backbones"]["detection"]:
        finetune = detection_recipe(paper, "detection", backbone, "finetune")
        frozen = detection_recipe(paper, "detection", backbone, "frozen")
        assert (finetune["batch_size"], frozen["batch_size"]) == (BOB_FINETUNED_BATCH.get(backbone, 16), 16), backbone
        assert finetune["micro_batch"] == frozen["micro_batch"] == 2
        assert finetune["lrs"] == frozen["lrs"] == [8e-5, 1e-4, 2e-4, 3e-4]  # the lr is not rescaled
        assert "by_setting" not in finetune
        assert detection_recipe(paper, "ood_detection", backbone, "finetune")["batch_size"] == 16
    # the override's other keys still apply to every setting
    assert detection_recipe(paper, "detection", "sup_cnxt_b_in1k", "frozen")["drop_path"] == 0.7


def test_per_setting_overrides_are_checked_and_capped_by_the_rehearsal():
    rehearsal = config_of("paper.yaml", "rehearsal.yaml")
    cap = rehearsal["rehearsal"]["max_detector_batch"]
    assert detection_recipe(rehearsal, "detection", "sam_vit_b", "finetune")["batch_size"] <= cap
    raw = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    raw["detection"]["overrides"]["sam_vit_b"] = {"by_setting": {"random": {"batch_size": 8}}}
    with pytest.raises(ConfigError, match=r"detection\.overrides\.sam_vit_b\.by_setting.*'random'"):
        validate_against_schema(raw, SCHEMA, "config")
    raw["detection"]["overrides"]["sam_vit_b"] = {"by_setting": {"finetune": {"batch": 8}}}
    with pytest.raises(ConfigError, match=r"by_setting\.finetune.*'batch' was unexpected"):
        validate_against_schema(raw, SCHEMA, "config")


# --------------------------------------------------------------------------- 4. frozen_stages and norm_eval

RESNETS = ["sup_rn50_in1k", "sup_rn101_in1k", "dino_rn50", "vicreg_rn50", "random_rn50", "random_rn101"]


def test_ood_resnets_fine_tune_with_mmdets_frozen_stages_1(paper):
    """bob_sim2real's ResNet configs inherit frozen_stages=1 (the "unfreeze" ones set -1); the random-init ones
    keep norm_eval=True. COCO's configs set frozen_stages=-1 for every fine-tuned ResNet."""
    for backbone in paper["task_backbones"]["ood_detection"]:
        recipe = detection_recipe(paper, "ood_detection", backbone, "finetune")
        assert recipe["frozen_stages"] == (1 if backbone in RESNETS else 0), backbone
        assert recipe["norm_eval"] == (True if backbone.startswith("random_rn") else "auto"), backbone
    for backbone in paper["task_backbones"]["detection"]:
        assert detection_recipe(paper, "detection", backbone, "finetune")["frozen_stages"] == 0
        assert detection_recipe(paper, "detection", backbone, "finetune")["norm_eval"] == "auto"


def test_frozen_stages_freeze_the_stem_and_first_stage_and_their_batchnorm():
    spec = random_spec("random_rn50", name="resnet18")  # a ResNet as timm builds every registry ResNet, smaller
    for norm_eval in (True, False):
        options = DetectionOptions(frozen_stages=1, norm_eval=norm_eval, **SMALL_OPTIONS)
        detector, _ = build("random_rn50", spec, ["a", "b"], True, "finetune", options, seed=0)
        body = detector.backbone.body
        frozen = {name for name, p in body.named_parameters() if not p.requires_grad}
        assert frozen == {name for name, _ in body.named_parameters() if name.startswith(("conv1.", "bn1.", "layer1."))}
        detector.train()
        modes = {name: m.training for name, m in body.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
        assert not any(mode for name, mode in modes.items() if name.startswith(("bn1", "layer1.")))
        assert all(mode != norm_eval for name, mode in modes.items() if name.startswith("layer2."))
        assert all(p.requires_grad for p in detector.roi_heads.parameters())
    # the frozen setting freezes everything whatever frozen_stages says; auto norm_eval is BoB's COCO rule
    detector, _ = build(
        "random_rn50", spec, ["a", "b"], True, "frozen", DetectionOptions(frozen_stages=1, **SMALL_OPTIONS), seed=0
    )
    assert not any(p.requires_grad for p in detector.backbone.body.parameters())
    assert norm_eval_used(spec, DetectionOptions()) is False
    assert norm_eval_used(REGISTRY["sup_rn50_in1k"], DetectionOptions()) is True


# --------------------------------------------------------------------------- 5. SwinV2 windows

# window_size of BoB's SwinTransformerV2 configs (configs/bob/{swinv2,midas}/*, bob_sim2real the same): mmdet's
# default 8 where a config sets none; pretrained_window_sizes [12, 12, 12, 6] where the windows grow (timm's
# 12to16 and 12to24 models have the same).
BOB_WINDOWS = {
    **dict.fromkeys(
        ["sup_swinv2_t_in1k", "random_swinv2_t", "sup_swinv2_b_in1k", "random_swinv2_b", "midas_swinv2_t"], [8, 8, 8, 8]
    ),
    "sup_swinv2_b_in21k_256": [16, 16, 16, 8],
    "sup_swinv2_b_in21k_384": [24, 24, 24, 12],
    "midas_swinv2_b": [24, 24, 24, 12],
}


def test_swinv2_detectors_use_bobs_windows(paper):
    for task in ("detection", "ood_detection"):
        for backbone in paper["task_backbones"][task]:
            for setting in ("finetune", "frozen"):
                assert detection_recipe(paper, task, backbone, setting)["window_size"] == BOB_WINDOWS.get(backbone), backbone


def test_a_swinv2_is_rebuilt_with_bobs_windows_shifted_everywhere_and_loads_strictly():
    """MiDaS-T's encoder (timm's window-16 SwinV2-T) with BoB's windows of 8: mmdet's Swin pads every stage to
    whole windows and shifts every other block by half a window; the weights are the same tensors."""
    entry = random_spec("midas_swinv2_t")
    torch.manual_seed(0)
    native = create_backbone("midas_swinv2_t", detection_spec(entry)).model
    bob = create_backbone("midas_swinv2_t", detection_spec(entry, window_size=[8, 8, 8, 8])).model
    assert [stage.blocks[1].window_size for stage in bob.layers] == [(8, 8)] * 4
    assert [stage.blocks[1].shift_size for stage in bob.layers] == [(4, 4)] * 4
    # timm as built for 256 px: windows shrunk to the last stage's 8 × 8, and no shift there
    assert [stage.blocks[1].shift_size for stage in native.layers][-1] == (0, 0)
    bob.load_state_dict(native.state_dict(), strict=True)
    maps = bob.forward_intermediates(torch.rand(1, 3, 96, 160), indices=[0, 1, 2, 3], intermediates_only=True)
    assert [tuple(m.shape[-2:]) for m in maps] == [(24, 40), (12, 20), (6, 10), (3, 5)]
    with pytest.raises(ValueError, match="window_size.*SwinV2"):
        detection_spec(random_spec("random_rn50"), window_size=[8, 8, 8, 8])
    assert torch.isfinite(maps[-1]).all()

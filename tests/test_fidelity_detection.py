"""BoB's Cascade (Mask) R-CNN on torchvision's pieces (docs/protocol.md §4, §6): its structure per task and
backbone family as BoB's MMDetection configs set it, its training and inference as mmdet's CascadeRoIHead
runs them, and the detector switch of the config."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch
import yaml
from snakemake.utils import update_config
from timm.layers import LayerNorm2d
from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import box_iou, generalized_box_iou_loss

import bobench.detection.cascade as cascade_module
from bobench.backbones.model import create_backbone
from bobench.config import detection_recipe, feature_spec, validate_against_schema
from bobench.detection.cascade import CascadeRoIHeads, StageSamples, box_loss
from bobench.detection.evaluate import COCO_STATS
from bobench.detection.model import build_detector, detection_spec
from bobench.jobs.detection import detector_cells, detector_recipe

ROOT = Path(__file__).resolve().parents[1]
BACKBONES = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())
CPU = torch.device("cpu")
HIERARCHICAL, PLAIN = "random_effnet_lite0", "random_vit_s16"
STDS = [(0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067)]
SMALL = dict(test_short_side=64, test_max_side=96, rois_per_image=16, proposals_per_image=20)


def random_backbone(backbone_id: str):
    return create_backbone(backbone_id, detection_spec({**BACKBONES[backbone_id], "weights": {"source": "random", "seed": 0}}))


def detector_on(backbone_id: str, detector: str, masks: bool, seed: int = 0, **sizes):
    torch.manual_seed(seed)
    return build_detector(random_backbone(backbone_id), 2, detector=detector, masks=masks, **{**SMALL, **sizes})


def one_image_target() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    image = torch.rand(3, 64, 96)
    mask = torch.zeros(2, 64, 96, dtype=torch.uint8)
    mask[0, 10:40, 20:60] = 1
    mask[1, 30:60, 60:90] = 1
    target = {"boxes": torch.tensor([[20.0, 10.0, 60.0, 40.0], [60.0, 30.0, 90.0, 60.0]]),
              "labels": torch.tensor([1, 2]), "masks": mask}
    return image, target


# --------------------------------------------------------------------------- structure, as BoB's configs


# (detector, family) → BoB's stage IoUs, box loss and its weight, class-agnostic regression, box head, norm.
BOB_CONFIGS = {
    ("cascade_mask_rcnn", HIERARCHICAL): ((0.5, 0.6, 0.7), "giou", 10.0, False, FastRCNNConvFCHead, nn.BatchNorm2d),
    ("cascade_mask_rcnn", PLAIN): ((0.5, 0.5, 0.5), "smooth_l1", 1.0, False, FastRCNNConvFCHead, LayerNorm2d),
    ("cascade_rcnn", HIERARCHICAL): ((0.5, 0.6, 0.7), "smooth_l1", 1.0, True, TwoMLPHead, None),
    ("cascade_rcnn", PLAIN): ((0.5, 0.5, 0.5), "smooth_l1", 1.0, False, FastRCNNConvFCHead, LayerNorm2d),
}


@pytest.mark.parametrize(("detector", "backbone_id"), BOB_CONFIGS, ids=[f"{d}-{b}" for d, b in BOB_CONFIGS])
def test_the_cascade_has_bobs_three_stages(detector, backbone_id):
    ious, loss, loss_weight, agnostic, head_class, norm = BOB_CONFIGS[detector, backbone_id]
    masks = detector == "cascade_mask_rcnn"
    heads = detector_on(backbone_id, detector, masks, rois_per_image=512).roi_heads
    assert isinstance(heads, CascadeRoIHeads) and len(heads.stages) == 3
    assert all(isinstance(stage, RoIHeads) for stage in heads.stages)
    assert heads.settings.loss_weights == (1.0, 0.5, 0.25)
    assert [(s.proposal_matcher.high_threshold, s.proposal_matcher.low_threshold) for s in heads.stages] == [(i, i) for i in ious]
    assert not any(s.proposal_matcher.allow_low_quality_matches for s in heads.stages)
    for stage, stds in zip(heads.stages, STDS):
        assert stage.box_coder.weights == pytest.approx(tuple(1 / s for s in stds))
        assert (stage.fg_bg_sampler.batch_size_per_image, stage.fg_bg_sampler.positive_fraction) == (512, 0.25)
        assert isinstance(stage.box_head, head_class)
        norms = {type(m) for m in stage.box_head.modules() if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm))}
        assert norms == ({norm} if norm else set())
        assert stage.box_predictor.bbox_pred.out_features == (4 if agnostic else 4 * 3)  # 2 classes + background
        assert stage.has_mask() == masks
    assert (heads.settings.box_loss, heads.settings.box_loss_weight) == (loss, loss_weight)
    # Three distinct box heads (and mask heads): no stage shares another's weights.
    for part in ("box_head", "box_predictor", *(("mask_head", "mask_predictor") if masks else ())):
        weights = [next(getattr(stage, part).parameters()) for stage in heads.stages]
        assert len({w.data_ptr() for w in weights}) == 3


def test_the_switch_keeps_the_pyramid_and_rpn_and_swaps_only_the_roi_heads():
    cascade, single = (detector_on(HIERARCHICAL, name, True) for name in ("cascade_mask_rcnn", "mask_rcnn"))
    shared = {k: v.shape for k, v in cascade.state_dict().items() if not k.startswith("roi_heads.")}
    assert shared == {k: v.shape for k, v in single.state_dict().items() if not k.startswith("roi_heads.")}
    assert isinstance(single.roi_heads, RoIHeads) and single.roi_heads.proposal_matcher.high_threshold == 0.5
    for name in ("_pre_nms_top_n", "_post_nms_top_n", "nms_thresh"):
        assert getattr(cascade.rpn, name) == getattr(single.rpn, name)


def test_the_one_stage_switch_is_torchvisions_mask_rcnn():
    """``mask_rcnn`` equals torchvision's MaskRCNN built from the same pieces (as this project built it before
    the cascade): same initial weights from the same seed, same losses, same detections."""
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.models.detection.rpn import RPNHead
    from torchvision.ops import MultiScaleRoIAlign

    from bobench.detection.model import PyramidBackbone, anchor_generator

    ours = detector_on(HIERARCHICAL, "mask_rcnn", True, roi_align_aligned=False)  # torchvision's RoIAlign
    torch.manual_seed(0)
    backbone = random_backbone(HIERARCHICAL)
    pyramid = PyramidBackbone(backbone)
    anchors = anchor_generator(len(pyramid.level_names) + 1, backbone.feature_map_info()[0]["stride"])
    levels = pyramid.level_names
    reference = MaskRCNN(
        pyramid, min_size=64, max_size=96, image_mean=list(backbone.transform.mean), image_std=list(backbone.transform.std),
        rpn_anchor_generator=anchors, rpn_head=RPNHead(256, anchors.num_anchors_per_location()[0]),
        box_roi_pool=MultiScaleRoIAlign(levels, 7, 0),
        box_head=FastRCNNConvFCHead((256, 7, 7), [256] * 4, [1024], norm_layer=nn.BatchNorm2d),
        box_predictor=FastRCNNPredictor(1024, 3), box_batch_size_per_image=16,
        rpn_pre_nms_top_n_train=40, rpn_pre_nms_top_n_test=20, rpn_post_nms_top_n_train=20, rpn_post_nms_top_n_test=20,
        size_divisible=32, _skip_resize=True, mask_roi_pool=MultiScaleRoIAlign(levels, 14, 0),
        mask_head=MaskRCNNHeads(256, [256] * 4, 1), mask_predictor=MaskRCNNPredictor(256, 256, 3),
    )
    assert ours.state_dict().keys() == reference.state_dict().keys()
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in ours.state_dict().items())

    def settings(model) -> dict:
        heads, rpn, transform = model.roi_heads, model.rpn, model.transform
        return {
            "roi": (heads.proposal_matcher.high_threshold, heads.proposal_matcher.low_threshold,
                    heads.proposal_matcher.allow_low_quality_matches, heads.fg_bg_sampler.batch_size_per_image,
                    heads.fg_bg_sampler.positive_fraction, tuple(heads.box_coder.weights), heads.box_coder.bbox_xform_clip,
                    heads.score_thresh, heads.nms_thresh, heads.detections_per_img),
            "rpn": (rpn.proposal_matcher.high_threshold, rpn.proposal_matcher.low_threshold,
                    rpn.proposal_matcher.allow_low_quality_matches, rpn.fg_bg_sampler.batch_size_per_image,
                    rpn.fg_bg_sampler.positive_fraction, tuple(rpn.box_coder.weights), rpn._pre_nms_top_n,
                    rpn._post_nms_top_n, rpn.nms_thresh, rpn.score_thresh, rpn.min_size),
            "transform": (transform.min_size, transform.max_size, transform.image_mean, transform.image_std,
                          transform.size_divisible, transform.fixed_size, transform._skip_resize),
        }

    assert settings(ours) == settings(reference)
    image, target = one_image_target()
    results = []
    for model in (ours, reference):
        model.train()
        torch.manual_seed(2)
        losses = model([image], [target])
        model.eval()
        with torch.no_grad():
            results.append((losses, model([image])[0]))
    (our_losses, our_detections), (reference_losses, reference_detections) = results
    assert {k: float(v) for k, v in our_losses.items()} == {k: float(v) for k, v in reference_losses.items()}
    assert all(torch.equal(v, reference_detections[k]) for k, v in our_detections.items())


def test_a_box_only_detector_refuses_masks_and_names_are_checked():
    with pytest.raises(ValueError, match="cascade_rcnn has no mask head; use cascade_mask_rcnn"):
        detector_on(HIERARCHICAL, "cascade_rcnn", masks=True)
    with pytest.raises(ValueError, match="unknown detector 'cascade'"):
        detector_on(HIERARCHICAL, "cascade", masks=False)


# --------------------------------------------------------------------------- the losses and the cascade


def stage_with(weights: tuple[float, ...]) -> RoIHeads:
    return RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, weights, 0.05, 0.5, 100)


def test_the_box_losses_are_giou_on_decoded_boxes_and_smooth_l1_on_deltas():
    """Summed over positives, divided by every sampled RoI (mmdet's avg_factor), scaled by the config's weight."""
    torch.manual_seed(0)
    rois = torch.tensor([[10.0, 10, 50, 50], [0, 0, 30, 40], [5, 5, 8, 8]])
    objects = torch.tensor([[12.0, 8, 55, 52], [2, 1, 28, 45], [0, 0, 1, 1]])
    samples = StageSamples([rois], [torch.tensor([2, 1, 0])], [torch.tensor([0, 1, 0])], [objects], [torch.zeros(3, dtype=torch.bool)])
    deltas = torch.randn(3, 3 * 4) * 0.1  # per class: background, 1, 2
    stage = stage_with((20.0, 20.0, 10.0, 10.0))
    picked = torch.stack([deltas[0, 8:12], deltas[1, 4:8]])  # RoI 0 is class 2, RoI 1 class 1; RoI 2 background
    decoded = stage.box_coder.decode_single(picked, rois[:2])
    giou = cascade_module.CascadeSettings()
    expected = 10.0 * generalized_box_iou_loss(decoded, objects[:2], reduction="sum") / 3
    assert box_loss(deltas, samples, stage, giou) == pytest.approx(float(expected), rel=1e-6)
    smooth = cascade_module.CascadeSettings(box_loss="smooth_l1", box_loss_weight=1.0)
    targets = stage.box_coder.encode_single(objects[:2], rois[:2])
    expected = torch.nn.functional.smooth_l1_loss(picked, targets, beta=1.0, reduction="sum") / 3
    assert box_loss(deltas, samples, stage, smooth) == pytest.approx(float(expected), rel=1e-6)
    # Class-agnostic: one box per RoI, whatever its class.
    agnostic = deltas[:, :4]
    expected = torch.nn.functional.smooth_l1_loss(agnostic[:2], targets, beta=1.0, reduction="sum") / 3
    assert box_loss(agnostic, samples, stage, smooth) == pytest.approx(float(expected), rel=1e-6)


def test_each_stage_trains_on_the_previous_stages_regressed_rois(monkeypatch):
    """Stage k + 1 matches the RoIs stage k sampled, moved by its deltas, without the ground-truth boxes that
    were added, at its own IoU threshold; losses are weighted 1 / 0.5 / 0.25."""
    detector = detector_on(HIERARCHICAL, "cascade_mask_rcnn", True)
    calls = []
    original = cascade_module.sample_rois

    def spy(stage, proposals, targets):
        samples = original(stage, proposals, targets)
        calls.append((stage, [p.clone() for p in proposals], samples))
        return samples

    monkeypatch.setattr(cascade_module, "sample_rois", spy)
    image, target = one_image_target()
    detector.train()
    losses = detector([image], [target])
    assert [stage for stage, _, _ in calls] == list(detector.roi_heads.stages)
    for (_, _, before), (stage, given, after) in zip(calls, calls[1:]):
        kept = ~before.from_ground_truth[0]
        assert 0 < int(before.from_ground_truth[0].sum()) <= len(target["boxes"])
        assert len(given[0]) == int(kept.sum())
        assert (given[0] - before.rois[0][kept]).abs().sum() > 0  # regressed, not passed on
        # The positives of the next stage clear its own IoU threshold.
        positive = after.labels[0] > 0
        best = box_iou(after.rois[0][positive], target["boxes"]).max(dim=1).values
        assert (best >= stage.proposal_matcher.high_threshold).all()
    assert {name.rsplit("_", 1)[0] for name in losses if "stage" in name} == {"loss_classifier", "loss_box_giou", "loss_mask"}
    assert all(name.endswith(("stage1", "stage2", "stage3")) or name.startswith("loss_rpn") or name == "loss_objectness"
               for name in losses)


def test_stage_losses_are_weighted_one_half_quarter():
    """The same step (same sampling) with unit stage weights: each stage's terms scale by its weight."""
    detector = detector_on(HIERARCHICAL, "cascade_mask_rcnn", True)
    image, target = one_image_target()
    detector.train()

    def losses(weights):
        detector.roi_heads.settings = dataclasses.replace(detector.roi_heads.settings, loss_weights=weights)
        torch.manual_seed(5)
        return {name: float(value) for name, value in detector([image], [target]).items()}

    weighted, unit = losses((1.0, 0.5, 0.25)), losses((1.0, 1.0, 1.0))
    for stage, weight in zip((1, 2, 3), (1.0, 0.5, 0.25)):
        for term in ("loss_classifier", "loss_box_giou", "loss_mask"):
            assert unit[f"{term}_stage{stage}"] > 0
            assert weighted[f"{term}_stage{stage}"] == pytest.approx(weight * unit[f"{term}_stage{stage}"], rel=1e-5)


def test_inference_averages_the_stages_logits_and_keeps_the_last_stages_boxes(monkeypatch):
    detector = detector_on(PLAIN, "cascade_mask_rcnn", True)
    heads = detector.roi_heads
    outputs, final = [], {}
    box_outputs = heads.box_outputs

    def record_outputs(stage, features, rois, image_shapes):
        result = box_outputs(stage, features, rois, image_shapes)
        outputs.append((stage, [r.clone() for r in rois], *result))
        return result

    last = heads.stages[-1]
    postprocess = last.postprocess_detections

    def record_final(class_logits, deltas, rois, image_shapes):
        final.update(class_logits=class_logits, deltas=deltas, rois=rois)
        return postprocess(class_logits, deltas, rois, image_shapes)

    monkeypatch.setattr(heads, "box_outputs", record_outputs)
    monkeypatch.setattr(last, "postprocess_detections", record_final)
    detector.eval()
    image, _ = one_image_target()
    with torch.no_grad():
        (detection,) = detector([image])
    assert [stage for stage, *_ in outputs] == list(heads.stages)
    mean = torch.stack([logits for _, _, logits, _ in outputs]).mean(dim=0)
    assert torch.equal(final["class_logits"], mean)
    assert torch.equal(final["deltas"], outputs[-1][3]) and torch.equal(final["rois"][0], outputs[-1][1][0])
    # Each stage's input is the previous stage's RoIs moved by its deltas for the most likely class.
    for (stage, rois, logits, deltas), (_, moved, _, _) in zip(outputs, outputs[1:]):
        labels = logits[:, 1:].argmax(dim=1) + 1
        expected = cascade_module.regress(stage, rois, deltas, labels, [tuple(image.shape[-2:])])
        assert torch.allclose(moved[0], expected[0])
    assert detection["boxes"].dtype == torch.float32 and detection["masks"].shape[-2:] == (64, 96)


def test_masks_are_the_mean_of_every_stages_mask_head():
    detector = detector_on(HIERARCHICAL, "cascade_mask_rcnn", True)
    heads = detector.roi_heads.eval()
    features = {name: torch.randn(1, 256, 64 // 2**(i + 2), 96 // 2**(i + 2)) for i, name in enumerate(["0", "1", "2", "3"])}
    boxes, labels = [torch.tensor([[5.0, 5, 40, 30], [50, 20, 90, 60]])], [torch.tensor([1, 2])]
    with torch.no_grad():
        (mean,) = heads.mean_masks(features, boxes, labels, [(64, 96)])
        pooled = heads.stages[0].mask_roi_pool(features, boxes, [(64, 96)])
        each = [s.mask_predictor(s.mask_head(pooled)).sigmoid()[torch.arange(2), labels[0]] for s in heads.stages]
    assert mean.shape == (2, 1, 28, 28)
    assert torch.allclose(mean[:, 0], torch.stack(each).mean(dim=0), atol=1e-6)
    assert not torch.allclose(each[0], each[1])  # the stages' heads differ: the mean is not one head's


@pytest.mark.parametrize("detector", ["cascade_mask_rcnn", "mask_rcnn"])
def test_boxes_are_decoded_in_fp32_under_bf16_autocast(detector, monkeypatch):
    """torchvision decodes in the deltas' dtype: in bf16, proposals and detections land on a 4–8 px grid."""
    model = detector_on(HIERARCHICAL, detector, True)
    seen = {}
    forward = type(model.roi_heads).forward

    def record(self, features, proposals, image_shapes, targets=None):
        seen["proposals"] = proposals[0].dtype
        return forward(self, features, proposals, image_shapes, targets)

    monkeypatch.setattr(type(model.roi_heads), "forward", record)
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        (detection,) = model([torch.rand(3, 64, 96)])
    assert seen["proposals"] == torch.float32 and detection["boxes"].dtype == torch.float32


# --------------------------------------------------------------------------- weights


def test_the_state_dict_round_trips_into_a_fresh_cascade(tmp_path):
    trained = detector_on(PLAIN, "cascade_mask_rcnn", True, seed=0)
    with torch.no_grad():
        for stage in trained.roi_heads.stages:  # away from any initialisation
            stage.box_predictor.cls_score.bias.add_(torch.randn(3))
    torch.save(trained.state_dict(), tmp_path / "detector.pt")
    fresh = detector_on(PLAIN, "cascade_mask_rcnn", True, seed=1)
    assert any(not torch.equal(v, fresh.state_dict()[k]) for k, v in trained.state_dict().items())
    fresh.load_state_dict(torch.load(tmp_path / "detector.pt", weights_only=True))
    image, _ = one_image_target()
    trained.eval(), fresh.eval()
    with torch.no_grad():
        (a,), (b,) = trained([image]), fresh([image])
    assert set(a) == {"boxes", "labels", "scores", "masks"} and len(a["boxes"]) > 0
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --------------------------------------------------------------------------- the config switch


def schema_filled(*files: str) -> dict:
    config: dict = {}
    for name in files:
        update_config(config, yaml.safe_load((ROOT / "config" / name).read_text()))
    validate_against_schema(config, ROOT / "config" / "schemas" / "config.schema.yaml", "config")
    return config


def test_the_paper_config_runs_bobs_cascades():
    paper = schema_filled("paper.yaml")
    assert detection_recipe(paper, "detection")["detector"] == "cascade_mask_rcnn"
    assert detection_recipe(paper, "ood_detection")["detector"] == "cascade_rcnn"
    for name, task in (("mask_rcnn", "detection"), ("faster_rcnn", "ood_detection")):  # the switch
        config = schema_filled("paper.yaml")
        config[task]["detector"] = name
        assert detection_recipe(config, task)["detector"] == name
    bad = {**yaml.safe_load((ROOT / "config" / "paper.yaml").read_text()), "ood_detection": {"detector": "cascade_mask_rcnn"}}
    with pytest.raises(Exception, match="cascade_mask_rcnn"):
        validate_against_schema(bad, ROOT / "config" / "schemas" / "config.schema.yaml", "config")


@pytest.fixture(scope="module")
def digits_canvases(tmp_path_factory, dataset_registry):
    """The workflow's synthetic detection set, made from scikit-learn's digits."""
    from bobench.datasets import prepare_dataset
    from bobench.detection.sources import prepare_detection_dataset

    out = tmp_path_factory.mktemp("canvases")
    prepare_dataset("digits", {**dataset_registry["digits"], "splits": {"train": 40, "val": 10, "test": 20}},
                    out_dir=out / "digits", raw_dir=out / "raw")
    entry = {**dataset_registry["synthetic_objects"], "splits": {"train": 2, "val": 0, "test": 2},
             "source": {**dataset_registry["synthetic_objects"]["source"], "from_dataset": "digits",
                        "categories": ["0", "1"], "canvas_size": 64, "object_size": [16, 24]}}
    prepare_detection_dataset("canvases", entry, raw_dir=out / "raw", out_dir=out / "det",
                              prepared_dirs={"digits": str(out / "digits")}, log=logging.getLogger("test"))
    return out / "det" / "manifest.json"


@pytest.mark.parametrize(("task", "detector", "rows", "name"), [
    ("detection", "cascade_mask_rcnn", ["detection", "instance_segmentation"], "Cascade Mask R-CNN"),
    ("ood_detection", "cascade_rcnn", ["ood_detection"], "Cascade R-CNN"),
])
def test_a_training_step_scores_coco_metrics_and_each_row_names_its_detector(
        task, detector, rows, name, digits_canvases, backbone_registry, tmp_path):
    """The job of rule train_detector, one optimisation step, on the workflow's synthetic canvases."""
    recipe = {"settings": ["finetune"], "lrs": [1e-3], "bootstrap_resamples": 0, "detector": detector, "epochs": 1,
              "steps": [1], "warmup_iters": 1, "batch_size": 2, "micro_batch": 2, "augment_scale": 0.0625,
              "rois_per_image": 16, "proposals_per_image": 20, "precision": "fp32", "max_steps": 1}
    options, resamples = detector_recipe(recipe, task, "0.001")
    spec = feature_spec({**backbone_registry[HIERARCHICAL], "weights": {"source": "random", "seed": 0}})
    cells = detector_cells(HIERARCHICAL, spec, digits_canvases, [digits_canvases], options, task=task, setting="finetune",
                           dataset="canvases", checkpoint=tmp_path / "c.pt", bootstrap_resamples=resamples,
                           bootstrap={"n_boot": 0, "level": 0.9}, seed=0, device=CPU)
    assert [r.task_name for r in cells.records] == rows
    (predictions,) = cells.predictions.values()
    assert predictions and all(("segmentation" in p) == (task == "detection") for p in predictions)
    for record in cells.records:
        assert {m["metric"] for m in record.metrics} >= set(COCO_STATS)
        assert all(0.0 <= m["value"] <= 1.0 for m in record.metrics if m["metric"] in ("ap", "ap50", "ap75"))
        params = record.protocol_params
        assert (params["detector"], params["detector_name"], params["roi_heads"]["stages"]) == (detector, name, 3)
        assert params["roi_heads"]["loss_weights"] == (1.0, 0.5, 0.25)
        assert params["iterations"] == 1 and "loss_classifier_stage3" in params["history"][0]

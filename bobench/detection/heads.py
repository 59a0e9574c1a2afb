"""The RoI heads of each detector, per backbone family (docs/protocol.md §4, §6).

``detection.detector`` and ``ood_detection.detector`` name the detector: BoB's ``cascade_mask_rcnn``
(COCO) and ``cascade_rcnn`` (Sim10k → Cityscapes), or torchvision's one-stage ``mask_rcnn`` and
``faster_rcnn``. BoB's MMDetection configs (bob-detection and bob-ood-detection, ``configs/bob*/``)
give the cascade's stages per task and backbone family:

================  ====================  ==========================  ====================
..                COCO, hierarchical    COCO and Sim10k, plain ViT  Sim10k, hierarchical
================  ====================  ==========================  ====================
box head          4 conv + 1 fc, BN     4 conv + 1 fc, LayerNorm    2 fc
regression        per class             per class                   class-agnostic
box loss          GIoU × 10 (boxes)     smooth L1, β 1 (deltas)     smooth L1, β 1
stage IoU         0.5 / 0.6 / 0.7       0.5 / 0.5 / 0.5             0.5 / 0.6 / 0.7
================  ====================  ==========================  ====================

Every cascade weighs its stages' losses 1 / 0.5 / 0.25, with box-coder stds (0.1, 0.1, 0.2, 0.2),
(0.05, 0.05, 0.1, 0.1) and (0.033, 0.033, 0.067, 0.067); a COCO cascade has a mask head per stage
(mmdet repeats the config's one ``mask_head``). BoB's heads use SyncBN where BatchNorm is written here.
The ViTDet stages also set ``match_low_quality`` with ``min_pos_iou`` equal to the stage's threshold,
which can only move a RoI that clears the threshold from one object to another: left out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from timm.layers import LayerNorm2d  # LayerNorm over the channels of NCHW maps: ViTDet's norm
from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign

from bobench.detection.cascade import CascadeRoIHeads, CascadeSettings
from bobench.detection.roi import AlignedMultiScaleRoIAlign

BOX_FEATURES = 1024  # the box head's output (mmdet's fc_out_channels)
ONE_STAGE_BOX_STDS = (0.1, 0.1, 0.2, 0.2)  # the one-stage detectors' box coder: torchvision's weights 10, 10, 5, 5


@dataclass(frozen=True)
class DetectorKind:
    cascade: bool
    masks: bool  # can have a mask head


DETECTORS = {
    "cascade_mask_rcnn": DetectorKind(cascade=True, masks=True),
    "cascade_rcnn": DetectorKind(cascade=True, masks=False),
    "mask_rcnn": DetectorKind(cascade=False, masks=True),
    "faster_rcnn": DetectorKind(cascade=False, masks=False),
}


def detector_kind(detector: str) -> DetectorKind:
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; choose from {', '.join(DETECTORS)}")
    return DETECTORS[detector]


def detector_name(detector: str, masks: bool) -> str:
    """What the built detector is called: ``cascade_mask_rcnn`` without masks is a Cascade R-CNN."""
    if detector_kind(detector).cascade:
        return "Cascade Mask R-CNN" if masks else "Cascade R-CNN"
    return "Mask R-CNN" if masks else "Faster R-CNN"


def bob_cascade_settings(detector: str, plain: bool) -> CascadeSettings:
    """BoB's cascade stages for ``detector`` on a plain ViT (``plain``) or a hierarchical backbone (module table)."""
    if not detector_kind(detector).cascade:
        raise ValueError(f"{detector} has no cascade")
    if plain:
        return CascadeSettings(iou_thresholds=(0.5, 0.5, 0.5), box_loss="smooth_l1", box_loss_weight=1.0)
    if detector == "cascade_mask_rcnn":
        return CascadeSettings()
    return CascadeSettings(box_loss="smooth_l1", box_loss_weight=1.0, class_agnostic=True, box_head="2fc")


class FloatBoxPredictor(FastRCNNPredictor):
    """torchvision's box predictor computed in fp32: boxes decoded from bf16 deltas would sit on a 4–8 px grid
    at 1,000 px (torchvision decodes in the deltas' dtype)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


class ClassAgnosticBoxPredictor(nn.Module):
    """Class scores and one box per RoI (mmdet's ``reg_class_agnostic``), in fp32."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(start_dim=1).float()
        with torch.autocast(x.device.type, enabled=False):
            return self.cls_score(x), self.bbox_pred(x)


def roi_pool(level_names: list[str], strides: list[int], output_size: int, aligned: bool) -> nn.Module:
    """RoIAlign over the pyramid: BoB's (mmcv's ``aligned=True``, mmdet's levels: :mod:`bobench.detection.roi`)
    or torchvision's ``MultiScaleRoIAlign`` (``aligned=False``, every backbone level)."""
    if aligned:
        return AlignedMultiScaleRoIAlign(level_names, strides, output_size=output_size, sampling_ratio=0)
    return MultiScaleRoIAlign(level_names, output_size=output_size, sampling_ratio=0)


def build_roi_heads(detector: str, plain: bool, num_classes: int, masks: bool, level_names: list[str],
                    channels: int, rois_per_image: int, strides: list[int] | None = None,
                    roi_align_aligned: bool = True) -> nn.Module:
    """The RoI heads of ``detector`` for ``num_classes`` object classes on pyramid levels ``level_names``
    (``channels`` each, at ``strides``: 4, 8, … by default): one torchvision ``RoIHeads``, or BoB's cascade
    of three; every stage's box and mask heads pool with :func:`roi_pool`."""
    kind = detector_kind(detector)
    if masks and not kind.masks:
        raise ValueError(f"{detector} has no mask head; use {'cascade_mask_rcnn' if kind.cascade else 'mask_rcnn'}")
    norm = LayerNorm2d if plain else nn.BatchNorm2d
    strides = strides or [4 * 2**i for i in range(len(level_names))]
    box_pool = roi_pool(level_names, strides, 7, roi_align_aligned)
    mask_pool = roi_pool(level_names, strides, 14, roi_align_aligned)

    def conv_fc_head() -> nn.Module:
        return FastRCNNConvFCHead((channels, 7, 7), [channels] * 4, [BOX_FEATURES], norm_layer=norm)

    def stage(box_head: nn.Module, box_predictor: nn.Module, iou: float, coder_weights: tuple[float, ...]) -> RoIHeads:
        mask_parts: dict[str, Any] = {}
        if masks:
            mask_parts = dict(
                mask_roi_pool=mask_pool,
                mask_head=MaskRCNNHeads(channels, [channels] * 4, 1, norm_layer=norm if plain else None),
                mask_predictor=MaskRCNNPredictor(channels, channels, num_classes + 1),
            )
        return RoIHeads(box_pool, box_head, box_predictor, fg_iou_thresh=iou, bg_iou_thresh=iou,
                        batch_size_per_image=rois_per_image, positive_fraction=0.25, bbox_reg_weights=coder_weights,
                        score_thresh=0.05, nms_thresh=0.5, detections_per_img=100, **mask_parts)

    if not kind.cascade:
        weights = tuple(1.0 / std for std in ONE_STAGE_BOX_STDS)
        return stage(conv_fc_head(), FloatBoxPredictor(BOX_FEATURES, num_classes + 1), 0.5, weights)
    settings = bob_cascade_settings(detector, plain)
    stages = []
    for iou, weights in zip(settings.iou_thresholds, settings.box_coder_weights):
        box_head = TwoMLPHead(channels * 7 * 7, BOX_FEATURES) if settings.box_head == "2fc" else conv_fc_head()
        predictor_class = ClassAgnosticBoxPredictor if settings.class_agnostic else FloatBoxPredictor
        stages.append(stage(box_head, predictor_class(BOX_FEATURES, num_classes + 1), iou, weights))
    return CascadeRoIHeads(stages, settings)


def describe_roi_heads(detector: str, plain: bool, masks: bool) -> dict[str, Any]:
    """The RoI heads as a result row's ``protocol_params`` records them."""
    description: dict[str, Any] = {"name": detector_name(detector, masks), "masks": masks}
    if not detector_kind(detector).cascade:
        return {**description, "stages": 1, "iou_thresholds": [0.5], "loss_weights": [1.0],
                "box_stds": [list(ONE_STAGE_BOX_STDS)], "box_loss": "smooth_l1 (beta 1/9, torchvision)",
                "box_loss_weight": 1.0, "class_agnostic": False, "box_head": "4conv1fc"}
    settings = dataclasses.asdict(bob_cascade_settings(detector, plain))
    return {**description, "stages": len(settings["iou_thresholds"]), **settings}

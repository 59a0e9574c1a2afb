"""Cascade R-CNN's RoI stages on torchvision's pieces (docs/protocol.md §4, §6).

The cascade as MMDetection 2.x's ``CascadeRoIHead`` runs it (BoB's detectors):

* training: each stage matches its input boxes, plus the ground-truth boxes, to the objects at its own
  IoU threshold, samples RoIs (at most a quarter positive) and is scored on them, every loss term
  scaled by the stage's weight. The next stage's input is those sampled RoIs regressed by this stage
  (without gradient), each by its object's class (background RoIs by their most likely class), less the
  ground-truth boxes that were added;
* inference: each stage regresses the boxes of the one before by their most likely class; the class
  logits of all stages are averaged before the softmax; the boxes are the last stage's; each mask is
  the mean of every stage's mask head on those boxes.

Each stage is a torchvision :class:`~torchvision.models.detection.roi_heads.RoIHeads`, whose matcher,
sampler, box coder (with the stage's weights), heads and post-processing it uses; written here are the
loop over the stages, the stage's box loss (GIoU on decoded boxes, or smooth L1 on the deltas) and
the regression that feeds the next stage. Box deltas and class logits are taken in fp32, so boxes are
never decoded in bf16 (on a 4–8 px grid at 1,000 px).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_inference, maskrcnn_loss
from torchvision.ops import boxes as box_ops
from torchvision.ops import generalized_box_iou_loss

SMOOTH_L1_BETA = 1.0  # mmdet's SmoothL1Loss(beta=1.0) of BoB's cascade box heads


@dataclass(frozen=True)
class CascadeSettings:
    """The stages of one Cascade R-CNN; the defaults are BoB's COCO detector for hierarchical backbones."""

    iou_thresholds: tuple[float, ...] = (0.5, 0.6, 0.7)
    loss_weights: tuple[float, ...] = (1.0, 0.5, 0.25)
    # mmdet's target stds of each stage's box coder; torchvision's BoxCoder weights are their inverses.
    box_stds: tuple[tuple[float, float, float, float], ...] = (
        (0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))
    box_loss: str = "giou"  # "giou" on the decoded boxes or "smooth_l1" on the deltas
    box_loss_weight: float = 10.0
    class_agnostic: bool = False  # one box per RoI instead of one per class
    box_head: str = "4conv1fc"  # 4 convs + 1 fc, or "2fc" (mmdet's Shared2FCBBoxHead)

    def __post_init__(self) -> None:
        if not len(self.iou_thresholds) == len(self.loss_weights) == len(self.box_stds):
            raise ValueError("a cascade needs one IoU threshold, loss weight and box std per stage")
        if self.box_loss not in ("giou", "smooth_l1"):
            raise ValueError(f"box_loss must be 'giou' or 'smooth_l1', got {self.box_loss!r}")
        if self.box_head not in ("4conv1fc", "2fc"):
            raise ValueError(f"box_head must be '4conv1fc' or '2fc', got {self.box_head!r}")

    @property
    def box_coder_weights(self) -> tuple[tuple[float, float, float, float], ...]:
        return tuple(tuple(1.0 / std for std in stds) for stds in self.box_stds)


@dataclass
class StageSamples:
    """The RoIs a stage trains on, per image."""

    rois: list[Tensor]
    labels: list[Tensor]  # the matched object's class; 0 for background
    matched_idxs: list[Tensor]  # the matched object (0 for background: read it with labels)
    matched_boxes: list[Tensor]  # the matched object's box
    from_ground_truth: list[Tensor]  # the RoI is a ground-truth box added to the proposals


def sample_rois(stage: RoIHeads, proposals: list[Tensor], targets: list[dict[str, Tensor]]) -> StageSamples:
    """torchvision's ``select_training_samples``, also telling which sampled RoIs are ground-truth boxes."""
    gt_boxes = [t["boxes"].to(p.dtype) for t, p in zip(targets, proposals)]
    gt_labels = [t["labels"] for t in targets]
    counts = [len(p) for p in proposals]
    proposals = stage.add_gt_proposals(proposals, gt_boxes)
    matched_idxs, labels = stage.assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
    samples = StageSamples([], [], [], [], [])
    for keep, rois, idxs, image_labels, boxes, count in zip(
        stage.subsample(labels), proposals, matched_idxs, labels, gt_boxes, counts
    ):
        samples.rois.append(rois[keep])
        samples.labels.append(image_labels[keep])
        samples.matched_idxs.append(idxs[keep])
        samples.matched_boxes.append(boxes[idxs[keep]] if len(boxes) else torch.zeros_like(rois[keep]))
        samples.from_ground_truth.append(keep >= count)
    return samples


def deltas_for(deltas: Tensor, labels: Tensor) -> Tensor:
    """Each RoI's 4 box deltas for its label (class-specific regression), or its only 4 (class-agnostic)."""
    per_class = deltas.reshape(len(labels), -1, 4)
    if per_class.shape[1] == 1:
        return per_class[:, 0]
    return per_class[torch.arange(len(labels), device=labels.device), labels]


def box_loss(deltas: Tensor, samples: StageSamples, stage: RoIHeads, settings: CascadeSettings) -> Tensor:
    """The stage's box loss, summed over the positive RoIs and divided by all sampled RoIs (mmdet's
    ``avg_factor``, as torchvision's ``fastrcnn_loss``)."""
    labels = torch.cat(samples.labels)
    positive = torch.where(labels > 0)[0]
    rois = torch.cat(samples.rois)[positive]
    objects = torch.cat(samples.matched_boxes)[positive]
    predicted = deltas_for(deltas[positive], labels[positive])
    if settings.box_loss == "giou":
        boxes = stage.box_coder.decode_single(predicted, rois)
        loss = generalized_box_iou_loss(boxes, objects, reduction="sum")
    else:
        targets = stage.box_coder.encode_single(objects, rois)
        loss = F.smooth_l1_loss(predicted, targets, beta=SMOOTH_L1_BETA, reduction="sum")
    return settings.box_loss_weight * loss / max(len(labels), 1)


def regress(stage: RoIHeads, rois: list[Tensor], deltas: Tensor, labels: Tensor,
            image_shapes: list[tuple[int, int]]) -> list[Tensor]:
    """The RoIs of each image moved by the stage's deltas for ``labels``, clipped to the image."""
    boxes = stage.box_coder.decode_single(deltas_for(deltas, labels), torch.cat(rois))
    return [box_ops.clip_boxes_to_image(b, shape) for b, shape in zip(boxes.split([len(r) for r in rois]), image_shapes)]


def most_likely_class(class_logits: Tensor) -> Tensor:
    return class_logits[:, 1:].argmax(dim=1) + 1  # 0 is the background


class CascadeRoIHeads(nn.Module):
    """Cascade R-CNN's RoI heads (module docstring): a drop-in for torchvision's ``RoIHeads`` in a
    :class:`~torchvision.models.detection.generalized_rcnn.GeneralizedRCNN`."""

    def __init__(self, stages: list[RoIHeads], settings: CascadeSettings):
        super().__init__()
        if len(stages) != len(settings.iou_thresholds):
            raise ValueError(f"{len(stages)} stages for {len(settings.iou_thresholds)} IoU thresholds")
        self.stages = nn.ModuleList(stages)
        self.settings = settings

    def has_mask(self) -> bool:
        return self.stages[0].has_mask()

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if self.training:
            if targets is None:
                raise ValueError("targets are needed in training")
            self.stages[0].check_targets(targets)
            return [], self.losses(features, proposals, image_shapes, targets)
        return self.detect(features, proposals, image_shapes), {}

    def box_outputs(self, stage: RoIHeads, features: dict[str, Tensor], rois: list[Tensor],
                    image_shapes: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """(class logits, box deltas) of ``stage`` for ``rois``, in fp32."""
        class_logits, deltas = stage.box_predictor(stage.box_head(stage.box_roi_pool(features, rois, image_shapes)))
        return class_logits.float(), deltas.float()

    def losses(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
               targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        losses: dict[str, Tensor] = {}
        rois = [p.float() for p in proposals]
        last = len(self.stages) - 1
        for i, (stage, weight) in enumerate(zip(self.stages, self.settings.loss_weights)):
            samples = sample_rois(stage, rois, targets)
            class_logits, deltas = self.box_outputs(stage, features, samples.rois, image_shapes)
            labels = torch.cat(samples.labels)
            losses[f"loss_classifier_stage{i + 1}"] = weight * F.cross_entropy(class_logits, labels)
            losses[f"loss_box_{self.settings.box_loss}_stage{i + 1}"] = weight * box_loss(deltas, samples, stage, self.settings)
            if self.has_mask():
                losses[f"loss_mask_stage{i + 1}"] = weight * self.mask_loss(stage, features, samples, image_shapes, targets)
            if i < last:
                with torch.no_grad():
                    moved_by = torch.where(labels > 0, labels, most_likely_class(class_logits))
                    moved = regress(stage, samples.rois, deltas, moved_by, image_shapes)
                rois = [boxes[~added] for boxes, added in zip(moved, samples.from_ground_truth)]
        return losses

    def mask_loss(self, stage: RoIHeads, features: dict[str, Tensor], samples: StageSamples,
                  image_shapes: list[tuple[int, int]], targets: list[dict[str, Tensor]]) -> Tensor:
        """torchvision's mask loss on the stage's positive RoIs."""
        positive = [torch.where(labels > 0)[0] for labels in samples.labels]
        rois = [r[p] for r, p in zip(samples.rois, positive)]
        matched = [m[p] for m, p in zip(samples.matched_idxs, positive)]
        mask_logits = stage.mask_predictor(stage.mask_head(stage.mask_roi_pool(features, rois, image_shapes)))
        return maskrcnn_loss(mask_logits, rois, [t["masks"] for t in targets], [t["labels"] for t in targets], matched)

    def detect(self, features: dict[str, Tensor], proposals: list[Tensor],
               image_shapes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        rois = [p.float() for p in proposals]
        stage_logits = []
        for i, stage in enumerate(self.stages):
            class_logits, deltas = self.box_outputs(stage, features, rois, image_shapes)
            stage_logits.append(class_logits)
            if i < len(self.stages) - 1:
                rois = regress(stage, rois, deltas, most_likely_class(class_logits), image_shapes)
        mean_logits = torch.stack(stage_logits).mean(dim=0)
        if self.settings.class_agnostic:  # postprocess_detections reads one box per class
            deltas = deltas.repeat(1, mean_logits.shape[1])
        boxes, scores, labels = self.stages[-1].postprocess_detections(mean_logits, deltas, rois, image_shapes)
        detections = [{"boxes": b, "labels": c, "scores": s} for b, s, c in zip(boxes, scores, labels)]
        if self.has_mask():
            for detection, masks in zip(detections, self.mean_masks(features, boxes, labels, image_shapes)):
                detection["masks"] = masks
        return detections

    def mean_masks(self, features: dict[str, Tensor], boxes: list[Tensor], labels: list[Tensor],
                   image_shapes: list[tuple[int, int]]) -> list[Tensor]:
        """Each detection's mask probabilities, averaged over the stages' mask heads (mmdet's merge_aug_masks)."""
        mask_features = self.stages[0].mask_roi_pool(features, boxes, image_shapes)  # one pool, shared by the stages
        total: list[Tensor] | None = None
        for stage in self.stages:
            probabilities = maskrcnn_inference(stage.mask_predictor(stage.mask_head(mask_features)).float(), labels)
            total = list(probabilities) if total is None else [t + p for t, p in zip(total, probabilities)]
        return [t / len(self.stages) for t in total]

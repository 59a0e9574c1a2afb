"""Any registry backbone under a torchvision R-CNN: BoB's cascade or one stage (docs/protocol.md §4, §6).

``build_detector`` puts a :class:`~bobench.backbones.model.Backbone` under a
feature pyramid, torchvision's RPN and the RoI heads of :mod:`bobench.detection.heads`:

* hierarchical backbones (ResNet, ConvNeXt, SwinV2, MiDaS, EfficientNet, SD's
  UNet encoder): their stage maps (stride 4 … 32, or … 64 for SD) into a standard
  FPN (256 channels, one extra max-pooled level), box heads of 4 convs + 1 fc with
  BatchNorm (BoB's ``ConvFCBBoxHead``, SyncBN there; 2 fcs in BoB's OOD cascade);
* plain ViTs: ViTDet's simple feature pyramid on the last block (2× and 4×
  deconvolutions, identity, max-pool; strides 4 … 32) into an FPN whose convs
  carry LayerNorm, a 2-conv RPN head and LayerNorm box and mask heads (BoB's
  ``FPN_VITDET``, ``RPNHead_VITDET``, ``Shared4Conv1FCBBoxHead_VITDET``,
  ``FCNMaskHead_VITDET``).

What differs from BoB's MMDetection 2.x configs, and why:

* plain ViTs use global attention in every block (timm's ViT, position
  embeddings interpolated to the input), not ViTDet's 14×14 windows with a
  global block every third layer: timm's ``VisionTransformer`` has no windowed
  attention (``vision_transformer_relpos``' window is its position table, and
  ``vision_transformer_sam``, which has windows, is another model without a class
  token).

As BoB's configs, per backbone through the detection options: SwinV2 windows
(``window_size``, :func:`detection_spec`), BatchNorm of a fine-tuned backbone in
eval mode (``norm_eval``; BoB trains it for random-init backbones on COCO), the
stem and first stages frozen (``frozen_stages``: BoB's OOD-detection ResNets),
2,000 RPN proposals per image in training for hierarchical backbones and 1,000 for
plain ViTs (``train_proposals_per_image``) and RoIAlign with ``aligned=True`` on
mmdet's levels (``roi_align_aligned``, :mod:`bobench.detection.roi`).

The RPN's and box predictors' outputs are fp32 under bf16 autocast: torchvision
decodes boxes in the dtype of the deltas, which in bf16 puts proposals, ground-truth
targets and detections on a grid of 4–8 px at 1,000 px.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from timm.layers import LayerNorm2d  # LayerNorm over the channels of NCHW maps: ViTDet's norm
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from bobench.backbones.sizes import any_input_size_spec, constructor_arguments
from bobench.detection.heads import build_roi_heads

FPN_CHANNELS = 256


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's pyramid from one stride-``stride`` map: strides ``stride/4, stride/2, stride, 2·stride``."""

    def __init__(self, channels: int):
        super().__init__()
        self.scales = nn.ModuleList([
            nn.Sequential(
                nn.ConvTranspose2d(channels, channels // 2, 2, stride=2), LayerNorm2d(channels // 2), nn.GELU(),
                nn.ConvTranspose2d(channels // 2, channels // 4, 2, stride=2),
            ),
            nn.ConvTranspose2d(channels, channels // 2, 2, stride=2),
            nn.Identity(),
            nn.MaxPool2d(2),
        ])
        self.out_channels = [channels // 4, channels // 2, channels, channels]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [scale(x) for scale in self.scales]


class PyramidBackbone(nn.Module):
    """A registry backbone's maps → FPN levels ``'0'…'k'`` and ``'pool'`` (what torchvision's R-CNN takes).

    ``frozen`` freezes the whole backbone (the frozen setting); else ``frozen_stages`` > 0 freezes the stem and
    that many first stages (mmdet's ``frozen_stages``: BoB's OOD ResNets keep 1), their BatchNorm in eval mode
    too; ``norm_eval`` keeps every BatchNorm of the backbone in eval mode (mmdet's ``norm_eval``).
    """

    def __init__(self, backbone: Any, frozen: bool = False, norm_eval: bool = True, frozen_stages: int = 0):
        super().__init__()
        self.body = backbone.model
        self._feature_maps = backbone.feature_maps  # reads self.body (the same module)
        self.frozen, self.norm_eval = frozen, norm_eval
        info = backbone.feature_map_info()
        self.plain = backbone.is_plain()
        if self.plain:
            self.simple_pyramid = SimpleFeaturePyramid(info[0]["channels"])
            in_channels = self.simple_pyramid.out_channels
        else:
            self.simple_pyramid = None
            in_channels = [level["channels"] for level in info]
        self.fpn = FeaturePyramidNetwork(
            in_channels, FPN_CHANNELS, extra_blocks=LastLevelMaxPool(), norm_layer=LayerNorm2d if self.plain else None
        )
        self.out_channels = FPN_CHANNELS
        self.level_names = [str(i) for i in range(len(in_channels))]
        self.strides = [4 * 2**i for i in range(len(in_channels))] if self.plain else [level["stride"] for level in info]
        self.frozen_stages = frozen_stages
        if frozen:
            self.body.requires_grad_(False)
        elif frozen_stages:
            names = set(backbone.frozen_parameter_names(frozen_stages))
            for name, parameter in self.body.named_parameters():
                if name in names:
                    parameter.requires_grad_(False)
        self._frozen_norms = [
            module for module in self.body.modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm)
            and any(True for _ in module.parameters()) and not any(p.requires_grad for p in module.parameters())
        ]

    def train(self, mode: bool = True) -> PyramidBackbone:
        super().train(mode)
        if self.frozen:
            self.body.eval()  # frozen means frozen: no BatchNorm statistics move either
        elif self.norm_eval:
            for module in self.body.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        else:  # mmdet's _freeze_stages: a frozen stage's BatchNorm statistics stay too
            for module in self._frozen_norms:
                module.eval()
        return self

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self._feature_maps(x)
        if self.simple_pyramid is not None:
            maps = self.simple_pyramid(maps[0])
        return self.fpn(OrderedDict(zip(self.level_names, maps)))


def anchor_generator(n_levels: int, first_stride: int = 4) -> AnchorGenerator:
    """mmdet's anchors: 3 aspect ratios, one size per level, 8 × the level's stride."""
    sizes = tuple((8 * first_stride * 2**i,) for i in range(n_levels))
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * n_levels)


class FloatRPNHead(RPNHead):
    """torchvision's RPN head with fp32 outputs, so that proposals are decoded in fp32 (module docstring)."""

    def forward(self, x: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, deltas = super().forward(x)
        return [t.float() for t in logits], [t.float() for t in deltas]


def region_proposal_network(anchors: AnchorGenerator, head: RPNHead, proposals_per_image: int,
                            train_proposals_per_image: int | None = None) -> RegionProposalNetwork:
    """BoB's RPN (mmdet's ``RPNHead`` train_cfg, torchvision's defaults too): anchors with IoU ≥ 0.7 positive,
    < 0.3 negative, 256 sampled per image (half positive at most), NMS at 0.7 within each level. In training
    ``2 × proposals_per_image`` scored boxes per level go into the NMS and ``train_proposals_per_image`` are kept
    (BoB: 2,000 in, 2,000 kept for hierarchical backbones, 1,000 kept for the ViTDet configs); at test time
    ``proposals_per_image`` in and kept (BoB: 1,000). ``None``: as at test time."""
    kept_in_training = train_proposals_per_image or proposals_per_image
    return RegionProposalNetwork(
        anchors, head, fg_iou_thresh=0.7, bg_iou_thresh=0.3, batch_size_per_image=256, positive_fraction=0.5,
        pre_nms_top_n=dict(training=max(2 * proposals_per_image, kept_in_training), testing=proposals_per_image),
        post_nms_top_n=dict(training=kept_in_training, testing=proposals_per_image),
        nms_thresh=0.7,
    )


#: BoB's training proposals per image (``rpn_proposal.max_per_img``) per backbone family: the standard
#: ``_base_`` Cascade (Mask) R-CNN configs of the hierarchical backbones and the ViTDet configs of plain ViTs.
BOB_TRAIN_PROPOSALS = {"hierarchical": 2000, "plain": 1000}


def train_proposals(value: int | str, plain: bool) -> int:
    """``detection.train_proposals_per_image`` for a backbone: an integer, or ``bob`` (per family, as BoB)."""
    if value == "bob":
        return BOB_TRAIN_PROPOSALS["plain" if plain else "hierarchical"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"train_proposals_per_image must be a positive integer or 'bob', got {value!r}")
    return value


def build_detector(
    backbone: Any,
    num_classes: int,
    detector: str = "cascade_mask_rcnn",
    masks: bool = True,
    frozen: bool = False,
    norm_eval: bool = True,
    test_short_side: int = 800,
    test_max_side: int = 1333,
    rois_per_image: int = 512,
    proposals_per_image: int = 1000,
    train_proposals_per_image: int | str | None = None,
    roi_align_aligned: bool = True,
    frozen_stages: int = 0,
) -> GeneralizedRCNN:
    """``detector`` (a name of :data:`bobench.detection.heads.DETECTORS`) on ``backbone``, for ``num_classes``
    object classes, with a mask head per box stage if ``masks``.

    Images go in as float RGB in [0, 1] of any size; the backbone's own mean and std
    normalise them. Training images arrive already augmented (see
    :mod:`bobench.detection.data`), so the model does not resize them again; test
    images are resized by torchvision to ``test_short_side`` (at most ``test_max_side``).

    ``train_proposals_per_image``: RPN proposals kept per image in training (``bob``: BoB's per family; ``None``:
    ``proposals_per_image``); ``roi_align_aligned``: BoB's RoI pooling (:mod:`bobench.detection.roi`) or
    torchvision's; ``frozen_stages``: see :class:`PyramidBackbone`.
    """
    pyramid = PyramidBackbone(backbone, frozen=frozen, norm_eval=norm_eval, frozen_stages=frozen_stages)
    n_levels = len(pyramid.level_names)
    first_stride = 4 if pyramid.plain else backbone.feature_map_info()[0]["stride"]
    anchors = anchor_generator(n_levels + 1, first_stride)  # + the max-pooled level
    rpn_head = FloatRPNHead(FPN_CHANNELS, anchors.num_anchors_per_location()[0], conv_depth=2 if pyramid.plain else 1)
    kept = None if train_proposals_per_image is None else train_proposals(train_proposals_per_image, pyramid.plain)
    rpn = region_proposal_network(anchors, rpn_head, proposals_per_image, kept)
    roi_heads = build_roi_heads(detector, pyramid.plain, num_classes, masks, pyramid.level_names, FPN_CHANNELS,
                                rois_per_image, strides=pyramid.strides, roi_align_aligned=roi_align_aligned)
    transform = GeneralizedRCNNTransform(
        test_short_side, test_max_side, list(backbone.transform.mean), list(backbone.transform.std),
        size_divisible=32, _skip_resize=True,  # training images come resized by BoB's augmentation
    )
    return GeneralizedRCNN(pyramid, rpn, roi_heads, transform)


def detection_spec(spec: dict[str, Any], drop_path: float | None = None,
                   window_size: list[int] | None = None) -> dict[str, Any]:
    """A backbone registry entry adapted for detection: any input size, BoB's drop path and, for a SwinV2,
    BoB's windows.

    ``window_size`` (one per stage) rebuilds a timm SwinV2 with those windows, partitioned as mmdet's Swin does
    at any input size: every stage padded to whole windows and every other block shifted by half a window
    (timm's ``always_partition``; without it timm shrinks a window to its stage's size at the pretraining
    resolution and drops that stage's shift). Only buffers depend on the window (SwinV2's continuous position
    bias is an MLP of the relative coordinates, normalised by the pretraining windows of the timm model), so
    the weights load strictly as before.
    """
    adapted = any_input_size_spec(spec, drop_path)
    if window_size is None:
        return adapted
    architecture = adapted["architecture"]
    accepted = constructor_arguments(architecture["name"], architecture.get("kwargs", {})) \
        if architecture["library"] == "timm" else set()
    if not {"window_size", "always_partition"} <= accepted:
        raise ValueError(f"window_size is set for {architecture.get('name') or architecture.get('entry_point')}, "
                         "which is no timm model with per-stage windows (a SwinV2)")
    kwargs = {**architecture.get("kwargs", {}), "window_size": [int(w) for w in window_size], "always_partition": True}
    return {**adapted, "architecture": {**architecture, "kwargs": kwargs}}

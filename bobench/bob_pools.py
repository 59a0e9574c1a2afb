"""The backbones BoB ranked in each task: the z-score pools of ``ranking.pool: bob`` (docs/protocol.md §9).

Registry ids of the backbones that have a config in BoB's task repositories: the 27 fine-tuning YAMLs of
bob-classification (§3.2; their ImageNet classifiers are also the OOD-classification pool, §5, whose
repository lists no backbones of its own: a reconstruction), the COCO configs of bob-detection (§4, box and
mask AP alike), the Sim10k configs of bob-ood-detection (§6) and the 33 backbones of bob-retrieval's
``scripts_bb.sh`` (§7). Random-init baselines are listed where BoB ran them (detection only); whether they
join a pool's statistics stays ``ranking.exclude_random_from_stats``'s decision.

Every backbone of these lists is in the registry (docs/protocol.md §2.1); BoB's retrieval name
``sscd-resnet50_disc`` is SSCD's ResNeXt-101 release (``sscd_disc_large``), our ``sscd_rx101_disc``.
"""

from __future__ import annotations

CLASSIFICATION = frozenset({
    "sup_rn50_in1k", "sup_rn101_in1k", "sup_cnxt_t_in1k", "sup_cnxt_b_in1k", "sup_cnxt_b_in21k", "sup_cnxt_xl_in21k",
    "sup_swinv2_t_in1k", "sup_swinv2_b_in1k", "sup_swinv2_b_in21k_256", "sup_swinv2_b_in21k_384",
    # vit_{small,base}_patch16_224_im1k_ft.yaml: timm's default weights, the AugReg IN-21k→1k ones (§0 item 2).
    "sup_vit_s_in21k", "sup_vit_b_in21k",
    "dino_rn50", "dino_vit_s", "dino_vit_b", "mocov3_vit_s", "mocov3_vit_b", "mae_vit_b", "mae_vit_l", "vicreg_rn50",
    "vicregl_cnxt_xl", "clip_vit_b_laion", "clip_vit_l_laion", "clip_rn50_openai", "sd_v14", "midas_swinv2_t",
    "midas_swinv2_b",
})

_DETECTION_RANDOM_INIT = frozenset({
    "random_rn50", "random_rn101", "random_cnxt_t", "random_cnxt_b", "random_swinv2_t", "random_swinv2_b",
    "random_vit_s16", "random_vit_b16",
})

DETECTION = frozenset({
    "sup_rn50_in1k", "sup_rn101_in1k", "sup_cnxt_t_in1k", "sup_cnxt_b_in1k", "sup_cnxt_b_in21k",
    "sup_swinv2_t_in1k", "sup_swinv2_b_in1k", "sup_swinv2_b_in21k_256", "sup_swinv2_b_in21k_384",
    "sup_vit_s_in1k", "sup_vit_b_in1k",  # BoB's "in1k" ViTDets (DeiT weights there, §2.2)
    "dino_rn50", "dino_vit_s", "dino_vit_b", "mocov3_vit_s", "mocov3_vit_b", "mae_vit_b", "vicreg_rn50",
    "clip_vit_b_laion", "sd_v14", "midas_swinv2_t", "midas_swinv2_b", "sam_vit_b",
}) | _DETECTION_RANDOM_INIT

OOD_DETECTION = frozenset({
    "sup_vit_s_in1k", "sup_vit_b_in1k", "clip_vit_b_laion", "sup_cnxt_t_in1k", "sup_cnxt_b_in1k", "sup_cnxt_b_in21k",
    "dino_rn50", "dino_vit_s", "dino_vit_b", "mae_vit_b", "midas_swinv2_t", "midas_swinv2_b", "mocov3_vit_s",
    "mocov3_vit_b", "sup_rn50_in1k", "sup_rn101_in1k", "sup_swinv2_t_in1k", "sup_swinv2_b_in1k",
    "sup_swinv2_b_in21k_256", "sup_swinv2_b_in21k_384", "vicreg_rn50",
}) | _DETECTION_RANDOM_INIT

RETRIEVAL = frozenset({
    "sup_rn50_in1k", "sup_rn101_in1k", "sup_cnxt_s_in1k", "sup_cnxt_b_in1k", "sup_cnxt_s_in21k", "sup_cnxt_b_in21k",
    "sup_cnxt_xl_in21k", "sup_vit_s_in1k", "sup_vit_b_in1k", "sup_vit_s_in21k", "sup_vit_b_in21k", "sup_vit_l_in21k",
    "sup_swinv2_t_in1k", "sup_swinv2_b_in21k_256", "sup_swinv2_l_in21k_256", "sup_swinv2_b_in21k_384",
    "sup_swinv2_l_in21k_384", "dino_vit_s", "dino_vit_b", "clip_vit_b_laion", "clip_vit_l_laion", "clip_rn50_openai",
    "clip_rn101_openai", "clip_rn50x64_openai", "mocov3_vit_s", "mocov3_vit_b", "mae_vit_b", "mae_vit_l", "vicreg_rn50",
    "midas_swinv2_t", "midas_swinv2_b", "sscd_rn50_im", "sscd_rx101_disc",
})

#: Ranking task (bobench.config.TASKS) → the backbones BoB ranked in it.
BOB_POOLS: dict[str, frozenset[str]] = {
    "classification": CLASSIFICATION,
    "ood_classification": CLASSIFICATION,
    "detection": DETECTION,
    "instance_segmentation": DETECTION,
    "ood_detection": OOD_DETECTION,
    "retrieval": RETRIEVAL,
}

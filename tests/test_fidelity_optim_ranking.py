"""Fidelity to BoB, point by point: the frozen probe's optimiser is MAE's LARS (docs/protocol.md §3.3), and the
ranking's z-score pools are BoB's per-task backbone lists, with ImageNet linear evaluation counted once
(docs/protocol.md §9)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from bobench.backbones.model import create_backbone
from bobench.bob_pools import BOB_POOLS
from bobench.config import validate_against_schema
from bobench.jobs.finetune import finetune_recipe
from bobench.jobs.ranking import ranking_options
from bobench.ranking import RankingOptions, compute_ranking
from bobench.ranking_uncertainty import _z_matrix, sample_z_replicates
from bobench.tasks.finetune import FROZEN_PROBE_RECIPE, FinetuneOptions, attach_probe_head, finetune, mae_lars

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schemas" / "config.schema.yaml"


def resolved_config(name: str) -> dict:
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    validate_against_schema(config, SCHEMA, "config")
    return config


# --------------------------------------------------------------------------- MAE's LARS (§3.3)


def reference_lars_step(params: list[torch.Tensor], buffers: list[torch.Tensor], lr: float, weight_decay: float) -> None:
    """One step of LARS as MAE defines it (util/lars.py), written out here: a parameter of two or more dimensions
    gets weight decay added to its gradient and the result scaled by 0.001 × ||p|| / ||update|| (unscaled when
    either norm is zero); biases and norm parameters get neither. Then momentum 0.9: buf = 0.9 buf + update,
    p -= lr × buf."""
    with torch.no_grad():
        for p, buf in zip(params, buffers):
            update = p.grad.clone()
            if p.ndim > 1:
                update = update + weight_decay * p
                p_norm, u_norm = float(p.norm()), float(update.norm())
                if p_norm > 0 and u_norm > 0:
                    update = update * (0.001 * p_norm / u_norm)
            buf.mul_(0.9).add_(update)
            p.sub_(lr * buf)


def toy_model(seed: int) -> nn.Module:
    """Weight matrices, biases and LayerNorm parameters (nonzero, so that a trust ratio on them would show)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.BatchNorm1d(8, affine=False), nn.Linear(8, 3))
    with torch.no_grad():
        for module in model:
            if isinstance(module, (nn.Linear, nn.LayerNorm)):
                module.bias.normal_(0, 0.5)
        model[1].weight.normal_(1, 0.3)
    return model.double()


def toy_loss(model: nn.Module, step: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(100 + step)
    x = torch.randn(16, 6, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=generator)
    return nn.functional.cross_entropy(model(x), y)


@pytest.mark.parametrize("foreach", [False, True], ids=["single-tensor (CPU)", "multi-tensor (CUDA's default)"])
def test_the_probe_optimiser_steps_as_maes_lars(foreach):
    """Five steps of the project's optimiser and of MAE's definition from the same start, on the same batches,
    at the frozen probe's weight decay (0): the parameters agree to 1e-6 of their size (timm adds 1e-8 to
    the norm it divides by, MAE does not). timm has two implementations, picked by device; both are run."""
    ours, theirs = toy_model(0), toy_model(0)
    lr = 0.5
    optimizer = mae_lars(ours, lr, weight_decay=FROZEN_PROBE_RECIPE["weight_decay"])
    for group in optimizer.param_groups:
        group["foreach"] = foreach
    buffers = [torch.zeros_like(p) for p in theirs.parameters()]
    for step in range(5):
        optimizer.zero_grad()
        toy_loss(ours, step).backward()
        optimizer.step()
        theirs.zero_grad()
        toy_loss(theirs, step).backward()
        reference_lars_step(list(theirs.parameters()), buffers, lr, weight_decay=0.0)
    start = toy_model(0)
    for (name, a), b, initial in zip(ours.named_parameters(), theirs.parameters(), start.parameters()):
        assert not torch.equal(a, initial), f"{name} never moved"
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9, msg=name)


def test_the_trust_ratio_scales_a_weight_matrix_step_at_weight_decay_0_and_not_a_bias_step():
    linear = nn.Linear(5, 4).double()
    torch.manual_seed(1)
    with torch.no_grad():
        linear.weight.normal_(0, 0.01)
        linear.bias.normal_(0, 1.0)
    grad_w, grad_b = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    lr = 0.8

    def first_step(trust_ratio: bool) -> tuple[torch.Tensor, torch.Tensor]:
        model = nn.Linear(5, 4).double()
        model.load_state_dict(linear.state_dict())
        optimizer = mae_lars(model, lr, weight_decay=0.0, trust_ratio=trust_ratio)
        model.weight.grad, model.bias.grad = grad_w.clone(), grad_b.clone()
        optimizer.step()
        return model.weight.detach() - linear.weight.detach(), model.bias.detach() - linear.bias.detach()

    step_w, step_b = first_step(trust_ratio=True)
    ratio = 0.001 * linear.weight.detach().norm() / grad_w.norm()
    torch.testing.assert_close(step_w, -lr * ratio * grad_w, rtol=1e-6, atol=0.0)
    assert float(ratio) < 1e-4  # so the scaled step is a ten-thousandth of plain SGD's, or less
    torch.testing.assert_close(step_b, -lr * grad_b, rtol=1e-12, atol=0.0)
    # Without it (lars_trust_ratio: false) the weight matrix takes the plain momentum-SGD step.
    step_w, step_b = first_step(trust_ratio=False)
    torch.testing.assert_close(step_w, -lr * grad_w, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(step_b, -lr * grad_b, rtol=1e-12, atol=0.0)


def test_lars_without_the_trust_ratio_refuses_weight_decay():
    with pytest.raises(ValueError, match="weight_decay"):
        mae_lars(nn.Linear(3, 2), 0.1, weight_decay=0.05, trust_ratio=False)


def test_the_frozen_probe_trains_with_maes_lars_by_default(tmp_path):
    """The schema's (and so the paper config's) frozen probe takes the trust ratio; one step of the real engine
    leaves a checkpoint whose optimiser has MAE's two groups: the head's weight matrix adapted, its bias not."""
    options, _ = finetune_recipe(resolved_config("paper.yaml")["frozen_probe"], "frozen_probe")
    assert options.lars_trust_ratio is True and options.optimizer == "lars" and options.weight_decay == 0.0
    entry = {"architecture": {"library": "timm", "name": "test_resnet"}, "weights": {"source": "random", "seed": 0},
             "input": {"size": 32, "crop_pct": 1.0, "mean": [0.5] * 3, "std": [0.5] * 3}}
    backbone = create_backbone("tiny", entry)
    model = attach_probe_head(backbone.model, backbone.feature_dim, 3, seed=0)
    rng = np.random.default_rng(0)
    splits = {name: (rng.integers(0, 255, (n, 12, 12, 1)).astype(np.uint8), rng.integers(0, 3, n))
              for name, n in (("train", 16), ("val", 8), ("test", 8))}
    small = FinetuneOptions(**{**FROZEN_PROBE_RECIPE, "epochs": 1, "warmup_epochs": 0, "lr": 0.1, "batch_size": 16,
                               "micro_batch": 16, "eval_batch_size": 16, "precision": "fp32", "max_steps": 1})
    finetune(model, splits, 3, backbone.transform, small, tmp_path / "probe.pt", device=torch.device("cpu"))
    groups = torch.load(tmp_path / "probe.pt", weights_only=True)["optimizer"]["param_groups"]
    adapted = [(g["always_adapt"], g["weight_decay"], g["trust_coeff"], g["momentum"], len(g["params"])) for g in groups]
    assert adapted == [(True, 0.0, 0.001, 0.9, 1), (False, 0.0, 0.001, 0.9, 1)]


# --------------------------------------------------------------------------- BoB's z-score pools (§9)

# bob-classification's 27 fine-tuning YAMLs (model_configs/*_ft.yaml) → registry ids.
BOB_CLASSIFICATION_YAMLS = {
    "resnet50_im1k_ft": "sup_rn50_in1k", "resnet101_im1k_ft": "sup_rn101_in1k", "convnext_t_im1k_ft": "sup_cnxt_t_in1k",
    "convnext_b_im1k_ft": "sup_cnxt_b_in1k", "convnext_b_im21k_ft": "sup_cnxt_b_in21k",
    "convnext_xl_im1k_ft": "sup_cnxt_xl_in21k", "swin2_tiny_im1k_256_ft": "sup_swinv2_t_in1k",
    "swin2_base_im1k_w8256_ft": "sup_swinv2_b_in1k", "swin2_base_im21k_w16256_ft": "sup_swinv2_b_in21k_256",
    "swin2_base_im21k_w24384_ft": "sup_swinv2_b_in21k_384", "vit_small_patch16_224_im1k_ft": "sup_vit_s_in21k",
    "vit_base_patch16_224_im1k_ft": "sup_vit_b_in21k", "resnet50_dino_ft": "dino_rn50",
    "vit_small_patch16_224_dino_ft": "dino_vit_s", "vit_base_patch16_224_dino_ft": "dino_vit_b",
    "vit_small_224_moco_ft": "mocov3_vit_s", "vit_base_patch16_224_moco_ft": "mocov3_vit_b",
    "vit_base_patch16_224_mae_ft": "mae_vit_b", "vit_large_patch16_224_mae_ft": "mae_vit_l",
    "resnet50_vicreg_ft": "vicreg_rn50", "convnext_xl_vicreg_ft": "vicregl_cnxt_xl",
    "vit_base_patch16_224_clip_ft": "clip_vit_b_laion", "vit_large_patch14_224_clip_ft": "clip_vit_l_laion",
    "resnet50_clip_ft": "clip_rn50_openai", "sd_256_ft": "sd_v14", "midas_swin2_tiny_256_ft": "midas_swinv2_t",
    "midas_swin2_base_384_ft": "midas_swinv2_b",
}


def test_the_pools_are_bobs_backbone_lists_per_task():
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    registry = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())
    published = yaml.safe_load((ROOT / "config" / "reference" / "bob_retrieval_mrr_2023-05.yaml").read_text())
    assert len(BOB_CLASSIFICATION_YAMLS) == 27
    assert BOB_POOLS["classification"] == set(BOB_CLASSIFICATION_YAMLS.values())
    assert BOB_POOLS["ood_classification"] == BOB_POOLS["classification"]  # the ImageNet classifiers, tested on shifts
    # Detection: the paper config runs BoB's detectors plus the two ConvNeXt-S (a stated deviation, §4).
    assert BOB_POOLS["detection"] == set(paper["task_backbones"]["detection"]) - {"sup_cnxt_s_in1k", "sup_cnxt_s_in21k"}
    assert BOB_POOLS["instance_segmentation"] == BOB_POOLS["detection"]
    assert BOB_POOLS["ood_detection"] == set(paper["task_backbones"]["ood_detection"])
    # Retrieval: the 33 backbones of BoB's published MRR table (§8), the two SSCD descriptors included.
    # BoB's retrieval ConvNeXt-B IN-21k (published row convnext_base_in22ft1k) is sup_cnxt_b_in21k, whose
    # retrieval variant loads the IN-21k→1k weights BoB's retrieval did (docs/protocol.md §2.2).
    mapped = {ours for ours in published["backbones"].values() if ours}
    assert len(published["backbones"]) == 33 and BOB_POOLS["retrieval"] == mapped
    assert {"sscd_rn50_im", "sscd_rx101_disc"} <= BOB_POOLS["retrieval"] and "vicregl_cnxt_xl" in BOB_POOLS["classification"]
    for task, pool in BOB_POOLS.items():
        assert pool <= set(registry), task  # every backbone BoB ranked is in the registry...
        # ...and evaluated by the paper config in that task (detection's pools: their own task_backbones, above).
        runs = paper["task_backbones"].get({"ood_classification": "finetune", "classification": "finetune",
                                            "instance_segmentation": "detection"}.get(task, task), paper["backbones"])
        assert pool <= set(runs), task
    # SSCD ran in BoB's retrieval only: none of the paper's classification jobs builds it.
    for task in ("linear_probe", "finetune", "frozen_probe"):
        assert set(paper["task_backbones"][task]) == set(paper["backbones"]) - {"sscd_rn50_im", "sscd_rx101_disc"}, task
    # What the paper config adds (§2.1) is in no classification pool.
    extras = {"effnet_lite0_in1k", "effnet_lite1_in1k", "effnet_lite2_in1k", "sam_vit_b", "sup_swinv2_l_in21k_256",
              "sup_swinv2_l_in21k_384", "sup_cnxt_s_in1k", "sup_cnxt_s_in21k", "sup_vit_l_in21k", "clip_rn101_openai"}
    assert extras <= set(paper["backbones"]) and not extras & BOB_POOLS["classification"]


BOB = ["sup_rn50_in1k", "sup_cnxt_b_in21k", "clip_vit_b_laion", "dino_vit_s", "mae_vit_b"]  # in every pool below
EXTRAS = ["effnet_lite0_in1k", "sup_swinv2_l_in21k_256"]  # in no pool, but SwinV2-L is in retrieval's
SETTINGS = [("classification", "cifar100", "finetune"), ("retrieval", "cub200", "frozen"),
            ("detection", "coco2017", "finetune")]


def synthetic_results(backbones: list[str], seed: int = 0) -> pd.DataFrame:
    """A random primary value for each backbone in each of SETTINGS (its own, whoever else is in the table)."""
    rows = []
    for backbone in backbones:
        rng = np.random.default_rng([seed, sum(map(ord, backbone))])
        method = "none" if backbone.startswith("random_") else "supervised"
        for task, dataset, protocol in SETTINGS:
            rows.append({"backbone": backbone, "backbone_name": backbone, "family": "CNN", "method": method,
                         "n_params": 25_000_000, "pretrain_size": 1_000_000, "task": task, "dataset": dataset,
                         "protocol": protocol, "metric": "m", "value": float(rng.uniform(0, 1)), "primary": True})
    return pd.DataFrame(rows)


def point_z(ranking) -> pd.Series:
    return ranking.settings.set_index(["backbone", "task", "dataset", "protocol"])["z"].sort_index()


def test_extra_backbones_do_not_move_bobs_zscores_and_are_scored_against_bobs_pool():
    bob_pool = RankingOptions(pool="bob")
    full_table = synthetic_results(BOB + EXTRAS + ["random_rn50"])
    listed = [b in BOB_POOLS[t] for b, t in zip(full_table["backbone"], full_table["task"])]
    alone = point_z(compute_ranking(full_table[listed], bob_pool))
    assert len(alone) == 3 * len(BOB) + 2  # BoB's five everywhere, SwinV2-L in retrieval, random-init in detection
    with_extras = compute_ranking(full_table, bob_pool)
    z = point_z(with_extras)
    pd.testing.assert_series_equal(z.loc[alone.index], alone, check_exact=True)
    # With every backbone in the pool, the extras do move BoB's z-scores (so the check above could fail).
    everyone = point_z(compute_ranking(full_table, RankingOptions(pool="all")))
    assert not np.allclose(everyone.loc[alone.index], alone)
    # An extra is scored against the mean and std of the pool (BoB's backbones, no random-init), and ranked.
    for task, dataset, protocol in SETTINGS:
        in_setting = full_table[full_table["task"] == task].set_index("backbone")
        pool = in_setting.loc[[b for b in in_setting.index if b in BOB_POOLS[task] and b != "random_rn50"], "value"]
        assert len(pool) == len(BOB) + (task == "retrieval")
        for extra in EXTRAS:
            expected = (in_setting.at[extra, "value"] - pool.mean()) / pool.std(ddof=0)
            assert z.loc[(extra, task, dataset, protocol)] == pytest.approx(expected, rel=1e-12)
    overall = with_extras.overall.set_index("backbone")
    assert overall.loc[EXTRAS, "rank"].notna().all()
    settings = with_extras.settings.set_index(["backbone", "task"])["in_pool"]
    assert settings.loc[BOB].all() and not settings.loc[["effnet_lite0_in1k", "random_rn50"]].any()
    assert settings.loc[("sup_swinv2_l_in21k_256", "retrieval")] and not settings.loc[("sup_swinv2_l_in21k_256", "detection")]


def test_the_test_sample_bootstrap_uses_the_same_pool():
    """Replicates equal to the point values give back the point z-scores, extras included, only if the
    bootstrap's z-scores are made from the ranking's pool."""
    table = synthetic_results(BOB + EXTRAS + ["random_rn50"])
    options = RankingOptions(pool="bob")
    ranking = compute_ranking(table, options)
    replicates = pd.DataFrame([{"backbone": r.backbone, "task": r.task, "dataset": r.dataset, "protocol": r.protocol,
                                "metric": "m", "n_test": 50, "protocol_params": "{}", "replicates": [r.value] * 3}
                               for r in table.itertuples()])
    samples = sample_z_replicates(ranking.settings, replicates, options, {"random_rn50"}, n_boot=4)
    assert samples.resampled.all()
    matrix, _ = _z_matrix(ranking.settings)
    np.testing.assert_allclose(samples.z[2], matrix.to_numpy(dtype=float), rtol=1e-12)


def test_the_paper_config_ranks_with_bobs_pools_and_imagenet_linear_evaluation_once():
    config = resolved_config("paper.yaml")
    options, _ = ranking_options(config["ranking"], config["bootstrap"], seed=config["seed"])
    assert options.pool == "bob"
    assert options.exclude_settings == ("classification/imagenet/linear_probe", "classification/visda2017_synthetic/finetune")
    assert resolved_config("config.yaml")["ranking"]["pool"] == "all"  # the demo has no BoB backbone
    rows = []
    for backbone in BOB:
        for dataset, protocol in (("imagenet", "linear_probe"), ("imagenet", "frozen_probe"), ("cifar100", "linear_probe"),
                                  ("visda2017_synthetic", "finetune")):
            rows.append({"backbone": backbone, "backbone_name": backbone, "family": "CNN", "method": "supervised",
                         "n_params": 1, "pretrain_size": 1, "task": "classification", "dataset": dataset,
                         "protocol": protocol, "metric": "top1", "primary": True,
                         "value": float(np.random.default_rng(len(rows)).uniform())})
    settings = compute_ranking(pd.DataFrame(rows), options).settings
    ranked = set(map(tuple, settings[["dataset", "protocol"]].drop_duplicates().to_numpy()))
    assert ranked == {("imagenet", "frozen_probe"), ("cifar100", "linear_probe")}
    tasks = compute_ranking(pd.DataFrame(rows), options).tasks
    assert (tasks["n_settings"] == 2).all()


def test_a_malformed_excluded_setting_is_refused():
    with pytest.raises(ValueError, match="task/dataset/protocol"):
        RankingOptions(exclude_settings=("classification/imagenet",))
    with pytest.raises(ValueError, match="pool"):
        RankingOptions(pool="paper")

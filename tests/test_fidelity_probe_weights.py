"""Fidelity to BoB, point by point: the frozen probe's head, input and schedule (docs/protocol.md §3.3), and the
per-task weights BoB's code loaded (retrieval's IN-21k→1k ConvNeXt-B, detection's non-EMA ConvNeXt-T/B; §2.2)."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn
from torchvision import transforms

from bobench.backbones.converters import get_converter
from bobench.backbones.model import create_backbone
from bobench.backbones.probe_head import probe_head
from bobench.backbones.weights import read_state_dict
from bobench.config import VARIANT_TASKS, probe_spec, task_entry, validate_against_schema, variant_weights_task
from bobench.jobs.finetune import finetune_recipe, resolved_probe_head
from bobench.rehearsal.standin_weights import write_standin_weights
from bobench.rehearsal.standins import with_standin_weights
from bobench.tasks.finetune import FROZEN_PROBE_RECIPE, FinetuneOptions, attach_probe_head, finetune, mae_lr
from bobench.tasks.probe_input import MaeRandomResizedCrop, bob_probe_eval_transform, bob_probe_train_transform

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())
SCHEMA = ROOT / "config" / "schemas" / "config.schema.yaml"


def resolved_config(name: str) -> dict:
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    validate_against_schema(config, SCHEMA, "config")
    return config


# --------------------------------------------------------------------------- the probe's head (§3.3)

# The `model:` of each bob-classification YAML, i.e. the --model BoB's linear_probe.py creates, by registry id.
BOB_CLASSIFICATION_MODELS = {
    "sup_rn50_in1k": "resnet50", "sup_rn101_in1k": "resnet101", "sup_cnxt_t_in1k": "convnext_tiny",
    "sup_cnxt_b_in1k": "convnext_base", "sup_cnxt_b_in21k": "convnext_base_in22k",
    "sup_cnxt_xl_in21k": "convnext_xlarge_in22ft1k", "sup_swinv2_t_in1k": "swinv2_tiny_window8_256",
    "sup_swinv2_b_in1k": "swinv2_base_window8_256", "sup_swinv2_b_in21k_256": "swinv2_base_window12to16_192to256_22kft1k",
    "sup_swinv2_b_in21k_384": "swinv2_base_window12to24_192to384_22kft1k", "sup_vit_s_in21k": "vit_small_patch16_224",
    "sup_vit_b_in21k": "vit_base_patch16_224", "dino_rn50": "resnet50_dino", "dino_vit_s": "vit_small_patch16_224_dino",
    "dino_vit_b": "vit_base_patch16_224_dino", "mocov3_vit_s": "vit_small_moco", "mocov3_vit_b": "vit_base_moco",
    "mae_vit_b": "vit_base_patch16_224_mae", "mae_vit_l": "vit_large_patch16_224_mae", "vicreg_rn50": "resnet50_vicreg",
    "clip_vit_b_laion": "vit_base_patch16_224_clip_laion2b", "clip_vit_l_laion": "vit_large_patch14_224_clip_laion2b",
    "clip_rn50_openai": "resnet50_clip", "sd_v14": "stable_diffusion_v1", "midas_swinv2_t": "swin2_tiny_256_midas",
    "midas_swinv2_b": "swin2_base_384_midas",
}


def bobs_head(model_name: str) -> str:
    """linear_probe.py: `if "vit" in args.model or "swin" in args.model or "conv" in args.model:` BatchNorm +
    head; `elif "stable" in args.model:` the same on the UNet's head; otherwise the head alone."""
    if "vit" in model_name or "swin" in model_name or "conv" in model_name or "stable" in model_name:
        return "batchnorm"
    return "linear"


@pytest.mark.parametrize("backbone_id", sorted(BOB_CLASSIFICATION_MODELS))
def test_the_probe_head_is_the_one_bobs_rule_gives_bobs_model_name(backbone_id):
    assert probe_head(REGISTRY[backbone_id]) == bobs_head(BOB_CLASSIFICATION_MODELS[backbone_id])


def test_bobs_rule_on_each_timm_architecture_name_agrees_with_the_registry():
    """Backbones BoB never probed (EfficientNets, SAM, random-init twins, retrieval-only ones) get the head BoB's
    rule would give their timm architecture; entry points (SD) are checked above."""
    checked = 0
    for backbone_id, entry in REGISTRY.items():
        if entry["architecture"]["library"] == "timm":
            assert probe_head(entry) == bobs_head(entry["architecture"]["name"]), backbone_id
            checked += 1
    assert checked > 40


def test_the_registry_states_the_head_only_where_the_family_default_is_not_bobs():
    stated = {b for b, e in REGISTRY.items() if "probe_head" in e}
    assert stated == {b for b, e in REGISTRY.items() if e["architecture"].get("name", "").startswith("convnext")}
    assert {REGISTRY[b]["probe_head"] for b in stated} == {"batchnorm"}


@pytest.mark.parametrize("head", ["batchnorm", "linear"])
def test_the_probe_head_is_bobs_module(head):
    classifier = attach_probe_head(nn.Identity(), 16, 5, seed=0, head=head)
    if head == "batchnorm":
        norm, linear = classifier.head
        assert isinstance(norm, nn.BatchNorm1d) and not norm.affine and norm.eps == 1e-6
    else:
        linear = classifier.head
    assert isinstance(linear, nn.Linear) and (linear.in_features, linear.out_features) == (16, 5)
    assert torch.count_nonzero(linear.bias) == 0 and 0.005 < float(linear.weight.detach().std()) < 0.015  # trunc-normal std 0.01
    with pytest.raises(ValueError, match="probe head 'bn'"):
        attach_probe_head(nn.Identity(), 16, 5, seed=0, head="bn")


def test_the_paper_config_probes_with_bobs_head_input_and_schedule():
    options, image_size = finetune_recipe(resolved_config("paper.yaml")["frozen_probe"], "frozen_probe")
    assert (options.head, options.input, options.schedule, image_size) == ("bob", "bob", "mae", None)
    # The rule hands the job the registry's head; "bob" resolves to it, the other choices override it.
    assert resolved_probe_head("bob", probe_spec(REGISTRY["clip_rn50_openai"])) == "linear"
    assert resolved_probe_head("bob", probe_spec(REGISTRY["sup_cnxt_t_in1k"])) == "batchnorm"
    assert resolved_probe_head("batchnorm", probe_spec(REGISTRY["sup_rn50_in1k"])) == "batchnorm"
    # The fine-tuning recipe has no probe options.
    section = resolved_config("paper.yaml")["finetune"]
    recipe = {k: v for k, v in section.items() if k not in ("overrides", "dataset_overrides")}
    finetune_options, _ = finetune_recipe(recipe, "finetune")
    assert (finetune_options.head, finetune_options.input, finetune_options.schedule) == (None, None, "timm")


# --------------------------------------------------------------------------- the probe's input (§3.3)


def bobs_eval(size: int) -> transforms.Compose:
    """linear_probe.py's transform_val."""
    return transforms.Compose([
        transforms.Resize(int(size * 1.143), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(size), transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])


@pytest.mark.parametrize(("size", "resize"), [(224, 256), (256, 292), (384, 438), (448, 512)])
def test_the_probe_eval_transform_is_bobs(size, resize):
    transform = bob_probe_eval_transform(size)
    assert (transform.size, transform.resize_to, transform.interpolation) == (size, resize, "bicubic")
    assert transform.mean == (0.485, 0.456, 0.406) and transform.std == (0.229, 0.224, 0.225)
    # On an image whose short side is already the resize target the two pipelines agree to float precision.
    rng = np.random.default_rng(size)
    image = rng.integers(0, 256, (resize, resize + 37, 3), dtype=np.uint8)
    ours = transform(torch.from_numpy(image)[None])[0]
    theirs = bobs_eval(size)(Image.fromarray(image))
    assert ours.shape == theirs.shape == (3, size, size)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def maes_crop_params(width: int, height: int, scale: tuple, ratio: tuple) -> tuple[int, int, int, int]:
    """MAE's util/crop.py RandomResizedCrop.get_params, written out."""
    area = height * width
    target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
    log_ratio = torch.log(torch.tensor(ratio))
    aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
    w = int(round(math.sqrt(target_area * aspect_ratio)))
    h = int(round(math.sqrt(target_area / aspect_ratio)))
    w, h = min(w, width), min(h, height)
    i = torch.randint(0, height - h + 1, size=(1,)).item()
    j = torch.randint(0, width - w + 1, size=(1,)).item()
    return i, j, h, w


def test_the_probe_training_crop_is_maes():
    image = Image.new("RGB", (90, 40))
    for seed in range(50):
        torch.manual_seed(seed)
        ours = MaeRandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])
        torch.manual_seed(seed)
        assert ours == maes_crop_params(90, 40, (0.08, 1.0), (3 / 4, 4 / 3)), seed
    # An extreme ratio is clamped to the image, never replaced by a centre crop (torchvision's fallback).
    torch.manual_seed(0)
    i, j, h, w = MaeRandomResizedCrop.get_params(image, [1.0, 1.0], [4.0, 4.0])
    assert (h, w) == (30, 90) and i in range(11) and j == 0
    steps = bob_probe_train_transform(64).transforms
    assert [type(t).__name__ for t in steps] == ["MaeRandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert steps[0].size == (64, 64) and steps[0].interpolation == transforms.InterpolationMode.BICUBIC
    assert steps[0].scale == (0.08, 1.0) and steps[1].p == 0.5
    assert tuple(steps[3].mean) == (0.485, 0.456, 0.406) and tuple(steps[3].std) == (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- MAE's schedule (§3.3)


def maes_adjust_learning_rate(optimizer, epoch: float, args) -> float:
    """MAE's util/lr_sched.py, written out."""
    if epoch < args.warmup_epochs:
        lr = args.lr * epoch / args.warmup_epochs
    else:
        lr = args.min_lr + (args.lr - args.min_lr) * 0.5 * (
            1.0 + math.cos(math.pi * (epoch - args.warmup_epochs) / (args.epochs - args.warmup_epochs)))
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"] if "lr_scale" in group else lr
    return lr


def test_the_mae_schedule_is_maes_formula():
    args = SimpleNamespace(lr=0.8, min_lr=0.0, warmup_epochs=10, epochs=90)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    for epoch in np.linspace(0, 89.999, 997):
        expected = maes_adjust_learning_rate(optimizer, float(epoch), args)
        assert mae_lr(float(epoch), 0.8, 0.0, 10, 90) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert mae_lr(0.0, 0.8, 0.0, 10, 90) == 0.0 and mae_lr(10.0, 0.8, 0.0, 10, 90) == pytest.approx(0.8)


def test_the_probe_sets_maes_lr_before_every_step(tmp_path, monkeypatch):
    """Three epochs of four steps: the lr of each step is MAE's at epoch + step / 4 (warm-up from 0 over 2 epochs)."""
    from bobench.tasks import finetune as engine

    seen = []
    real_step = engine._train_step

    def recording_step(model, optimizer, *args):
        seen.append(optimizer.param_groups[0]["lr"])
        return real_step(model, optimizer, *args)

    monkeypatch.setattr(engine, "_train_step", recording_step)
    entry = {"architecture": {"library": "timm", "name": "test_resnet"}, "weights": {"source": "random", "seed": 0},
             "input": {"size": 32, "crop_pct": 1.0, "mean": [0.5] * 3, "std": [0.5] * 3}}
    backbone = create_backbone("tiny", entry)
    model = attach_probe_head(backbone.model, backbone.feature_dim, 3, seed=0, head="linear")
    rng = np.random.default_rng(0)
    splits = {name: (rng.integers(0, 255, (n, 12, 12, 3)).astype(np.uint8), rng.integers(0, 3, n))
              for name, n in (("train", 16), ("val", 4), ("test", 4))}
    options = FinetuneOptions(**{**FROZEN_PROBE_RECIPE, "epochs": 3, "warmup_epochs": 2, "lr": 0.4, "batch_size": 4,
                                 "micro_batch": 4, "eval_batch_size": 4, "precision": "fp32", "schedule": "mae"})
    finetune(model, splits, 3, bob_probe_eval_transform(32), options, tmp_path / "probe.pt", device=torch.device("cpu"),
             augmentation=bob_probe_train_transform(32))
    expected = [mae_lr(epoch + step / 4, 0.4, 0.0, 2, 3) for epoch in range(3) for step in range(4)]
    assert seen == pytest.approx(expected) and seen[0] == 0.0


# --------------------------------------------------------------------------- per-task weights (§2.2)


def test_retrieval_builds_the_in21k_to_1k_convnext_b_and_classification_the_in21k_one():
    entry = REGISTRY["sup_cnxt_b_in21k"]
    assert "retrieval" in VARIANT_TASKS
    assert task_entry(entry, "retrieval")["weights"] == {"source": "timm", "tag": "fb_in22k_ft_in1k"}  # convnext_base_22k_1k_224
    assert task_entry(entry, None)["weights"] == task_entry(entry, "detection")["weights"] == {"source": "timm", "tag": "fb_in22k"}
    assert variant_weights_task(entry, "retrieval") == "retrieval" and variant_weights_task(entry, "detection") is None
    # The rehearsal's stand-in for the variant lies under its task, apart from the entry's own.
    pointed = with_standin_weights({"sup_cnxt_b_in21k": entry}, "/standins")["sup_cnxt_b_in21k"]
    assert pointed["weights"]["standin_dir"] == "/standins"
    assert pointed["task_variants"]["retrieval"]["weights"]["standin_dir"] == "/standins/retrieval"


def test_the_retrieval_extraction_rule_builds_the_retrieval_variant():
    """Provenance follows the built entry: the rule hands the job the variant's spec and stand-in."""
    rule = (ROOT / "rules" / "retrieval.smk").read_text().split("rule extract_retrieval_features:")[1].split("\nrule ")[0]
    assert 'standin_weights(wc.backbone, "retrieval")' in rule
    assert 'task_backbone(wc.backbone, "retrieval")' in rule


@pytest.mark.parametrize(("backbone_id", "file"), [("sup_cnxt_t_in1k", "convnext_tiny_1k_224.pth"),
                                                   ("sup_cnxt_b_in1k", "convnext_base_1k_224.pth")])
def test_convnext_in1k_detectors_load_bobs_non_ema_release_file(backbone_id, file):
    entry = REGISTRY[backbone_id]
    assert entry["weights"] == {"source": "timm", "tag": "fb_in1k"}  # classification, retrieval: the EMA weights
    for task in ("detection", "ood_detection"):
        weights = task_entry(entry, task)["weights"]
        assert weights["url"] == f"https://dl.fbaipublicfiles.com/convnext/{file}"
        assert (weights["converter"], weights["state_dict_key"], weights["num_classes"]) == ("facebook_convnext", "model", 1000)
    assert variant_weights_task(entry, "ood_detection") == "detection"  # one download, one stand-in


def test_the_facebook_convnext_release_layout_loads_through_the_real_path(tmp_path):
    """A stand-in in FB's layout ({"model": ...}, downsample_layers / stages.i.j / dwconv / pwconv / norm / head)
    is fetched, verified, converted by timm's filter and loaded strictly (a small ConvNeXt, same code path)."""
    variant = copy.deepcopy(task_entry(REGISTRY["sup_cnxt_t_in1k"], "detection"))
    variant["architecture"] = {"library": "timm", "name": "convnext_atto"}
    manifest = write_standin_weights("sup_cnxt_t_in1k", variant, tmp_path, seed=0)
    path = tmp_path / yaml.safe_load(manifest.read_text())["files"][0]["path"]
    native = torch.load(path, weights_only=True)
    assert set(native) == {"model"}
    assert {"downsample_layers.0.0.weight", "stages.3.1.pwconv2.weight", "stages.0.0.gamma", "norm.weight",
            "head.weight"} <= set(native["model"])
    pointed = {**variant, "weights": {**variant["weights"], "standin_dir": str(tmp_path)}}
    backbone = create_backbone("sup_cnxt_t_in1k", pointed, keep_head=True)
    expected = get_converter("facebook_convnext")(read_state_dict(path, "model"), backbone.model)
    loaded = backbone.model.state_dict()
    assert set(loaded) == set(expected) and all(torch.equal(loaded[k], expected[k]) for k in loaded)
    assert backbone.provenance["standin"] is True and backbone.provenance["converter"] == "facebook_convnext"
    with pytest.raises(ValueError, match="already uses timm's names"):
        get_converter("facebook_convnext")(dict(loaded), backbone.model)


def test_a_task_variants_release_file_is_pinned_in_its_own_line(tmp_path, monkeypatch, capsys):
    import hashlib

    from bobench.backbones import pin
    from bobench.backbones import weights as weights_module

    registry = tmp_path / "backbones.yaml"
    registry.write_text(
        "a:\n  weights: {source: url, url: https://example.org/own.pth, sha256: unpinned}\n"
        "  task_variants:\n    detection: &v\n      weights:\n        source: url\n"
        "        url: https://example.org/det.pth\n        sha256: unpinned\n    ood_detection: *v\n"
    )
    assert pin.unpinned_variants(yaml.safe_load(registry.read_text())) == ["a:detection"]  # one file, two tasks
    monkeypatch.setenv("BOBENCH_WEIGHTS_DIR", str(tmp_path / "cache"))

    def fake_download(url, path, backbone_id):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(url.encode())

    monkeypatch.setattr(weights_module, "_download", fake_download)
    pin.main(["a:detection", "--registry", str(registry), "--write"])
    expected = hashlib.sha256(b"https://example.org/det.pth").hexdigest()
    assert f"a:detection: sha256 {expected}" in capsys.readouterr().out
    pinned = yaml.safe_load(registry.read_text())["a"]
    assert pinned["task_variants"]["ood_detection"]["weights"]["sha256"] == expected
    assert pinned["weights"]["sha256"] == "unpinned"  # the entry's own line is left alone

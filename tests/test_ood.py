"""OOD classification: the shifted test sets, the class masks, the plan and its config checks."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml

from bobench.config import ConfigError, check_config, load_registry, ood_plan, validate_against_schema
from bobench.ood import (
    CORRUPTION_SEVERITIES,
    SHIFTS,
    SINGLE_SHIFTS,
    apply_shift,
    class_subset,
    describe_sets,
    plan_ood_sets,
    restricted_probs,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "config" / "schemas"


@pytest.fixture(scope="module")
def images():
    """Smooth grey images with structure (a bright square on a gradient), like the demo data."""
    rng = np.random.default_rng(0)
    base = np.tile(np.linspace(40, 200, 28), (28, 1))
    out = np.repeat(base[None, ..., None], 6, axis=0)
    for i in range(6):
        top, left = rng.integers(2, 14, size=2)
        out[i, top : top + 10, left : left + 10] = 250
    return out.round().astype(np.uint8)


@pytest.mark.parametrize("shift", SHIFTS)
def test_shifts_keep_shape_and_dtype_and_are_deterministic(images, shift):
    severity = None if shift in SINGLE_SHIFTS else 3
    first = apply_shift(images, shift, severity, seed=0)
    assert first.dtype == np.uint8 and first.shape == images.shape
    assert np.array_equal(first, apply_shift(images, shift, severity, seed=0))
    assert not np.array_equal(first, images)
    rgb = np.repeat(images, 3, axis=-1)
    assert apply_shift(rgb, shift, severity, seed=0).shape == rgb.shape


@pytest.mark.parametrize("shift", sorted(CORRUPTION_SEVERITIES))
def test_corruptions_grow_with_severity(images, shift):
    """ImageNet-C's parameters: higher severities move the images further from the clean ones
    (step by step for noise and contrast; JPEG qualities and pixel grids can swap neighbours on a tiny image)."""
    distance = [np.abs(apply_shift(images, shift, s, seed=0).astype(float) - images).mean() for s in range(1, 6)]
    assert distance[-1] > distance[0] + 1, distance
    if shift in ("gaussian_noise", "contrast"):
        assert all(a <= b for a, b in zip(distance, distance[1:])), distance


def test_blur_is_scaled_from_imagenet_c_size():
    """ImageNet-C's sigmas are for 224 px: at 224 px severity 5 blurs with sigma 6."""
    import torch
    from torchvision.transforms.v2 import functional as TF

    image = np.zeros((1, 224, 224, 1), np.uint8)
    image[0, 100:124, 100:124] = 255
    ours = apply_shift(image, "gaussian_blur", 5, seed=0)
    x = torch.from_numpy(image).permute(0, 3, 1, 2).float()
    direct = TF.gaussian_blur(x, [37, 37], [6.0, 6.0]).round().clamp(0, 255).to(torch.uint8)
    assert np.array_equal(ours, direct.permute(0, 2, 3, 1).numpy())


def test_noise_depends_on_the_seed(images):
    assert not np.array_equal(apply_shift(images, "gaussian_noise", 2, 0), apply_shift(images, "gaussian_noise", 2, 1))


def test_invert_and_sketch(images):
    assert np.array_equal(apply_shift(apply_shift(images, "invert", None, 0), "invert", None, 0), images)
    flat = np.full((1, 16, 16, 1), 120, np.uint8)
    assert (apply_shift(flat, "sketch", None, 0) == 255).all()  # no edges: blank paper
    sketch = apply_shift(images, "sketch", None, 0)
    square_edge = sketch[:, 1:-1, 1:-1].min(axis=(1, 2, 3))
    assert (square_edge == 0).all()  # the square's outline is drawn black


@pytest.mark.parametrize(
    "shift, severity, message",
    [("fog", 1, "unknown shift 'fog'"), ("jpeg", None, "severity in 1..5"), ("jpeg", 6, "severity in 1..5"), ("invert", 2, "no severities")],
)
def test_bad_shift_requests_are_named(images, shift, severity, message):
    with pytest.raises(ValueError, match=message):
        apply_shift(images, shift, severity, 0)


def test_imagenet_a_and_r_masks_match_timms_published_indices():
    """The 200-class masks come from matching class names (wnids); they equal the published index lists."""
    info = resources.files("timm.data._info")
    imagenet = info.joinpath("imagenet_synsets.txt").read_text().split()
    assert len(imagenet) == 1000
    for name in ("imagenet_a", "imagenet_r"):
        synsets = info.joinpath(f"{name}_synsets.txt").read_text().split()
        published = [int(i) for i in info.joinpath(f"{name}_indices.txt").read_text().split()]
        mask = class_subset(imagenet, synsets, name)
        assert len(mask) == 200 and mask.tolist() == published


def test_class_subset_names_unknown_classes():
    with pytest.raises(ValueError, match=r"OOD set x: 2 class\(es\) unknown.*'d', 'e'"):
        class_subset(["a", "b", "c"], ["a", "d", "e"], "OOD set x")


def test_restricted_probs_renormalise_over_the_subset():
    logits = np.array([[5.0, 1.0, 0.0, 2.0], [0.0, 3.0, 1.0, 0.0]])
    probs = restricted_probs(logits, np.array([3, 1]))
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1)
    assert probs[0].argmax() == 0  # class 3 beats class 1; class 0's larger logit is masked away
    expected = np.exp([2.0, 1.0]) / np.exp([2.0, 1.0]).sum()
    assert np.allclose(probs[0], expected)
    assert np.allclose(restricted_probs(logits, None).sum(1), 1)


def test_plan_names_every_set():
    sets = plan_ood_sets("fmnist", ["imagenet_r"], ["sketch", "jpeg"], [1, 5])
    assert [s.set_id for s in sets] == ["imagenet_r", "fmnist:sketch", "fmnist:jpeg-1", "fmnist:jpeg-5"]
    shown = describe_sets(sets, {"fmnist": {"name": "F", "domain": "natural", "standin": True},
                                 "imagenet_r": {"name": "IN-R", "domain": "art"}})
    assert shown["fmnist:jpeg-5"] == {"name": "F, JPEG 5", "domain": "natural", "standin": True}  # a shift of a stand-in
    assert shown["imagenet_r"]["standin"] is False
    assert shown["imagenet_r"]["name"] == "IN-R"
    with pytest.raises(ValueError, match="unknown shift"):
        plan_ood_sets("fmnist", [], ["snow"], [1])


# --------------------------------------------------------------------------- config


@pytest.fixture(scope="module")
def registries():
    backbones = load_registry(ROOT / "config/backbones.yaml", SCHEMAS / "backbones.schema.yaml", "backbone registry")
    datasets = load_registry(ROOT / "config/datasets.yaml", SCHEMAS / "datasets.schema.yaml", "dataset registry")
    return backbones, datasets


@pytest.fixture()
def demo_config():
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    validate_against_schema(config, SCHEMAS / "config.schema.yaml", "config")
    return config


def test_demo_plan(demo_config, registries):
    plan = ood_plan(demo_config)
    assert list(plan) == ["fashion_mnist"]
    assert len(plan["fashion_mnist"]) == 2 + 2 * 5  # sketch, invert; two corruptions × five severities


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: (c["tasks"].remove("finetune"), c.pop("task_datasets")), "'finetune' must be listed too"),
        (lambda c: c["ood"]["sets"].append({"trained_on": "digits", "shifts": ["invert"]}), r"ood.sets\[1\].trained_on"),
        (lambda c: c["ood"]["sets"].append({"trained_on": "fashion_mnist"}), "listed more than once"),
        (lambda c: c["ood"]["sets"][0].__setitem__("datasets", ["imagenet_z"]), "unknown dataset 'imagenet_z'"),
        (lambda c: c["ood"]["sets"][0].__setitem__("datasets", ["digits"]), "not an OOD test set"),
    ],
)
def test_bad_ood_config_is_named(demo_config, registries, mutate, message):
    config = copy.deepcopy(demo_config)
    mutate(config)
    with pytest.raises(ConfigError, match=message):
        check_config(config, *registries)

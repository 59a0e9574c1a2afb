"""Every registry entry: builds, produces pooled features of the documented size, has the
reference parameter count, and resolves its weights download up to the network call."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from bobench.backbones.model import create_backbone
from bobench.backbones.weights import WeightsError

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())

# Feature extractor parameters (classifier / projection removed, except where the registry says
# features.output: head) and feature size per architecture. Counts in millions from
# docs/protocol.md §2.2 (computed there with an older timm), or, marked "timm", from timm itself
# where the page gives no reference.
REFERENCE = {
    "resnet50": (23.5, 2048), "resnet101": (42.5, 2048),
    "convnext_tiny": (27.8, 768), "convnext_small": (49.5, 768), "convnext_base": (87.6, 1024),
    "convnext_xlarge": (348.1, 2048),
    "swinv2_tiny_window8_256": (27.6, 768), "swinv2_tiny_window16_256": (27.6, 768), "swinv2_base_window8_256": (86.9, 1024),
    "swinv2_base_window12to16_192to256": (86.9, 1024), "swinv2_base_window12to24_192to384": (86.9, 1024),
    "swinv2_large_window12to16_192to256": (195.2, 1536), "swinv2_large_window12to24_192to384": (195.2, 1536),
    "vit_small_patch16_224": (21.7, 384), "vit_base_patch16_224": (85.8, 768), "vit_large_patch16_224": (303.3, 1024),
    "vit_base_patch16_clip_224": (85.8, 768), "vit_large_patch14_clip_224": (303.2, 1024),
    # timm: CLIP ResNets keep their attention pool with its output projection (features.output: head),
    # as BoB's wrapper does: CLIP's image embedding.
    "resnet50_clip": (38.32, 1024), "resnet101_clip": (56.26, 512), "resnet50x64_clip": (420.38, 1024),
    # timm: SAM's image encoder with its neck.
    "samvit_base_patch16": (89.67, 256),
    "tf_efficientnet_lite0": (3.37, 1280), "tf_efficientnet_lite1": (4.14, 1280), "tf_efficientnet_lite2": (4.81, 1280),
    # Counted from diffusers' own SD v1 models below: VAE encoder + quant_conv + UNet without its decoder half.
    "bobench.backbones.stable_diffusion:stable_diffusion_encoder": (None, 1280),
    # timm trunk + SSCD's projection (2,048 → 512 / 1,024; GeM has no parameter), its L2-normalised descriptor.
    "bobench.backbones.sscd:sscd_descriptor(resnet50)": (24.56, 512),
    "bobench.backbones.sscd:sscd_descriptor(resnext101_32x4d)": (44.23, 1024),
}


def architecture_key(entry: dict) -> str:
    arch = entry["architecture"]
    if arch["library"] == "timm":
        return arch["name"]
    trunk = arch.get("kwargs", {}).get("trunk")
    return f"{arch['entry_point']}({trunk})" if trunk else arch["entry_point"]


def sd_encoder_reference_params() -> float:
    """Millions of parameters of SD v1's encoder half, counted on diffusers' full models."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from bobench.backbones.stable_diffusion import UNET_CONFIG, VAE_CONFIG

    with torch.device("meta"):
        vae, unet = AutoencoderKL(**VAE_CONFIG), UNet2DConditionModel(**UNET_CONFIG)
    count = lambda modules: sum(p.numel() for m in modules for p in m.parameters())  # noqa: E731
    return (count([vae.encoder, vae.quant_conv, unet]) - count([unet.up_blocks, unet.conv_norm_out, unet.conv_out])) / 1e6


# Blocks of the plain ViTs that are not ViT-B sized (BoB's frozen_stages for ViTDet = depth).
REFERENCE_DEPTH = {"vit_large_patch16_224": 24, "vit_large_patch14_clip_224": 24}


def random_twin(entry: dict) -> dict:
    return {**entry, "weights": {"source": "random", "seed": 0}}


@pytest.mark.parametrize("backbone_id", sorted(REGISTRY))
def test_entry_builds_with_documented_features_and_size(backbone_id):
    entry = REGISTRY[backbone_id]
    expected_params, expected_dim = REFERENCE[architecture_key(entry)]
    if expected_params is None:
        expected_params = sd_encoder_reference_params()
    backbone = create_backbone(backbone_id, random_twin(entry))
    assert abs(backbone.n_params / 1e6 - expected_params) <= 0.01 * expected_params, backbone.n_params
    assert backbone.feature_dim == expected_dim
    assert backbone.transform.size == entry["input"]["size"]
    image = torch.randint(0, 256, (1, 32, 32, 3), dtype=torch.uint8)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        features = backbone.model(backbone.transform(image))
    assert features.shape == (1, expected_dim)
    assert torch.isfinite(features.float()).all()

    # Multi-scale maps for detection: four stride-4…32 maps for CNNs and hierarchical ViTs,
    # the last block (stride = patch size) for plain ViTs, five (4…64) for SD's VAE + UNet encoder.
    # SSCD's descriptors (retrieval only, as BoB) expose no stages: detection would refuse them by name.
    if entry.get("algorithm") == "SSCD":
        with pytest.raises(NotImplementedError, match=f"{backbone_id}: the model exposes no feature_info"):
            backbone.stage_indices()
        return
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        maps = backbone.feature_maps(backbone.transform(image))
    expected_maps = backbone.feature_map_info()
    size = entry["input"]["size"]
    if entry["family"] == "ViT":
        assert len(maps) == 1 and expected_maps[0]["stride"] in (14, 16)
    elif entry["family"] == "UNet":
        assert [m["stride"] for m in expected_maps] == [4, 8, 16, 32, 64]
    else:
        assert [m["stride"] for m in expected_maps] == [4, 8, 16, 32]
    for feature_map, info in zip(maps, expected_maps, strict=True):
        assert feature_map.shape == (1, info["channels"], math.ceil(size / info["stride"]), math.ceil(size / info["stride"]))

    # BoB's frozen_stages: 4 for CNNs and Swin, one per block for plain ViTs; all of them freeze everything.
    n_stages = len(backbone.stage_indices())
    expected_stages = {"ViT": REFERENCE_DEPTH.get(architecture_key(entry), 12), "UNet": 5}.get(entry["family"], 4)
    assert n_stages == expected_stages
    all_names = [name for name, _ in backbone.model.named_parameters()]
    assert backbone.frozen_parameter_names(n_stages) == all_names
    first_stage = backbone.frozen_parameter_names(1)
    assert all_names[0] in first_stage and 0 < len(first_stage) < len(all_names)


class NetworkCall(Exception):
    """Raised where the download would start."""


HUB_ENTRIES = sorted(b for b, e in REGISTRY.items() if e["weights"]["source"] == "timm")


@pytest.mark.parametrize("backbone_id", HUB_ENTRIES)
def test_hub_entry_reaches_the_download_of_its_pinned_tag(backbone_id, monkeypatch):
    import timm.models._hub as timm_hub

    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs.get("revision")))
        raise NetworkCall(repo_id)

    monkeypatch.setattr(timm_hub, "hf_hub_download", fake_download)
    entry = REGISTRY[backbone_id]
    with pytest.raises(NetworkCall):
        create_backbone(backbone_id, entry)
    arch, tag = entry["architecture"]["name"], entry["weights"]["tag"]
    assert calls[0][0] == f"timm/{arch}.{tag}"
    assert calls[0][2] == entry["weights"].get("revision")  # the pinned commit, where there is one
    assert calls[0][1] in ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin")


URL_ENTRIES = sorted(b for b, e in REGISTRY.items() if e["weights"]["source"] == "url")


@pytest.mark.parametrize("backbone_id", URL_ENTRIES)
def test_url_entry_reaches_the_download_of_its_release_file(backbone_id, monkeypatch, tmp_path):
    from bobench.backbones import weights as weights_module

    calls = []

    def fake_download(url, path, backbone_id):
        calls.append((url, path))
        raise NetworkCall(url)

    monkeypatch.setenv("BOBENCH_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setattr(weights_module, "_download", fake_download)
    entry = REGISTRY[backbone_id]
    with pytest.raises(NetworkCall):
        create_backbone(backbone_id, entry)
    url = entry["weights"]["url"]
    assert url.startswith("https://")
    assert calls == [(url, tmp_path / backbone_id / url.rsplit("/", 1)[1])]


HF_HUB_ENTRIES = sorted(b for b, e in REGISTRY.items() if e["weights"]["source"] == "hf_hub")


@pytest.mark.parametrize("backbone_id", HF_HUB_ENTRIES)
def test_hf_hub_entry_reaches_the_download_at_its_pinned_revision(backbone_id, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs.get("revision")))
        raise NetworkCall(repo_id)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    weights = REGISTRY[backbone_id]["weights"]
    with pytest.raises(WeightsError, match=f"could not fetch .* of {weights['repo']} at revision {weights['revision']}"):
        create_backbone(backbone_id, REGISTRY[backbone_id])
    first_file = next(iter(weights["files"].values()))
    assert calls == [(weights["repo"], first_file, weights["revision"])]


def test_every_entry_records_what_table_1_needs():
    for backbone_id, entry in REGISTRY.items():
        assert entry["family"] in ("CNN", "ViT", "hierarchical ViT", "UNet"), backbone_id
        assert (entry["pretrain_size"] == 0) == (entry["method"] == "none"), backbone_id
        assert "size" in entry.get("input", {}), backbone_id

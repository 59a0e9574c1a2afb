"""The Stable Diffusion backbone reproduces diffusers' and transformers' own models exactly.

Small configurations of the same architectures keep this fast; the full-size
model is built in tests/test_zoo.py.
"""

from __future__ import annotations

import pytest
import torch

from bobench.backbones.converters import get_converter
from bobench.backbones.stable_diffusion import LATENT_SCALE, StableDiffusionEncoder, prompt_tokens
from bobench.backbones.weights import WeightsError, load_strict

TINY_VAE = {"block_out_channels": (32, 64, 64, 64), "layers_per_block": 1}
TINY_UNET = {"block_out_channels": (32, 64, 64, 64), "layers_per_block": 1, "cross_attention_dim": 32}
TINY_TEXT = {
    "vocab_size": 49408, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
    "num_attention_heads": 4, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "projection_dim": 32,
}
PROMPT = "image classification"


@pytest.fixture(scope="module")
def source():
    """diffusers' VAE and UNet and transformers' CLIP text encoder, randomly initialised."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from bobench.backbones.stable_diffusion import UNET_CONFIG, VAE_CONFIG

    torch.manual_seed(1)
    vae = AutoencoderKL(**{**VAE_CONFIG, **TINY_VAE}).eval()
    unet = UNet2DConditionModel(**{**UNET_CONFIG, **TINY_UNET}).eval()
    text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_TEXT)).eval()
    native = {
        **{f"vae.{k}": v for k, v in vae.state_dict().items()},
        **{f"unet.{k}": v for k, v in unet.state_dict().items()},
        **{f"text_encoder.{k}": v for k, v in text_encoder.state_dict().items()},
    }
    return vae, unet, text_encoder, native


def tiny_encoder() -> StableDiffusionEncoder:
    return StableDiffusionEncoder(prompt=PROMPT, vae_config=TINY_VAE, unet_config=TINY_UNET, text_config=TINY_TEXT).eval()


def test_prompt_is_tokenised_as_sd_v1_does():
    tokens = prompt_tokens(PROMPT)
    # <|startoftext|> image classification <|endoftext|>, padded with <|endoftext|> to 77.
    assert tokens.shape == (1, 77)
    assert tokens[0, :4].tolist() == [49406, 2867, 26612, 49407]
    assert (tokens[0, 4:] == 49407).all()


@torch.inference_mode()
def test_converter_reproduces_the_diffusers_pipeline_exactly(source):
    vae, unet, text_encoder, native = source
    target = tiny_encoder()
    load_strict(target, get_converter("stable_diffusion_encoder")(native, target), origin="sd")

    x = torch.rand(2, 3, 64, 64) * 2 - 1
    captured = {}
    hooks = [
        unet.mid_block.register_forward_hook(lambda m, i, o: captured.__setitem__("mid", o)),
        vae.encoder.down_blocks[1].register_forward_hook(lambda m, i, o: captured.__setitem__("vae", o)),
        *[
            unet.down_blocks[i].downsamplers[0].register_forward_hook(
                lambda m, i_, o, i=i: captured.__setitem__(f"unet{i}", i_[0])
            )
            for i in range(3)
        ],
    ]
    latent = vae.encode(x).latent_dist.mean * LATENT_SCALE
    context = text_encoder(prompt_tokens(PROMPT)).last_hidden_state.expand(2, -1, -1)
    unet(latent, 0, encoder_hidden_states=context)
    for hook in hooks:
        hook.remove()

    assert torch.equal(target.context, text_encoder(prompt_tokens(PROMPT)).last_hidden_state)
    assert torch.equal(target(x), captured["mid"].mean(dim=(2, 3)))
    maps = target.forward_intermediates(x)
    expected = [captured["vae"], captured["unet0"], captured["unet1"], captured["unet2"], captured["mid"]]
    assert [m.shape[1] for m in maps] == [info["num_chs"] for info in target.feature_info]
    for ours, theirs in zip(maps, expected, strict=True):
        assert torch.equal(ours, theirs)


def test_legacy_vae_attention_names_load(source):
    """VAE files saved before diffusers 0.14 name the attention projections query/key/value/proj_attn."""
    *_, native = source
    legacy = {}
    for key, tensor in native.items():
        if key.startswith("vae.") and ".attentions." in key:
            for new, old in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
                key = key.replace(f".{new}.", f".{old}.")
        legacy[key] = tensor
    assert any(".proj_attn." in key for key in legacy)
    target = tiny_encoder()
    load_strict(target, get_converter("stable_diffusion_encoder")(legacy, target), origin="sd legacy")


def test_renamed_key_fails_naming_it(source):
    *_, native = source
    renamed = dict(native)
    renamed["unet.mid_block.resnets.0.conv1.weight_renamed"] = renamed.pop("unet.mid_block.resnets.0.conv1.weight")
    target = tiny_encoder()
    with pytest.raises(WeightsError, match=r"missing keys: unet.mid_block.resnets.0.conv1.weight"):
        load_strict(target, get_converter("stable_diffusion_encoder")(renamed, target), origin="sd")

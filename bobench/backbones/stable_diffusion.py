"""Stable Diffusion v1 as a vision backbone: the VAE encoder and the UNet's encoder half.

BoB's recipe (``bob-classification: models/stable_diff.py``): encode the image
with the VAE (latent × 0.18215), run the UNet's input blocks and middle block at
timestep 0, conditioned on a fixed prompt embedded by the frozen CLIP text
encoder, and mean-pool the middle block's output. The modules are diffusers' and
transformers' own; this file only wires their encoder halves together.

The prompt embedding is a constant of the backbone, so it is stored as the
``context`` buffer rather than as a text encoder: :func:`prompt_context`
computes it from a text encoder's weights (at build time from a randomly
initialised one; from the checkpoint's when real weights are loaded, see the
``stable_diffusion_encoder`` converter). Deterministic features: the VAE
posterior's mean is used where sampling would add noise.

Multi-scale maps for detection (``forward_intermediates``), as BoB's
``SDEncoder_v1_feat`` feeds its FPN: the VAE encoder at stride 4 (256 channels),
each UNet input level before its downsampling (320 / 640 / 1280 channels at
strides 8 / 16 / 32) and the middle block (1280 at stride 64).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

LATENT_SCALE = 0.18215  # SD v1's latent scaling factor
TEXT_LENGTH = 77
END_OF_TEXT = 49407  # CLIP's <|endoftext|>: SD v1's tokenizer pads with it

# SD v1.x configurations (CompVis/stable-diffusion-v1-4: vae/, unet/, text_encoder/config.json).
VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
    "block_out_channels": (128, 256, 512, 512), "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4, "act_fn": "silu", "sample_size": 512,
}
UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "cross_attention_dim": 768,
    "block_out_channels": (320, 640, 1280, 1280), "attention_head_dim": 8, "norm_num_groups": 32,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "flip_sin_to_cos": True, "freq_shift": 0, "downsample_padding": 1,
}
TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": TEXT_LENGTH, "hidden_act": "quick_gelu",
    "projection_dim": 768,
}

# Parts of the diffusers models that are not the encoder: dropped from the backbone.
VAE_DECODER_PREFIXES = ("decoder.", "post_quant_conv.")
UNET_DECODER_PREFIXES = ("up_blocks.", "conv_norm_out.", "conv_out.")


def prompt_tokens(prompt: str) -> torch.Tensor:
    """CLIP BPE ids of ``prompt``, padded to 77 with <|endoftext|> as SD v1's tokenizer does.

    open_clip ships the CLIP vocabulary, so this works offline; it pads with 0,
    which is replaced here (the UNet attends to every position, padding included).
    """
    import open_clip

    tokens = open_clip.get_tokenizer("ViT-L-14")([prompt])[0]
    end = int((tokens == END_OF_TEXT).nonzero()[0])
    tokens[end + 1 :] = END_OF_TEXT
    return tokens.unsqueeze(0)


def build_text_encoder(text_config: dict[str, Any] | None = None) -> nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**(text_config or TEXT_CONFIG))).eval()


@torch.no_grad()
def prompt_context(text_encoder: nn.Module, prompt: str) -> torch.Tensor:
    """The UNet's cross-attention context: the text encoder's last hidden state for ``prompt``."""
    if next(text_encoder.parameters()).is_meta:  # shapes only (e.g. counting parameters)
        return torch.empty(1, TEXT_LENGTH, text_encoder.config.hidden_size, device="meta")
    return text_encoder(prompt_tokens(prompt)).last_hidden_state.float()


class StableDiffusionEncoder(nn.Module):
    """Image (N, 3, S, S) normalised to [-1, 1] → pooled UNet middle-block features (N, 1280)."""

    def __init__(
        self,
        prompt: str = "image classification",
        timestep: int = 0,
        vae_config: dict[str, Any] | None = None,
        unet_config: dict[str, Any] | None = None,
        text_config: dict[str, Any] | None = None,
    ):
        super().__init__()
        from diffusers import AutoencoderKL, UNet2DConditionModel

        vae = AutoencoderKL(**{**VAE_CONFIG, **(vae_config or {})})
        unet = UNet2DConditionModel(**{**UNET_CONFIG, **(unet_config or {})})
        self.prompt, self.timestep, self.text_config = prompt, timestep, text_config
        self.vae_encoder, self.quant_conv = vae.encoder, vae.quant_conv
        self.unet = unet
        for name in ("up_blocks", "conv_norm_out", "conv_act", "conv_out"):
            delattr(self.unet, name)  # the decoder half is not part of the backbone
        self.register_buffer("context", prompt_context(build_text_encoder(text_config), prompt))

        vae_channels = vae.config.block_out_channels
        unet_channels = unet.config.block_out_channels
        self.num_features = unet_channels[-1]
        # timm-style description of the levels forward_intermediates returns.
        self.feature_info = [
            {"num_chs": vae_channels[1], "reduction": 4, "module": "vae_encoder.down_blocks.1"},
            *[
                {"num_chs": unet_channels[i], "reduction": 8 * 2**i, "module": f"unet.down_blocks.{i}"}
                for i in range(len(unet_channels) - 1)
            ],
            {"num_chs": unet_channels[-1], "reduction": 8 * 2 ** (len(unet_channels) - 1), "module": "unet.mid_block"},
        ]

    def _latent(self, x: torch.Tensor, maps: list[torch.Tensor] | None = None) -> torch.Tensor:
        encoder = self.vae_encoder  # diffusers' Encoder.forward, with the stride-4 map kept
        h = encoder.conv_in(x)
        for i, block in enumerate(encoder.down_blocks):
            h = block(h)
            if i == 1 and maps is not None:
                maps.append(h)
        h = encoder.conv_out(encoder.conv_act(encoder.conv_norm_out(encoder.mid_block(h))))
        mean, _ = self.quant_conv(h).chunk(2, dim=1)  # the posterior's mean (no sampling noise)
        return mean * LATENT_SCALE

    def _unet_encoder(self, latent: torch.Tensor, maps: list[torch.Tensor] | None = None) -> torch.Tensor:
        unet = self.unet  # UNet2DConditionModel.forward up to and including the middle block
        timestep = torch.full((latent.shape[0],), self.timestep, device=latent.device)
        emb = unet.time_embedding(unet.time_proj(timestep).to(latent.dtype))
        context = self.context.expand(latent.shape[0], -1, -1).to(latent.dtype)
        h = unet.conv_in(latent)
        for block in unet.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, residuals = block(hidden_states=h, temb=emb, encoder_hidden_states=context)
            else:
                h, residuals = block(hidden_states=h, temb=emb)
            if maps is not None:
                maps.append(residuals[-2] if block.downsamplers is not None else h)
        return unet.mid_block(h, emb, encoder_hidden_states=context)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._unet_encoder(self._latent(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=(2, 3))

    def forward_intermediates(
        self, x: torch.Tensor, indices: list[int] | None = None, intermediates_only: bool = True
    ) -> list[torch.Tensor]:
        """The maps of ``feature_info`` (all, or those at ``indices``), as timm's method returns them."""
        if not intermediates_only:
            raise NotImplementedError("only intermediates are returned")
        maps: list[torch.Tensor] = []
        latent = self._latent(x, maps)
        unet_maps: list[torch.Tensor] = []
        mid = self._unet_encoder(latent, unet_maps)
        maps += unet_maps[: len(self.feature_info) - 2] + [mid]
        return maps if indices is None else [maps[i] for i in indices]


def stable_diffusion_encoder(**kwargs: Any) -> StableDiffusionEncoder:
    """Registry entry point (``architecture.entry_point``)."""
    return StableDiffusionEncoder(**kwargs)

"""Tiny random stand-ins for the files IC-Light relighting reads, in their real formats.

- ``write_tiny_sd15``: an SD1.5-architecture single-file checkpoint (UNet, VAE, CLIP text encoder) at
  a tenth of the width, written with the original (LDM) key names, like a checkpoint in ComfyUI's
  models/checkpoints. The diffusers/transformers models it was made from are returned as the reference.
- ``write_tiny_iclight``: an IC-Light-style offset for that UNet, diffusers key names, conv_in widened
  to ``channels`` inputs (12 = fbc, 8 = fc); or with LDM names (``diffusion_model.*``) as ComfyUI
  IC-Light packs keep it.
- ``write_tiny_tokenizer``: a CLIP BPE tokenizer folder (vocab.json + merges.txt) of the 512 byte tokens.

The key mapping below is the inverse of diffusers' single-file conversion for SD1.x (the tables of
diffusers' scripts/convert_diffusers_to_original_stable_diffusion.py), written out here so the tests
make real LDM files without any downloaded checkpoint.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from comfy_harmovid.relight.loading import sd15_configs
from comfy_harmovid.relight.tokenizer import END, START, _byte_characters

UNET_WIDTH = 32  # SD1.5: 320
VAE_WIDTH = 32  # SD1.5: 128
TEXT_WIDTH = 64  # SD1.5: 768
TEXT_VOCABULARY = 49408  # SD1.5's, so ComfyUI's real tokenizer works with the tiny text encoder too


def tiny_configs() -> dict:
    return sd15_configs(unet_width=UNET_WIDTH, vae_width=VAE_WIDTH, text_width=TEXT_WIDTH, text_layers=2,
                        text_mlp=2 * TEXT_WIDTH, vocabulary=TEXT_VOCABULARY)


# -- diffusers -> LDM key names ---------------------------------------------------------------------------


def _unet_layer_map():
    pairs = [("time_embed.0.", "time_embedding.linear_1."), ("time_embed.2.", "time_embedding.linear_2."),
             ("input_blocks.0.0.", "conv_in."), ("out.0.", "conv_norm_out."), ("out.2.", "conv_out."),
             ("middle_block.1.", "mid_block.attentions.0.")]
    for i in range(4):
        for j in range(2):
            pairs.append((f"input_blocks.{3 * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if i < 3:
                pairs.append((f"input_blocks.{3 * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        for j in range(3):
            pairs.append((f"output_blocks.{3 * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if i > 0:
                pairs.append((f"output_blocks.{3 * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < 3:
            pairs.append((f"input_blocks.{3 * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
            pairs.append((f"output_blocks.{3 * i + 2}.{1 if i == 0 else 2}.", f"up_blocks.{i}.upsamplers.0."))
    for j in range(2):
        pairs.append((f"middle_block.{2 * j}.", f"mid_block.resnets.{j}."))
    return pairs


UNET_RESNET_PARTS = [("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("out_layers.0.", "norm2."),
                     ("out_layers.3.", "conv2."), ("emb_layers.1.", "time_emb_proj."), ("skip_connection.", "conv_shortcut.")]


def unet_to_ldm(weights: dict, prefix: str = "model.diffusion_model.") -> dict:
    converted = {}
    layers = _unet_layer_map()
    for key, value in weights.items():
        new = key
        for ldm, diffusers in layers:
            if new.startswith(diffusers):
                new = ldm + new[len(diffusers):]
                break
        if "resnets" in key:
            for ldm, diffusers in UNET_RESNET_PARTS:
                new = new.replace(diffusers, ldm)
        converted[prefix + new] = value
    return converted


def _vae_map():
    pairs = [("nin_shortcut.", "conv_shortcut."), ("norm_out.", "conv_norm_out."), ("mid.attn_1.", "mid_block.attentions.0.")]
    for i in range(4):
        for j in range(2):
            pairs.append((f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}."))
        if i < 3:
            pairs.append((f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."))
            pairs.append((f"up.{3 - i}.upsample.", f"up_blocks.{i}.upsamplers.0."))
        for j in range(3):
            pairs.append((f"decoder.up.{3 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}."))
    for i in range(2):
        pairs.append((f"mid.block_{i + 1}.", f"mid_block.resnets.{i}."))
    return pairs


VAE_ATTENTION_PARTS = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")]


def vae_to_ldm(weights: dict) -> dict:
    converted = {}
    pairs = _vae_map()
    for key, value in weights.items():
        new = key
        for ldm, diffusers in pairs:
            new = new.replace(diffusers, ldm)
        if "attentions" in key:
            for ldm, diffusers in VAE_ATTENTION_PARTS:
                new = new.replace(diffusers, ldm)
            if value.ndim == 2:  # LDM's attention projections are 1x1 convolutions
                value = value[:, :, None, None]
        converted["first_stage_model." + new] = value
    return converted


def text_to_ldm(weights: dict) -> dict:
    return {"cond_stage_model.transformer.text_model." + key.removeprefix("text_model."): value
            for key, value in weights.items() if not key.endswith("position_ids")}


# -- the files ------------------------------------------------------------------------------------------


def _randomized(model, seed: int, scale: float = 0.05):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    return model.eval()


def tiny_models(seed: int = 0):
    """(unet, vae, text_encoder): the tiny SD1.5-architecture models, random but fixed by ``seed``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = tiny_configs()
    torch.manual_seed(seed)
    unet = _randomized(UNet2DConditionModel.from_config(configs["unet"]), seed)
    vae = _randomized(AutoencoderKL.from_config(configs["vae"]), seed + 1)
    text = _randomized(CLIPTextModel(CLIPTextConfig(**configs["text_encoder"])), seed + 2)
    return unet, vae, text


def write_tiny_sd15(path: Path, seed: int = 0):
    """Write the tiny checkpoint with LDM key names; returns the models it holds."""
    unet, vae, text = tiny_models(seed)
    weights = {}
    weights.update(unet_to_ldm(unet.state_dict()))
    weights.update(vae_to_ldm(vae.state_dict()))
    weights.update(text_to_ldm(text.state_dict()))
    save_file({key: value.contiguous() for key, value in weights.items()}, str(path))
    return unet, vae, text


def tiny_offset(unet, channels: int = 12, seed: int = 7, scale: float = 0.01) -> dict:
    """An IC-Light-style offset for every weight of ``unet`` (diffusers names), conv_in with ``channels`` inputs."""
    generator = torch.Generator().manual_seed(seed)
    offset = {}
    for key, value in unet.state_dict().items():
        shape = list(value.shape)
        if key == "conv_in.weight":
            shape[1] = channels
        offset[key] = torch.randn(shape, generator=generator) * scale
    return offset


def write_tiny_iclight(path: Path, unet, channels: int = 12, *, ldm_names: bool = False, drop=()) -> dict:
    offset = tiny_offset(unet, channels)
    for key in drop:
        offset.pop(key)
    stored = unet_to_ldm(offset, prefix="diffusion_model.") if ldm_names else offset
    save_file({key: value.contiguous() for key, value in stored.items()}, str(path))
    return offset


def write_tiny_tokenizer(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tokens = _byte_characters()
    tokens = tokens + [token + "</w>" for token in tokens] + [START, END]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder

"""Stable Diffusion 1.5 + IC-Light (fbc) from the files users already have, built offline.

- The SD1.5 checkpoint is one single-file ``.safetensors`` with the original (LDM) key names, as in
  ComfyUI's ``models/checkpoints``. Its UNet, VAE and CLIP text encoder are converted with diffusers'
  own single-file functions into models built from the configs this package ships
  (``resources/configs/sd15``); the widths are read from the file, so a smaller model of the same
  architecture (the tests' tiny one) loads the same way.
- The IC-Light file is an *offset*: every UNet weight of the fbc model is the SD1.5 weight plus the
  file's tensor of the same name (diffusers key names, as IC-Light publishes it; the LDM-named copy
  ComfyUI packs use, ``diffusion_model.*``, is converted first). Its ``conv_in`` takes 12 channels:
  4 noisy latent + 4 foreground latent + 4 background latent; SD1.5's 4 input channels are widened with
  zeros before the offset is added, as IC-Light does.

Nothing is downloaded: configs ship with the package and the tokenizer comes from local files
(``relight.tokenizer``).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

import torch

from ..errors import HarmoVidError
from ..locations import shipped_path
from ..weights_files import read_safetensors, read_safetensors_header, resolve_dtype
from .tokenizer import load_clip_tokenizer, require_transformers

StateDict = Dict[str, torch.Tensor]

LATENT_CHANNELS = 4
# IC-Light's UNet input: the noisy latent, the foreground latent and the background latent.
FBC_CHANNELS = 3 * LATENT_CHANNELS
FC_CHANNELS = 2 * LATENT_CHANNELS  # IC-Light fc: noisy latent + foreground only (text/direction conditioned)

# Keys of an SD1.5 single-file checkpoint that give the widths of its three models.
UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
UNET_CROSS_ATTENTION = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
VAE_CONV_IN = "first_stage_model.encoder.conv_in.weight"
CLIP_PREFIX = "cond_stage_model.transformer."
CLIP_TOKEN_EMBEDDING = CLIP_PREFIX + "text_model.embeddings.token_embedding.weight"
CLIP_MLP = CLIP_PREFIX + "text_model.encoder.layers.0.mlp.fc1.weight"
CLIP_HEAD_WIDTH = 64  # CLIP ViT-L/14's text encoder: 12 heads of 64 channels
ICLIGHT_LDM_PREFIX = "diffusion_model."


@dataclass
class ICLightModels:
    """The four parts IC-Light needs, on one device and dtype."""

    unet: torch.nn.Module  # diffusers UNet2DConditionModel, conv_in with FBC_CHANNELS inputs
    vae: torch.nn.Module  # diffusers AutoencoderKL
    text_encoder: torch.nn.Module  # transformers CLIPTextModel
    tokenizer: object  # transformers CLIPTokenizer

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype


def sd15_config(part: str) -> dict:
    """The shipped diffusers/transformers config of SD1.5's ``unet``, ``vae``, ``text_encoder`` or ``scheduler``."""
    return json.loads(shipped_path("configs", "sd15", f"{part}.json").read_text())


def _scaled_widths(widths, first: int) -> list:
    return [first * width // widths[0] for width in widths]


def sd15_configs(*, unet_width: int = 320, vae_width: int = 128, text_width: int = 768, text_layers: int = 12,
                 text_mlp: Optional[int] = None, vocabulary: int = 49408) -> Dict[str, dict]:
    """SD1.5's UNet, VAE and text encoder configs, at other widths when asked (SD1.5's are the defaults)."""
    unet, vae, text = sd15_config("unet"), sd15_config("vae"), sd15_config("text_encoder")
    unet["block_out_channels"] = _scaled_widths(unet["block_out_channels"], unet_width)
    unet["cross_attention_dim"] = text_width
    vae["block_out_channels"] = _scaled_widths(vae["block_out_channels"], vae_width)
    text.update(
        vocab_size=vocabulary,
        hidden_size=text_width,
        projection_dim=text_width,
        intermediate_size=text_mlp or 4 * text_width,
        num_hidden_layers=text_layers,
        num_attention_heads=max(1, text_width // CLIP_HEAD_WIDTH),
        # CLIP's vocabulary ends with its two special tokens.
        bos_token_id=vocabulary - 2,
        eos_token_id=vocabulary - 1,
        pad_token_id=vocabulary - 1,
    )
    return {"unet": unet, "vae": vae, "text_encoder": text}


def configs_for_checkpoint(shapes: Dict[str, tuple]) -> Dict[str, dict]:
    """SD1.5's configs with the widths the checkpoint's tensors have (the same for a real SD1.5 file)."""
    needed = (UNET_CONV_IN, UNET_CROSS_ATTENTION, VAE_CONV_IN, CLIP_TOKEN_EMBEDDING, CLIP_MLP)
    missing = [key for key in needed if key not in shapes]
    vocabulary, hidden = shapes.get(CLIP_TOKEN_EMBEDDING, (0, 0))
    if missing or shapes[UNET_CROSS_ATTENTION][1] != hidden:
        problem = f"no {missing[0]}" if missing else "its UNet does not attend to its text encoder's width"
        raise HarmoVidError(
            f"This is not a Stable Diffusion 1.5 single-file checkpoint ({problem}). IC-Light needs SD1.5: give a "
            ".safetensors from ComfyUI's models/checkpoints such as v1-5-pruned-emaonly.safetensors or an SD1.5 "
            "fine-tune (SD2, SDXL and diffusers folders are not SD1.5 single files)."
        )
    if shapes[UNET_CONV_IN][1] != LATENT_CHANNELS:
        raise HarmoVidError(
            f"The checkpoint's UNet takes {shapes[UNET_CONV_IN][1]} input channels, not {LATENT_CHANNELS}: it is an "
            "inpainting or otherwise modified model. Give a plain SD1.5 checkpoint; IC-Light adds its own inputs."
        )
    layers = {key.split(".")[5] for key in shapes if key.startswith(CLIP_PREFIX + "text_model.encoder.layers.")}
    return sd15_configs(
        unet_width=shapes[UNET_CONV_IN][0],
        vae_width=shapes[VAE_CONV_IN][0],
        text_width=hidden,
        text_layers=len(layers),
        text_mlp=shapes[CLIP_MLP][0],
        vocabulary=vocabulary,
    )


def _converted(convert, name: str, path: Path, *args) -> StateDict:
    try:
        return convert(*args)
    except (KeyError, IndexError, ValueError) as error:
        raise HarmoVidError(
            f"{path.name}: its {name} weights are incomplete or not SD1.5's ({error!r}). The file may be truncated; "
            "download it again or give another SD1.5 checkpoint."
        ) from error


def _empty(model_class, config: dict):
    """``model_class`` built from ``config`` without allocating its weights."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        if hasattr(model_class, "from_config"):  # diffusers
            return model_class.from_config(config)
        return model_class(model_class.config_class(**config))  # transformers


def _layout_problem(expected: StateDict, given: StateDict, missing_text: str, unexpected_text: str) -> Optional[str]:
    """None when ``given`` has exactly the keys and shapes of ``expected``, else the first difference."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        first = f"{missing_text} {missing[0]}" if missing else f"{unexpected_text} {unexpected[0]}"
        return f"{first}; {len(missing)} missing, {len(unexpected)} unexpected"
    for key, tensor in expected.items():
        if given[key].shape != tensor.shape:
            return f"{key} has shape {tuple(given[key].shape)}, SD1.5's has {tuple(tensor.shape)}"
    return None


def _fill(model, state_dict: StateDict, name: str, path: Path, dtype: torch.dtype, device):
    """Give the empty ``model`` the tensors of ``state_dict`` (cast to ``dtype``, moved to ``device``), which
    must match its layout exactly."""
    problem = _layout_problem(model.state_dict(), state_dict, "missing", "unexpected")
    if problem:
        raise HarmoVidError(
            f"{path.name}: the {name} weights do not match SD1.5's layout ({problem}). Give an unmodified SD1.5 "
            "single-file checkpoint."
        )
    for key, tensor in state_dict.items():
        state_dict[key] = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype)
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.to(device).eval().requires_grad_(False)


def _text_encoder_weights(checkpoint: StateDict, model) -> StateDict:
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint

    weights = convert_ldm_clip_checkpoint(checkpoint)
    weights = {key: value for key, value in weights.items() if not key.endswith("position_ids")}
    if not hasattr(model, "text_model"):  # transformers 5.6+ flattened CLIPTextModel
        weights = {key.removeprefix("text_model."): value for key, value in weights.items()}
    return weights


def widen_conv_in(unet_weights: StateDict, channels: int) -> None:
    """Give the UNet's first convolution ``channels`` inputs; the added ones start at zero (IC-Light's way)."""
    weight = unet_weights["conv_in.weight"]
    widened = torch.zeros(weight.shape[0], channels, *weight.shape[2:], dtype=weight.dtype)
    widened[:, : weight.shape[1]] = weight
    unet_weights["conv_in.weight"] = widened


def read_iclight_offset(path: Union[str, Path], unet_config: dict) -> StateDict:
    """The IC-Light fbc offset with diffusers key names; a clear error for the fc model or another file."""
    path = Path(path)
    offset, _ = read_safetensors(path, dtype=torch.float32)
    if offset and all(key.startswith(ICLIGHT_LDM_PREFIX) for key in offset):
        from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

        ldm = {"model." + key: value for key, value in offset.items()}
        offset = _converted(convert_ldm_unet_checkpoint, "IC-Light", path, ldm, unet_config)
    conv_in = offset.get("conv_in.weight")
    if conv_in is None:
        raise HarmoVidError(
            f"{path.name} is not an IC-Light offset file (it has no conv_in.weight). Give iclight_sd15_fbc.safetensors "
            "from lllyasviel/ic-light."
        )
    if conv_in.shape[1] == FC_CHANNELS:
        raise HarmoVidError(
            f"{path.name} is IC-Light's fc model (conv_in takes {FC_CHANNELS} channels: noise + foreground, lit by "
            f"text). Relighting to a background video needs the fbc model, whose conv_in takes {FBC_CHANNELS} "
            "channels (noise + foreground + background): use iclight_sd15_fbc.safetensors."
        )
    if conv_in.shape[1] != FBC_CHANNELS:
        raise HarmoVidError(
            f"{path.name}: conv_in takes {conv_in.shape[1]} input channels; IC-Light fbc's takes {FBC_CHANNELS}. "
            "Give iclight_sd15_fbc.safetensors."
        )
    return offset


def add_offset(unet_weights: StateDict, offset: StateDict, path: Path) -> None:
    """``weight += offset`` for every UNet weight, in float32; every weight must have its offset."""
    problem = _layout_problem(unet_weights, offset, "no offset for", "an offset for an unknown weight")
    if problem:
        raise HarmoVidError(
            f"{path.name} does not fit this SD1.5 UNet ({problem}). Give the unmodified iclight_sd15_fbc.safetensors "
            "with an SD1.5 checkpoint."
        )
    for key, weight in unet_weights.items():
        unet_weights[key] = weight.float() + offset.pop(key)


def build_iclight(configs: Dict[str, dict], tokenizer, *, seed: int = 0, dtype="fp32", device="cpu") -> ICLightModels:
    """IC-Light-shaped models with random weights from ``configs`` (``sd15_configs``), for measurements."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    transformers = require_transformers()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(dict(configs["unet"], in_channels=FBC_CHANNELS))
    vae = AutoencoderKL.from_config(configs["vae"])
    text = transformers.CLIPTextModel(transformers.CLIPTextConfig(**configs["text_encoder"]))
    parts = []
    for model in (unet, vae, text):
        model = model.to(device)
        if resolve_dtype(dtype) != torch.float32:
            model = model.to(resolve_dtype(dtype))
        parts.append(model.eval().requires_grad_(False))
    return ICLightModels(*parts, tokenizer)


def load_iclight(
    checkpoint: Union[str, Path],
    iclight: Union[str, Path],
    *,
    tokenizer: Optional[Union[str, Path]] = None,
    dtype: Union[str, torch.dtype] = "fp32",
    device: Union[str, torch.device] = "cpu",
) -> ICLightModels:
    """SD1.5's UNet (with the IC-Light fbc offset added), VAE and text encoder from two safetensors files.

    ``tokenizer``: CLIP's BPE files (see ``relight.tokenizer.load_clip_tokenizer``; None looks for them).
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    CLIPTextModel = require_transformers().CLIPTextModel
    checkpoint, iclight = Path(checkpoint), Path(iclight)
    torch_dtype = resolve_dtype(dtype)
    shapes, _ = read_safetensors_header(checkpoint)
    configs = configs_for_checkpoint(shapes)
    tokens = load_clip_tokenizer(tokenizer)
    if len(tokens) > configs["text_encoder"]["vocab_size"]:
        raise HarmoVidError(
            f"The tokenizer has {len(tokens)} tokens but {checkpoint.name}'s text encoder knows "
            f"{configs['text_encoder']['vocab_size']}: they do not belong together. Use SD1.5's CLIP tokenizer."
        )
    offset = read_iclight_offset(iclight, configs["unet"])
    weights, _ = read_safetensors(checkpoint)

    unet_weights = _converted(convert_ldm_unet_checkpoint, "UNet", checkpoint, weights, configs["unet"])
    widen_conv_in(unet_weights, FBC_CHANNELS)
    add_offset(unet_weights, offset, iclight)
    unet_config = dict(configs["unet"], in_channels=FBC_CHANNELS)
    unet = _fill(_empty(UNet2DConditionModel, unet_config), unet_weights, "UNet", checkpoint, torch_dtype, device)
    del unet_weights

    vae_weights = _converted(convert_ldm_vae_checkpoint, "VAE", checkpoint, weights, configs["vae"])
    vae = _fill(_empty(AutoencoderKL, configs["vae"]), vae_weights, "VAE", checkpoint, torch_dtype, device)
    del vae_weights

    text_encoder = _empty(CLIPTextModel, configs["text_encoder"])
    text_weights = _text_encoder_weights(weights, text_encoder)
    text_encoder = _fill(text_encoder, text_weights, "text encoder", checkpoint, torch_dtype, device)
    del weights, text_weights
    return ICLightModels(unet, vae, text_encoder, tokens)

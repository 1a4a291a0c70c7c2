"""Build a HarmoVid starting checkpoint from a local diffusers CogVideoX folder (no download).

The folder is laid out like the hub repositories (CogVideoX-2b, -5b, -5b-I2V, CogVideoX1.5-5b[-I2V]):
``transformer/config.json`` + ``diffusion_pytorch_model*.safetensors`` (one file or shards with an
index), optionally ``scheduler/scheduler_config.json``, ``vae/`` and ``text_encoder/``.

Widening: the patch embedding's input projection grows from the base model's channels to HarmoVid's
``[noisy | composite | background | mask]`` (see ``config.py``). Base weights keep their slots, every new
input weight is zero, every other weight is copied unchanged, so the converted model gives exactly
the base model's output while the new inputs are zero.

- Text-to-video bases (16 input channels): the 16 channels are the noisy latent's.
- Image-to-video bases (32 = noisy + image latent): the image channels become the composite latent's
  slot. I2V learned to carry the content of that conditioning latent into the video, which is the
  closest pretrained behaviour to "keep the composite, relight it"; background and mask start at
  zero. (5b-I2V also has learned positional embeddings: it then runs only at 49 x 480 x 720.)

Text: there is no text encoder at run time. The checkpoint's text embedding is the base model's null
prompt: T5 run on the empty prompt exactly as the CogVideoX pipeline tokenizes it (``</s>`` then
padding to ``max_text_seq_length``), computed from ``text_encoder/`` when the folder has it, or taken
from a file; zeros otherwise (then training must learn it; the result says which).
"""

import json
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
from accelerate import init_empty_weights

from ..errors import HarmoVidError
from .checkpoint import (
    TRANSFORMER_CONFIG_KEY,
    VAE_CONFIG_KEY,
    check_state_dict,
    read_diffusers_folder,
    read_safetensors,
    resolve_dtype,
    save_safetensors,
)
from .config import HarmoVidConfig
from .transformer import HarmoVidTransformer

PATCH_WEIGHT = "patch_embed.proj.weight"
NULL_EMBEDDING_KEY = "text_embedding"


def _subfolder(base: Path, name: str, class_names) -> Optional[Path]:
    """``base/name`` when it exists, else ``base`` itself when its config.json is of one of ``class_names``."""
    if (base / name / "config.json").is_file():
        return base / name
    config = base / "config.json"
    if config.is_file() and json.loads(config.read_text()).get("_class_name") in class_names:
        return base
    return None


def widen_patch_embedding(weight: torch.Tensor, base_channels: int, config: HarmoVidConfig) -> torch.Tensor:
    """The base patch projection with zero weights for HarmoVid's extra input channels.

    1.0 layout: a Conv2d weight ``[D, C_in, p, p]``. 1.5 layout: a Linear weight ``[D, C_in * p_t * p * p]``
    whose input features are channel-major (diffusers flattens patches as (C, p_t, p, p)).
    """
    inner = weight.shape[0]
    patch = weight.reshape(inner, base_channels, -1)  # [D, C_base, p_t * p * p]
    widened = patch.new_zeros(inner, config.in_channels, patch.shape[2])  # [D, 3C + M, p_t * p * p]
    widened[:, :base_channels] = patch  # noisy (and I2V's image latent -> composite) keep their weights
    if weight.ndim == 4:
        return widened.reshape(inner, config.in_channels, *weight.shape[2:])
    return widened.reshape(inner, -1)


def null_text_embedding(text_encoder_folder: Union[str, Path], length: int, dtype=torch.float32) -> torch.Tensor:
    """T5's embedding ``[1, length, dim]`` of the empty prompt, as CogVideoX's pipeline computes it.

    The pipeline tokenizes "" to ``</s>`` padded to ``length`` and runs the encoder without an attention
    mask; the token ids come from the encoder's config, so no tokenizer is needed.
    """
    try:
        from transformers import T5EncoderModel
    except ImportError as error:
        raise HarmoVidError(
            "Computing the null prompt embedding needs the 'transformers' package; install it or pass "
            "--null-embedding FILE."
        ) from error
    encoder = T5EncoderModel.from_pretrained(str(text_encoder_folder), torch_dtype=dtype, local_files_only=True)
    eos, pad = encoder.config.eos_token_id, encoder.config.pad_token_id
    if eos is None or pad is None:
        raise HarmoVidError(f"{text_encoder_folder}/config.json has no eos_token_id/pad_token_id; is it a T5 encoder?")
    input_ids = torch.full((1, length), pad, dtype=torch.long)
    input_ids[0, 0] = eos
    with torch.no_grad():
        return encoder(input_ids).last_hidden_state.float()  # [1, L, dim]


def _load_null_embedding(path: Union[str, Path]) -> torch.Tensor:
    tensors, _ = read_safetensors(path)
    if len(tensors) != 1 and NULL_EMBEDDING_KEY not in tensors:
        raise HarmoVidError(
            f"{Path(path).name} holds {len(tensors)} tensors; expected one [1, L, dim] embedding "
            f"(or one named '{NULL_EMBEDDING_KEY}')."
        )
    embedding = tensors.get(NULL_EMBEDDING_KEY, next(iter(tensors.values())))
    return embedding if embedding.ndim == 3 else embedding.unsqueeze(0)


def convert_cogvideox(
    base: Union[str, Path],
    *,
    null_embedding: Union[None, str, Path, torch.Tensor] = None,
    use_text_encoder: bool = True,
    text_encoder_dtype: Union[str, torch.dtype] = "bf16",
    dtype: Union[None, str, torch.dtype] = None,
) -> Tuple[HarmoVidConfig, Dict[str, torch.Tensor], dict]:
    """``(config, state_dict, info)`` of the HarmoVid model made from the CogVideoX folder ``base``.

    ``text_encoder_dtype``: T5 runs in this precision (bf16 by default: T5-XXL needs ~10 GB instead of
    ~19 GB in fp32; CogVideoX itself runs T5 in bf16). ``dtype``: of the weights written (default: the
    base checkpoint's). ``info`` says what was done.
    """
    base = Path(base)
    if not base.is_dir():
        raise HarmoVidError(f"{base} is not a folder. Pass a local diffusers CogVideoX folder (e.g. CogVideoX-5b).")
    folder = _subfolder(base, "transformer", {"CogVideoXTransformer3DModel"})
    if folder is None:
        raise HarmoVidError(
            f"{base} has no transformer/config.json of a CogVideoXTransformer3DModel. Pass the folder of a "
            "diffusers CogVideoX download (it holds transformer/, vae/, scheduler/, ...)."
        )
    base_config, base_state = read_diffusers_folder(folder)
    class_name = base_config.get("_class_name", "CogVideoXTransformer3DModel")
    if class_name != "CogVideoXTransformer3DModel":
        raise HarmoVidError(f"{folder} holds a {class_name}; HarmoVid converts CogVideoXTransformer3DModel only.")
    base_channels, latent_channels = int(base_config.get("in_channels", 16)), int(base_config.get("out_channels", 16))
    if base_channels not in (latent_channels, 2 * latent_channels):
        raise HarmoVidError(
            f"The base transformer takes {base_channels} input channels for {latent_channels} latent channels; "
            "only text-to-video (equal) and image-to-video (twice) CogVideoX models can be converted."
        )
    scheduler_path = base / "scheduler" / "scheduler_config.json"
    scheduler = json.loads(scheduler_path.read_text()) if scheduler_path.is_file() else {}
    scheduler = {k: v for k, v in scheduler.items() if not k.startswith("_")}
    config = HarmoVidConfig.from_diffusers(base_config, scheduler=scheduler)

    with init_empty_weights(include_buffers=False):  # shapes only
        expected = {k: v.shape for k, v in HarmoVidTransformer(config).state_dict().items()}
    state = {f"transformer.{name}": tensor for name, tensor in base_state.items()}
    patch_key = f"transformer.{PATCH_WEIGHT}"
    if patch_key not in state:
        raise HarmoVidError(f"{folder} has no {PATCH_WEIGHT}; the checkpoint is incomplete.")
    state[patch_key] = widen_patch_embedding(state[patch_key], base_channels, config)

    length, width = config.max_text_seq_length, config.text_embed_dim
    if isinstance(null_embedding, torch.Tensor):
        text, text_source = null_embedding, "given tensor"
    elif null_embedding is not None:
        text, text_source = _load_null_embedding(null_embedding), f"file {Path(null_embedding).name}"
    elif use_text_encoder and (base / "text_encoder" / "config.json").is_file():
        text = null_text_embedding(base / "text_encoder", length, resolve_dtype(text_encoder_dtype))
        text_source = "T5 of the empty prompt"
    else:
        text, text_source = torch.zeros(1, length, width), "zeros (no text encoder found: training must learn it)"
    if tuple(text.shape) != (1, length, width):
        raise HarmoVidError(
            f"The null text embedding has shape {tuple(text.shape)}; this model needs (1, {length}, {width}) "
            "(max_text_seq_length x text_embed_dim)."
        )
    base_dtype = state[patch_key].dtype
    state[NULL_EMBEDDING_KEY] = text.to(base_dtype)

    check_state_dict(expected, state, f"The converted {folder.name} checkpoint")
    out_dtype = base_dtype if dtype is None else resolve_dtype(dtype)
    state = {k: (v.to(out_dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    info = {
        "base": str(base),
        "layout": config.layout_name,
        "kind": "image-to-video" if base_channels == 2 * latent_channels else "text-to-video",
        "base_in_channels": base_channels,
        "in_channels": config.in_channels,
        "composite_slot": "image-to-video image channels" if base_channels == 2 * latent_channels else "zeros",
        "text_embedding": text_source,
        "parameters": sum(t.numel() for t in state.values()),
        "dtype": str(out_dtype).replace("torch.", ""),
    }
    return config, state, info


def save_converted(config: HarmoVidConfig, state_dict: Dict[str, torch.Tensor], path: Union[str, Path]) -> Path:
    metadata = {"format": "pt", "harmovid_kind": "transformer", TRANSFORMER_CONFIG_KEY: config.to_json()}
    return save_safetensors(state_dict, path, metadata)


def convert_vae(base: Union[str, Path], path: Union[str, Path], dtype: Union[None, str, torch.dtype] = None) -> Path:
    """Copy the ``vae/`` of a diffusers CogVideoX folder into one HarmoVid VAE safetensors file."""
    from diffusers import AutoencoderKLCogVideoX

    base = Path(base)
    folder = _subfolder(base, "vae", {"AutoencoderKLCogVideoX"})
    if folder is None:
        raise HarmoVidError(f"{base} has no vae/config.json of an AutoencoderKLCogVideoX; --vae-out needs one.")
    config, state = read_diffusers_folder(folder)
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    with init_empty_weights(include_buffers=False):
        expected = {k: v.shape for k, v in AutoencoderKLCogVideoX.from_config(config).state_dict().items()}
    check_state_dict(expected, state, f"The VAE in {folder}")
    if dtype is not None:
        state = {k: v.to(resolve_dtype(dtype)) if v.is_floating_point() else v for k, v in state.items()}
    return save_safetensors({k: v.contiguous() for k, v in state.items()}, path,
                            {"format": "pt", "harmovid_kind": "vae", VAE_CONFIG_KEY: json.dumps(config)})

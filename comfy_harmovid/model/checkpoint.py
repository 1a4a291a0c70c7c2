"""Checkpoint files: safetensors only, with the model's config stored in the file's metadata.

A HarmoVid transformer checkpoint is one ``.safetensors`` file whose metadata holds
``harmovid_config`` (the ``HarmoVidConfig`` as JSON); a VAE checkpoint holds ``harmovid_vae_config``
(diffusers' ``AutoencoderKLCogVideoX`` config). The VAE also loads from a local diffusers folder
(``config.json`` + ``diffusion_pytorch_model.safetensors``). Pickled files are never opened. Every file is
written atomically: readers see the old file or the complete new one, never a partial one.
"""

import json
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

import torch
from accelerate import init_empty_weights

from ..errors import HarmoVidError
from ..weights_files import (
    PICKLE_SUFFIXES,
    StateDict,
    check_state_dict,
    read_safetensors,
    read_safetensors_header,
    resolve_dtype,
    save_safetensors,
)
from .config import HarmoVidConfig
from .transformer import HarmoVidTransformer

TRANSFORMER_CONFIG_KEY = "harmovid_config"
VAE_CONFIG_KEY = "harmovid_vae_config"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
DIFFUSERS_INDEX = "diffusion_pytorch_model.safetensors.index.json"


# -- reading files ---------------------------------------------------------------------------------


def read_diffusers_folder(folder: Union[str, Path]) -> Tuple[dict, StateDict]:
    """``(config, state_dict)`` of a diffusers model folder: config.json + one or sharded safetensors."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise HarmoVidError(f"{folder} has no config.json; point at a diffusers model folder (e.g. .../vae).")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise HarmoVidError(f"{config_path} is not valid JSON ({error}).") from error
    if (folder / DIFFUSERS_INDEX).is_file():
        index = json.loads((folder / DIFFUSERS_INDEX).read_text())
        shards = sorted(set(index.get("weight_map", {}).values()))
        if not shards:
            raise HarmoVidError(f"{folder / DIFFUSERS_INDEX} lists no weight files; the download is incomplete.")
        state_dict = {}
        for shard in shards:
            if not (folder / shard).is_file():
                raise HarmoVidError(f"Shard {shard} listed in {DIFFUSERS_INDEX} is missing from {folder}.")
            state_dict.update(read_safetensors(folder / shard)[0])
        return config, state_dict
    if (folder / DIFFUSERS_WEIGHTS).is_file():
        return config, read_safetensors(folder / DIFFUSERS_WEIGHTS)[0]
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    hint = f" It only has pickled weights ({', '.join(pickled)}); get the safetensors variant." if pickled else ""
    raise HarmoVidError(f"{folder} has no {DIFFUSERS_WEIGHTS} (or sharded index).{hint}")


def _config_from_metadata(metadata: Mapping[str, str], key: str, path: Path) -> dict:
    if key not in metadata:
        other = VAE_CONFIG_KEY if key == TRANSFORMER_CONFIG_KEY else TRANSFORMER_CONFIG_KEY
        if other in metadata:
            kind = "a VAE" if other == VAE_CONFIG_KEY else "a transformer"
            raise HarmoVidError(f"{path.name} is {kind} checkpoint; load it with the matching loader / folder.")
        raise HarmoVidError(
            f"{path.name} has no HarmoVid config in its metadata, so it was not saved by comfy-harmovid. "
            "Make a HarmoVid checkpoint with `harmovid convert --base <diffusers CogVideoX folder>` or save one "
            "with comfy_harmovid.model.save_transformer."
        )
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as error:
        raise HarmoVidError(f"The config stored in {path.name} is not valid JSON ({error}).") from error


def _contiguous(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    return {name: tensor.detach().contiguous() for name, tensor in state_dict.items()}


def _expected_shapes(model: torch.nn.Module) -> Dict[str, torch.Size]:
    return {name: tensor.shape for name, tensor in model.state_dict().items()}


def _finish_load(model: torch.nn.Module, state_dict: StateDict, dtype: torch.dtype, device) -> torch.nn.Module:
    """Put checked weights (already in ``dtype`` on ``device``) into a model built on the meta device."""
    model.load_state_dict(state_dict, strict=True, assign=True)
    # Buffers that are not saved (e.g. sin-cos position tables) were built at init: move them too.
    # (torch's own Module.to: diffusers' override only adds a log message about fp32 modules.)
    return torch.nn.Module.to(model, device=device, dtype=dtype).eval()


# -- transformer -----------------------------------------------------------------------------------


def save_transformer(model: HarmoVidTransformer, path: Union[str, Path]) -> Path:
    """Write ``model``'s weights and config to one safetensors file."""
    metadata = {"format": "pt", "harmovid_kind": "transformer", TRANSFORMER_CONFIG_KEY: model.config.to_json()}
    return save_safetensors(_contiguous(model.state_dict()), path, metadata)


def load_transformer(
    path: Union[str, Path], *, dtype: Union[str, torch.dtype] = "fp32", device: Union[str, torch.device] = "cpu"
) -> HarmoVidTransformer:
    """A ``HarmoVidTransformer`` from a checkpoint made by ``save_transformer`` or ``harmovid convert``."""
    path = Path(path)
    torch_dtype, device = resolve_dtype(dtype), torch.device(device)
    shapes, metadata = read_safetensors_header(path)  # check everything before reading gigabytes
    config = HarmoVidConfig.from_dict(_config_from_metadata(metadata, TRANSFORMER_CONFIG_KEY, path))
    with init_empty_weights(include_buffers=False):  # no random init of billions of weights
        model = HarmoVidTransformer(config)
    check_state_dict(_expected_shapes(model), shapes, f"Checkpoint {path.name}")
    state_dict, _ = read_safetensors(path, dtype=torch_dtype, device=device)
    return _finish_load(model, state_dict, torch_dtype, device)


# -- VAE -------------------------------------------------------------------------------------------


def save_vae(vae, path: Union[str, Path]) -> Path:
    """Write a ``HarmoVidVAE`` (or a diffusers ``AutoencoderKLCogVideoX``) and its config to one safetensors file."""
    module = getattr(vae, "vae", vae)
    config = {k: v for k, v in dict(module.config).items() if not k.startswith("_")}
    metadata = {"format": "pt", "harmovid_kind": "vae", VAE_CONFIG_KEY: json.dumps(config)}
    return save_safetensors(_contiguous(module.state_dict()), path, metadata)


def load_vae(
    path: Union[str, Path],
    *,
    dtype: Union[str, torch.dtype] = "fp32",
    device: Union[str, torch.device] = "cpu",
    tile_size=None,
    tile_overlap=None,
):
    """A ``HarmoVidVAE`` from a file made by ``save_vae`` or from a local diffusers CogVideoX VAE folder.

    ``path`` may be the VAE folder itself (config.json + diffusion_pytorch_model.safetensors) or a whole
    diffusers CogVideoX folder with a ``vae/`` sub-folder.
    """
    from diffusers import AutoencoderKLCogVideoX

    from .vae import HarmoVidVAE

    path = Path(path)
    torch_dtype, device = resolve_dtype(dtype), torch.device(device)
    if path.is_dir():
        if not (path / "config.json").is_file() and (path / "vae").is_dir():
            path = path / "vae"
        config, state_dict = read_diffusers_folder(path)
        class_name = config.get("_class_name", "AutoencoderKLCogVideoX")
        if class_name != "AutoencoderKLCogVideoX":
            raise HarmoVidError(f"{path} holds a {class_name}, not a CogVideoX VAE (AutoencoderKLCogVideoX).")
        found = state_dict
    else:
        found, metadata = read_safetensors_header(path)
        config = _config_from_metadata(metadata, VAE_CONFIG_KEY, path)
        state_dict = None
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        with init_empty_weights(include_buffers=False):
            module = AutoencoderKLCogVideoX.from_config(config)
    except (TypeError, ValueError) as error:
        raise HarmoVidError(f"The VAE config in {path.name} is not a CogVideoX VAE config ({error}).") from error
    check_state_dict(_expected_shapes(module), found, f"VAE {path.name}")
    if state_dict is None:
        state_dict, _ = read_safetensors(path, dtype=torch_dtype, device=device)
    else:
        state_dict = {k: v.to(device, torch_dtype if v.is_floating_point() else v.dtype) for k, v in state_dict.items()}
    module = _finish_load(module, state_dict, torch_dtype, device)
    return HarmoVidVAE(module, tile_size=tile_size, tile_overlap=tile_overlap)

"""Checkpoint files: safetensors only, with the model's config stored in the file's metadata.

A HarmoVid transformer checkpoint is one ``.safetensors`` file whose metadata holds
``harmovid_config`` (the ``HarmoVidConfig`` as JSON); a VAE checkpoint holds ``harmovid_vae_config``
(diffusers' ``AutoencoderKLCogVideoX`` config). The VAE also loads from a local diffusers folder
(``config.json`` + ``diffusion_pytorch_model.safetensors``). Pickled files are never opened.
"""

import json
from pathlib import Path
from typing import Dict, Iterable, Mapping, Tuple, Union

import torch
from accelerate import init_empty_weights
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import HarmoVidError
from .config import HarmoVidConfig
from .transformer import HarmoVidTransformer

TRANSFORMER_CONFIG_KEY = "harmovid_config"
VAE_CONFIG_KEY = "harmovid_vae_config"
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle"}
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
DIFFUSERS_INDEX = "diffusion_pytorch_model.safetensors.index.json"

StateDict = Dict[str, torch.Tensor]


def resolve_dtype(dtype: Union[str, torch.dtype]) -> torch.dtype:
    """``"fp32" | "fp16" | "bf16"`` (or a torch dtype) to a torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise HarmoVidError(f"dtype {dtype} is not supported; use fp32, fp16 or bf16.")
        return dtype
    if dtype not in DTYPES:
        raise HarmoVidError(f"dtype '{dtype}' is not one of {', '.join(DTYPES)}.")
    return DTYPES[dtype]


# -- reading files ---------------------------------------------------------------------------------


def _reject_pickle(path: Path) -> None:
    with open(path, "rb") as handle:
        head = handle.read(8)
    if path.suffix.lower() in PICKLE_SUFFIXES or head[:2] == b"PK" or head[:1] == b"\x80":
        raise HarmoVidError(
            f"{path.name} is a pickled PyTorch file; HarmoVid loads safetensors only, because unpickling can "
            "run arbitrary code. Convert it once in a trusted environment: "
            "safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors'), "
            "or use `harmovid convert` for a diffusers CogVideoX folder."
        )


def read_safetensors(path: Union[str, Path], device: str = "cpu") -> Tuple[StateDict, Dict[str, str]]:
    """All tensors and the metadata of one safetensors file, with a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise HarmoVidError(f"Checkpoint {path} does not exist. Check the path or the models folder.")
    _reject_pickle(path)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise HarmoVidError(
            f"{path.name} is not a readable safetensors file ({error}). It may be truncated or not a model; "
            "download or save it again."
        ) from error
    return tensors, metadata


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


def check_state_dict(expected: Mapping[str, torch.Size], found: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise one error listing missing, unexpected and wrongly shaped weights (a few of each)."""

    def few(items: Iterable[str]) -> str:
        items = list(items)
        more = f" (+{len(items) - 4} more)" if len(items) > 4 else ""
        return ", ".join(items[:4]) + more

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = [
        f"{name}: expected {tuple(expected[name])}, found {tuple(found[name].shape)}"
        for name in sorted(set(expected) & set(found))
        if tuple(found[name].shape) != tuple(expected[name])
    ]
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} weights have the wrong shape ({few(mismatched)})")
    if missing:
        problems.append(f"{len(missing)} weights are missing ({few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} weights are unexpected ({few(unexpected)})")
    if problems:
        raise HarmoVidError(
            f"{what} does not match its config: " + "; ".join(problems) + ". The file is damaged, or its weights "
            "belong to a different model size; use the checkpoint and config that were saved together."
        )


def _contiguous(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    return {name: tensor.detach().contiguous() for name, tensor in state_dict.items()}


def _load_into(model: torch.nn.Module, state_dict: StateDict, dtype: torch.dtype, device, what: str):
    expected = {name: tensor.shape for name, tensor in model.state_dict().items()}
    check_state_dict(expected, state_dict, what)
    state_dict = {
        name: tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype)
        for name, tensor in state_dict.items()
    }
    model.load_state_dict(state_dict, strict=True, assign=True)
    # Buffers that are not saved (e.g. sin-cos position tables) were built at init: move them too.
    # (torch's own Module.to: diffusers' override only adds a log message about fp32 modules.)
    return torch.nn.Module.to(model, device=device, dtype=dtype).eval()


# -- transformer -----------------------------------------------------------------------------------


def save_transformer(model: HarmoVidTransformer, path: Union[str, Path]) -> Path:
    """Write ``model``'s weights and config to one safetensors file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", "harmovid_kind": "transformer", TRANSFORMER_CONFIG_KEY: model.config.to_json()}
    save_file(_contiguous(model.state_dict()), str(path), metadata=metadata)
    return path


def load_transformer(
    path: Union[str, Path], *, dtype: Union[str, torch.dtype] = "fp32", device: Union[str, torch.device] = "cpu"
) -> HarmoVidTransformer:
    """A ``HarmoVidTransformer`` from a checkpoint made by ``save_transformer`` or ``harmovid convert``."""
    path = Path(path)
    torch_dtype = resolve_dtype(dtype)
    state_dict, metadata = read_safetensors(path)
    config = HarmoVidConfig.from_dict(_config_from_metadata(metadata, TRANSFORMER_CONFIG_KEY, path))
    with init_empty_weights(include_buffers=False):  # no random init of billions of weights
        model = HarmoVidTransformer(config)
    return _load_into(model, state_dict, torch_dtype, torch.device(device), f"Checkpoint {path.name}")


# -- VAE -------------------------------------------------------------------------------------------


def save_vae(vae, path: Union[str, Path]) -> Path:
    """Write a ``HarmoVidVAE`` (or a diffusers ``AutoencoderKLCogVideoX``) and its config to one safetensors file."""
    module = getattr(vae, "vae", vae)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in dict(module.config).items() if not k.startswith("_")}
    metadata = {"format": "pt", "harmovid_kind": "vae", VAE_CONFIG_KEY: json.dumps(config)}
    save_file(_contiguous(module.state_dict()), str(path), metadata=metadata)
    return path


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
    torch_dtype = resolve_dtype(dtype)
    if path.is_dir():
        if not (path / "config.json").is_file() and (path / "vae").is_dir():
            path = path / "vae"
        config, state_dict = read_diffusers_folder(path)
        class_name = config.get("_class_name", "AutoencoderKLCogVideoX")
        if class_name != "AutoencoderKLCogVideoX":
            raise HarmoVidError(f"{path} holds a {class_name}, not a CogVideoX VAE (AutoencoderKLCogVideoX).")
    else:
        state_dict, metadata = read_safetensors(path)
        config = _config_from_metadata(metadata, VAE_CONFIG_KEY, path)
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        with init_empty_weights(include_buffers=False):
            module = AutoencoderKLCogVideoX.from_config(config)
    except (TypeError, ValueError) as error:
        raise HarmoVidError(f"The VAE config in {path.name} is not a CogVideoX VAE config ({error}).") from error
    module = _load_into(module, state_dict, torch_dtype, torch.device(device), f"VAE {path.name}")
    return HarmoVidVAE(module, tile_size=tile_size, tile_overlap=tile_overlap)

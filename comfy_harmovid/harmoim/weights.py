"""Learned HarmoIm weights: one safetensors file with the network config (and how it was trained) in its
metadata. The package ships its default weights in ``comfy_harmovid/resources/harmoim``; users may train
their own with ``harmovid train harmoim`` and put them in their models folder (``$HARMOVID_MODELS_DIR/harmoim``
or ComfyUI's ``models/harmoim``), which is searched first."""

import json
from pathlib import Path
from typing import Optional, Union

import torch

from ..errors import HarmoVidError
from ..locations import model_folders
from ..weights_files import check_state_dict, read_safetensors, read_safetensors_header, save_safetensors
from .network import HarmoImConfig, HarmoImNet

CONFIG_KEY = "harmoim_config"
TRAINING_KEY = "harmoim_training"
DEFAULT_WEIGHTS_NAME = "harmoim-v3.safetensors"


def weights_folders() -> list:
    """Where the default weights are looked for: the user's ``harmoim`` model folders, then the shipped one."""
    return model_folders("harmoim")


def default_weights_path() -> Optional[Path]:
    """The shipped (or user-placed) default weights file, or None when there is none."""
    for folder in weights_folders():
        if (folder / DEFAULT_WEIGHTS_NAME).is_file():
            return folder / DEFAULT_WEIGHTS_NAME
    return None


def save_harmoim(net: HarmoImNet, path: Union[str, Path], training: dict = None, *, overwrite: bool = False) -> Path:
    """Write ``net``'s weights and config (and the ``training`` record) to ``path``, atomically."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise HarmoVidError(f"{path} already exists; choose another name or pass overwrite=True (--overwrite).")
    metadata = {"format": "pt", "harmovid_kind": "harmoim", CONFIG_KEY: net.config.to_json()}
    if training is not None:
        metadata[TRAINING_KEY] = json.dumps(training)
    state = {name: tensor.detach().contiguous() for name, tensor in net.state_dict().items()}
    return save_safetensors(state, path, metadata)


def training_record(path: Union[str, Path]) -> Optional[dict]:
    """The training settings stored in a weights file (None if it has none)."""
    _, metadata = read_safetensors_header(path)
    return json.loads(metadata[TRAINING_KEY]) if TRAINING_KEY in metadata else None


def load_harmoim(path: Union[str, Path, None] = None, *, device: Union[str, torch.device] = "cpu") -> HarmoImNet:
    """A ``HarmoImNet`` from ``path``, or from the default weights when ``path`` is None."""
    if path is None:
        path = default_weights_path()
        if path is None:
            places = " or ".join(str(folder) for folder in weights_folders())
            raise HarmoVidError(
                f"no learned HarmoIm weights found ({DEFAULT_WEIGHTS_NAME} in {places}). Train them with "
                "`harmovid train harmoim`, or use the weights-free method 'statistics'."
            )
    path = Path(path)
    shapes, metadata = read_safetensors_header(path)
    if CONFIG_KEY not in metadata:
        raise HarmoVidError(
            f"{path.name} is not a learned HarmoIm weights file (no {CONFIG_KEY} in its metadata). Use a file "
            "written by `harmovid train harmoim`."
        )
    try:
        config = HarmoImConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
    except (json.JSONDecodeError, TypeError) as error:
        raise HarmoVidError(f"the HarmoIm config stored in {path.name} is not valid ({error}).") from error
    net = HarmoImNet(config)
    check_state_dict({name: tensor.shape for name, tensor in net.state_dict().items()}, shapes, f"HarmoIm weights {path.name}")
    state, _ = read_safetensors(path, dtype=torch.float32, device=device)
    if not all(torch.isfinite(tensor).all() for tensor in state.values()):
        raise HarmoVidError(f"HarmoIm weights {path.name} contain NaN or infinite values; train or copy them again.")
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()

"""Training checkpoints without pickle: the transformer in the loader's safetensors format, the
optimizer's state as safetensors, and the step (which fixes data position and every random draw) as JSON."""

import json
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file

from ..errors import HarmoVidError
from ..model import save_transformer
from ..atomic import atomic_output
from ..weights_files import read_safetensors, save_safetensors

TRANSFORMER = "transformer.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "trainer_state.json"


def save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    state = optimizer.state_dict()
    tensors = {}
    for param_id, values in state["state"].items():
        for name, value in values.items():
            tensors[f"{param_id}/{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    save_safetensors(tensors, path, {"param_groups": json.dumps(state["param_groups"])})


def load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        groups = json.loads(handle.metadata()["param_groups"])
    state = {}
    for key, value in load_file(str(path)).items():
        param_id, name = key.split("/", 1)
        state.setdefault(int(param_id), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(folder: Path, transformer, optimizer, step: int, extra: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_transformer(transformer, folder / TRANSFORMER)
    save_optimizer(optimizer, folder / OPTIMIZER)
    with atomic_output(folder / STATE) as partial:  # written last: its presence marks a complete checkpoint
        partial.write_text(json.dumps({"step": step, **extra}, indent=2))
    return folder


def latest_checkpoint(output_dir: Path) -> Optional[Path]:
    folders = sorted(p for p in Path(output_dir).glob("checkpoint-*") if (p / STATE).is_file())
    return folders[-1] if folders else None


def load_checkpoint(folder: Path, transformer, optimizer) -> int:
    """Restore weights and optimizer state in place; returns the step to continue from."""
    folder = Path(folder)
    for name in (TRANSFORMER, OPTIMIZER, STATE):
        if not (folder / name).is_file():
            raise HarmoVidError(f"{folder} is not a training checkpoint (no {name}); pass a checkpoint-NNNNNN folder.")
    weights, _ = read_safetensors(folder / TRANSFORMER)
    try:
        transformer.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise HarmoVidError(f"{folder} was saved from another model config ({error}).") from error
    load_optimizer(optimizer, folder / OPTIMIZER)
    return int(json.loads((folder / STATE).read_text())["step"])

"""Weights files: safetensors only (pickled files are refused with the way to convert them), read
and written with clear errors, written atomically.

Kept apart from ``model/`` so that loading small weights (HarmoIm, training state) does not import the
diffusion transformer's libraries.
"""

import os
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Tuple, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .atomic import atomic_output, current_umask
from .errors import HarmoVidError

PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle"}

StateDict = Dict[str, torch.Tensor]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_dtype(dtype: Union[str, torch.dtype]) -> torch.dtype:
    """``"fp32" | "fp16" | "bf16"`` (or a torch dtype) to a torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise HarmoVidError(f"dtype {dtype} is not supported; use fp32, fp16 or bf16.")
        return dtype
    if dtype not in DTYPES:
        raise HarmoVidError(f"dtype '{dtype}' is not one of {', '.join(DTYPES)}.")
    return DTYPES[dtype]


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


def _open_safetensors(path: Path):
    if path.is_dir():
        raise HarmoVidError(
            f"{path} is a folder, not a checkpoint file. For a diffusers CogVideoX folder, make a HarmoVid "
            "checkpoint first: `harmovid convert --base <folder> -o harmovid.safetensors`."
        )
    if not path.is_file():
        raise HarmoVidError(f"Checkpoint {path} does not exist. Check the path or the models folder.")
    _reject_pickle(path)
    return safe_open(str(path), framework="pt", device="cpu")


def _unreadable(path: Path, error: Exception) -> HarmoVidError:
    return HarmoVidError(
        f"{path.name} is not a readable safetensors file ({error}). It may be truncated or not a model; "
        "download or save it again."
    )


def read_safetensors_header(path: Union[str, Path]) -> Tuple[Dict[str, Tuple[int, ...]], Dict[str, str]]:
    """Tensor shapes and metadata of a safetensors file, without reading the weights."""
    path = Path(path)
    try:
        with _open_safetensors(path) as handle:
            metadata = dict(handle.metadata() or {})
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise _unreadable(path, error) from error
    return shapes, metadata


def read_safetensors(
    path: Union[str, Path], *, dtype: Optional[torch.dtype] = None, device: Union[str, torch.device] = "cpu"
) -> Tuple[StateDict, Dict[str, str]]:
    """All tensors and the metadata of one safetensors file, with a clear error for anything else.

    Floating-point tensors are cast to ``dtype`` and moved to ``device`` one at a time, so loading never
    holds a second full copy of the weights.
    """
    path = Path(path)
    tensors = {}
    try:
        with _open_safetensors(path) as handle:
            metadata = dict(handle.metadata() or {})
            for name in handle.keys():
                tensor = handle.get_tensor(name)
                if dtype is not None and tensor.is_floating_point():
                    tensor = tensor.to(dtype)
                tensors[name] = tensor.to(device)
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise _unreadable(path, error) from error
    return tensors, metadata


def check_state_dict(expected: Mapping[str, torch.Size], found: Mapping, what: str) -> None:
    """Raise one error listing missing, unexpected and wrongly shaped weights (a few of each).

    ``found`` maps names to tensors or to shapes.
    """

    def few(items: Iterable[str]) -> str:
        items = list(items)
        more = f" (+{len(items) - 4} more)" if len(items) > 4 else ""
        return ", ".join(items[:4]) + more

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    found_shapes = {name: tuple(getattr(value, "shape", value)) for name, value in found.items()}
    mismatched = [
        f"{name}: expected {tuple(expected[name])}, found {found_shapes[name]}"
        for name in sorted(set(expected) & set(found))
        if found_shapes[name] != tuple(expected[name])
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


def save_safetensors(state_dict: Mapping[str, torch.Tensor], path: Union[str, Path],
                     metadata: Optional[Dict[str, str]] = None) -> Path:
    """Write ``state_dict`` (contiguous tensors) to ``path`` atomically; a failed write leaves any old file intact."""
    path = Path(path)
    with atomic_output(path) as partial:
        save_file(dict(state_dict), str(partial), metadata=metadata)
        # safetensors creates the file readable by its owner only; give it the permissions of any new file
        os.chmod(partial, 0o666 & ~current_umask())
    return path

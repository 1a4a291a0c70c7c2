"""The one place where the nodes reach ComfyUI's services.

Everything here works without ComfyUI too (tests, scripts): progress is then silent, the device is
the CPU (or CUDA when present), and model folders are ``$HARMOVID_MODELS_DIR/<kind>``. In both cases
the engine's ``comfy_harmovid.locations.model_folders`` does the lookup (the user's folders, then the
files the package ships); inside ComfyUI this module hands it ComfyUI's folders.
"""

import os
from pathlib import Path
from typing import List

import torch

from comfy_harmovid import locations
from comfy_harmovid.errors import HarmoVidError

try:  # ComfyUI present: use its services.
    import comfy.model_management as _model_management
    import comfy.utils as _comfy_utils
    import folder_paths as _folder_paths
except ImportError:  # Running outside ComfyUI (tests, scripts).
    _model_management = _comfy_utils = _folder_paths = None

IN_COMFYUI = _folder_paths is not None
MODEL_EXTENSIONS = {".safetensors"}

# Model folder names under ComfyUI's models/ directory that this pack uses.
MODEL_KINDS = ("harmovid", "harmovid_vae", "sam2", "harmoim", "iclight")
# Kinds also searched in ComfyUI's own folders of another kind: IC-Light packs keep its files in models/unet
# (ComfyUI's diffusion_models), so files already there are found too.
ALSO_IN = {"iclight": ("diffusion_models",)}
# ComfyUI's folder of Stable Diffusion single-file checkpoints (SD1.5 for IC-Light).
CHECKPOINTS = "checkpoints"


def register_model_folders() -> None:
    """Make ComfyUI know ``models/<kind>`` for each kind, and make the engine search ComfyUI's folders."""
    if not IN_COMFYUI:
        return
    for kind in MODEL_KINDS:
        paths = [os.path.join(_folder_paths.models_dir, kind)]
        for other in ALSO_IN.get(kind, ()):
            if other in _folder_paths.folder_names_and_paths:
                paths += list(_folder_paths.get_folder_paths(other))
        if kind in _folder_paths.folder_names_and_paths:
            known, extensions = _folder_paths.folder_names_and_paths[kind]
            extensions = set(extensions) | MODEL_EXTENSIONS
        else:
            known, extensions = [], set(MODEL_EXTENSIONS)
        known = list(known) + [p for p in paths if p not in known]
        _folder_paths.folder_names_and_paths[kind] = (known, extensions)
    locations.use_host_model_folders(_folder_paths.get_folder_paths)


def model_folders(kind: str) -> List[Path]:
    """The folders searched for models of ``kind``, first match wins (see ``comfy_harmovid.locations``)."""
    return locations.model_folders(kind)


def list_models(kind: str, suffixes=(".safetensors",)) -> List[str]:
    """File and folder names (relative to a model folder) that look like models of ``kind``."""
    names = set()
    for folder in model_folders(kind):
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in suffixes:
                names.add(path.relative_to(folder).as_posix())
    return sorted(names)


def resolve_model_path(kind: str, name: str) -> Path:
    """Find ``name`` in the folders for ``kind``; a clear error names the folders when it is absent."""
    found = locations.find_model(kind, name)
    if found is not None:
        return found
    raise HarmoVidError(f"Model '{name}' not found. {where_models_go(kind)}")


def where_models_go(kind: str) -> str:
    """Where to put models of ``kind``, naming the folders searched now."""
    searched = ", ".join(str(folder) for folder in model_folders(kind))
    if IN_COMFYUI:
        return f"Put it in one of: {searched}, then refresh ComfyUI."
    return (f"Searched: {searched or 'no folder'}. Put it in $HARMOVID_MODELS_DIR/{kind}/ (set that variable), "
            f"or in ComfyUI/models/{kind}/ when running inside ComfyUI.")


def clip_tokenizer_folder():
    """ComfyUI's copy of SD1's CLIP tokenizer (``comfy/sd1_tokenizer``), or None outside ComfyUI."""
    if not IN_COMFYUI:
        return None
    try:
        import comfy.sd1_clip as _sd1_clip
    except ImportError:
        return None
    folder = Path(_sd1_clip.__file__).resolve().parent / "sd1_tokenizer"
    return folder if (folder / "vocab.json").is_file() else None


def torch_device() -> torch.device:
    """The device ComfyUI runs models on (CPU/CUDA outside ComfyUI)."""
    if _model_management is not None:
        return _model_management.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device() -> torch.device:
    """Where ComfyUI parks models and IMAGE tensors between nodes."""
    if _model_management is not None:
        return _model_management.intermediate_device()
    return torch.device("cpu")


def throw_if_interrupted() -> None:
    """Raise ComfyUI's interruption exception when the user pressed Cancel."""
    if _model_management is not None:
        _model_management.throw_exception_if_processing_interrupted()


class NodeProgress:
    """A ``progress(done, total)`` callback for the engine that drives ComfyUI's bar.

    Each call also checks for interruption, so any engine loop that reports progress can be cancelled.
    """

    def __init__(self, total: int = 1):
        self._bar = _comfy_utils.ProgressBar(total) if _comfy_utils is not None else None
        self.last = (0, total)

    def __call__(self, done: int, total: int) -> None:
        throw_if_interrupted()
        self.last = (done, total)
        if self._bar is not None:
            self._bar.update_absolute(done, total)


def progress(total: int = 1) -> NodeProgress:
    return NodeProgress(total)

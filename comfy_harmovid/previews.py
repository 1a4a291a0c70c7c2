"""Small pictures of a clip for a person to look at in the node editor: a few frames spread over the
clip, scaled down, with a mask drawn over them or used as the picture's alpha.

Plain arrays out (``[h, w, 3]`` or ``[h, w, 4]`` uint8); writing them where a viewer finds them is the
caller's business (the nodes save them to ComfyUI's temp folder)."""

from typing import List, Optional, Tuple

import cv2
import numpy as np
import torch

# Frames shown at most per clip (spread evenly, first and last included) and their longest side.
PREVIEW_FRAMES = 24
PREVIEW_SIDE = 512
# The colour masks are drawn in (RGB, 0..1) and how strongly it covers the frame where the mask is 1.
OVERLAY_COLOUR = np.array([0.15, 0.55, 1.0], np.float32)
OVERLAY_OPACITY = 0.55


def preview_indices(total: int, count: int = PREVIEW_FRAMES) -> List[int]:
    """Up to ``count`` frame numbers spread evenly over ``total`` frames, first and last included."""
    if total <= count:
        return list(range(total))
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


def _small(array: np.ndarray, max_side: int) -> np.ndarray:
    height, width = array.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return array
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA)


def _uint8(array: np.ndarray) -> np.ndarray:
    return np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _overlay(base: np.ndarray, mask: np.ndarray) -> np.ndarray:
    alpha = mask[..., None] * OVERLAY_OPACITY
    return base * (1.0 - alpha) + OVERLAY_COLOUR * alpha


def mask_overlay(frame: Optional[torch.Tensor], mask: torch.Tensor) -> np.ndarray:
    """``[H, W]`` mask drawn over an ``[H, W, 3]`` frame (or over black without one) -> float32 RGB."""
    mask = mask.detach().cpu().float().numpy()
    base = frame.detach().cpu().float().numpy() if frame is not None else np.zeros((*mask.shape, 3), np.float32)
    return _overlay(base, mask)


def mask_layer(mask: torch.Tensor, max_side: int = PREVIEW_SIDE) -> np.ndarray:
    """``[H, W]`` mask -> RGBA uint8 picture of it alone: the overlay colour, opaque where the mask is 1."""
    alpha = mask.detach().cpu().float().numpy() * OVERLAY_OPACITY
    colour = np.broadcast_to(OVERLAY_COLOUR, (*alpha.shape, 3))
    return _uint8(_small(np.dstack([colour, alpha]).astype(np.float32), max_side))


def cutout(frame: torch.Tensor, alpha: torch.Tensor, max_side: int = PREVIEW_SIDE) -> np.ndarray:
    """``[H, W, 3]`` frame with ``[H, W]`` alpha -> RGBA uint8 (the person alone, for placing by hand)."""
    rgba = np.dstack([frame.detach().cpu().float().numpy(), alpha.detach().cpu().float().numpy()])
    return _uint8(_small(rgba, max_side))


def preview_frames(
    frames: Optional[torch.Tensor], mask: Optional[torch.Tensor] = None, *, count: int = PREVIEW_FRAMES,
    max_side: int = PREVIEW_SIDE,
) -> Tuple[List[int], List[np.ndarray]]:
    """(frame numbers, RGB uint8 pictures) of up to ``count`` frames of a ``[T, H, W, 3]`` clip, with a
    ``[T, H, W]`` mask drawn over them when given (a mask alone is drawn over black)."""
    total = (frames if frames is not None else mask).shape[0]
    indices = preview_indices(total, count)
    pictures = []
    for index in indices:  # scaled down first: the overlay is drawn on the small picture
        mask_small = _small(mask[index].detach().cpu().float().numpy(), max_side) if mask is not None else None
        if frames is not None:
            picture = _small(frames[index].detach().cpu().float().numpy(), max_side)
        else:
            picture = np.zeros((*mask_small.shape, 3), np.float32)
        pictures.append(_uint8(_overlay(picture, mask_small) if mask_small is not None else picture))
    return indices, pictures

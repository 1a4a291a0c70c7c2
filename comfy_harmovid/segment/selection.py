"""Which of the people in a mask the user means: pick them on one frame by prompts, follow them through the clip.

The built-in segmenter masks every person in a frame. Prompts choose among them: on the prompt
frame, a person (a connected region of the mask) is kept when it holds a positive point or lies in
the box, and dropped when it holds a negative point. From there the choice is carried frame by
frame, forward and backward: a region of the next frame is kept when it overlaps more of the
previous frame's kept people than of its dropped ones, so people who appear later are not added.
People who touch form one region and are kept or dropped together.
"""

from typing import Optional, Tuple

import cv2
import numpy as np
import torch

from ..errors import HarmoVidError
from .prompts import Prompts, check_prompt_frame

# A click this far (fraction of the frame's longer side) outside a person's mask still picks that
# person: clicks land on hair and edges the binary mask leaves out.
POINT_REACH = 0.03
# Soft masks keep their probability this far (fraction of the longer side) around a kept person.
SOFT_MARGIN = 0.02


def _regions(binary: np.ndarray) -> Tuple[int, np.ndarray]:
    count, labels = cv2.connectedComponents(binary.astype(np.uint8), connectivity=8)
    return count, labels


def _pick(labels: np.ndarray, count: int, chosen) -> np.ndarray:
    """Bool mask of the regions whose labels are in ``chosen`` (a lookup table: one pass over the pixels)."""
    table = np.zeros(count, bool)
    table[[label for label in chosen if label > 0]] = True
    return table[labels]


def _region_at(labels: np.ndarray, point, reach: int) -> int:
    """Label of the region under ``point`` (x, y), else of the nearest one within ``reach`` pixels, else 0."""
    x, y = int(round(point[0])), int(round(point[1]))
    if labels[y, x]:
        return int(labels[y, x])
    top, left = max(0, y - reach), max(0, x - reach)
    window = labels[top : y + reach + 1, left : x + reach + 1]
    rows, cols = np.nonzero(window)
    if not len(rows):
        return 0
    distance = (rows + top - y) ** 2 + (cols + left - x) ** 2
    nearest = int(np.argmin(distance))
    return int(window[rows[nearest], cols[nearest]]) if distance[nearest] <= reach * reach else 0


def _regions_in_box(labels: np.ndarray, count: int, box) -> set:
    """Regions with at least half their area inside ``box``."""
    x1, y1, x2, y2 = box
    inside = np.zeros(labels.shape, bool)
    inside[max(0, int(np.ceil(y1))) : int(np.floor(y2)) + 1, max(0, int(np.ceil(x1))) : int(np.floor(x2)) + 1] = True
    area = np.bincount(labels.ravel(), minlength=count)
    area_inside = np.bincount(labels[inside].ravel(), minlength=count)
    return {label for label in range(1, count) if area_inside[label] * 2 >= area[label]}


def pick_on_prompt_frame(binary: np.ndarray, prompts: Prompts, frame_index: int = 0) -> np.ndarray:
    """``[H, W]`` bool mask of all people -> bool mask of the people the prompts pick on this frame."""
    height, width = binary.shape
    prompts.check_frame(height, width)
    count, labels = _regions(binary)
    reach = max(1, round(POINT_REACH * max(height, width)))
    if prompts.positive or prompts.box is not None:
        kept = set()
        for point in prompts.positive:
            label = _region_at(labels, point, reach)
            if not label:
                raise HarmoVidError(
                    f"positive point {point[0]:g},{point[1]:g} is not on a person the built-in segmenter finds on "
                    f"frame {frame_index}. Click on the person, pick a prompt_frame where they are visible, "
                    "or use a SAM 2 checkpoint."
                )
            kept.add(label)
        if prompts.box is not None:
            in_box = _regions_in_box(labels, count, prompts.box)
            if not in_box:
                raise HarmoVidError(
                    f"box {','.join(f'{v:g}' for v in prompts.box)} holds no person the built-in segmenter finds "
                    f"on frame {frame_index}. Draw it around the person, or use a SAM 2 checkpoint."
                )
            kept |= in_box
    else:  # only negative points: everyone else stays
        kept = set(range(1, count))
    kept -= {_region_at(labels, point, reach) for point in prompts.negative}
    return _pick(labels, count, kept)


def follow(binary: np.ndarray, kept: np.ndarray, dropped: np.ndarray) -> np.ndarray:
    """The regions of ``binary`` (``[H, W]`` bool, a neighbouring frame) that continue the kept people:
    each overlaps more of ``kept`` than of ``dropped`` (the previous frame's choice)."""
    count, labels = _regions(binary)
    on_kept = np.bincount(labels[kept].ravel(), minlength=count)
    on_dropped = np.bincount(labels[dropped].ravel(), minlength=count)
    return _pick(labels, count, np.nonzero(on_kept > on_dropped)[0])


def select_prompted_people(
    masks: torch.Tensor,
    prompts: Optional[Prompts],
    prompt_frame: int = 0,
    *,
    threshold: float = 0.5,
    soft: bool = False,
) -> torch.Tensor:
    """Keep only the people ``prompts`` pick on ``prompt_frame`` in a ``[T, H, W]`` mask of all people.

    ``masks`` is binary, or a probability when ``soft`` (people are where it exceeds ``threshold``;
    the probability is kept in a thin margin around each kept person). No prompts: ``masks`` as is.
    Works frame by frame: besides the result, only a few frames are held.
    """
    if not prompts:
        return masks
    total = masks.shape[0]
    check_prompt_frame(prompt_frame, total)
    on_cpu = masks.detach().cpu()
    out = torch.empty_like(masks)
    buffer = np.empty(masks.shape[1:], np.float32)
    grow = None
    if soft:
        size = 2 * max(1, round(SOFT_MARGIN * max(masks.shape[1:]))) + 1
        grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))

    def people(index: int) -> np.ndarray:
        return on_cpu[index].float().numpy() > threshold

    def keep(index: int, kept: np.ndarray) -> None:
        region = cv2.dilate(kept.astype(np.uint8), grow) > 0 if grow is not None else kept
        np.multiply(on_cpu[index].float().numpy(), region, out=buffer)
        out[index].copy_(torch.from_numpy(buffer))

    first = people(prompt_frame)
    chosen = pick_on_prompt_frame(first, prompts, prompt_frame)
    keep(prompt_frame, chosen)
    for order in (range(prompt_frame + 1, total), range(prompt_frame - 1, -1, -1)):
        # A frame where the kept people vanish (a missed detection) leaves the last frame that had them
        # as the reference for the next one.
        kept, dropped = chosen, first & ~chosen
        for index in order:
            binary = people(index)
            current = follow(binary, kept, dropped) if kept.any() else np.zeros_like(binary)
            keep(index, current)
            if current.any():
                kept, dropped = current, binary & ~current
    return out

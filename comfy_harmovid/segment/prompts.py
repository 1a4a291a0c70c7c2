"""Point and box prompts: read from text (node widgets, command-line options) and checked against a frame.

The same text means the same thing with every segmenter: positive points on the person, negative
points on what is not the person, a box around the person, all in pixels of the prompt frame.
"""

import json
import math
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import HarmoVidError

Point = Tuple[float, float]
Box = Tuple[float, float, float, float]


def _finite(values, name: str, text: str):
    if not all(math.isfinite(v) for v in values):
        raise HarmoVidError(f"{name}: {text!r} holds a number that is not finite; write pixel coordinates.")
    return values


def parse_points(text: Optional[str], name: str = "points") -> List[Point]:
    """``"x,y; x,y"`` (also newlines between points) or JSON ``[{"x": .., "y": ..}, ...]`` -> [(x, y), ...].

    Empty text gives no points. Coordinates are pixels of the frame.
    """
    text = (text or "").strip()
    if not text:
        return []
    if text.startswith("["):  # the JSON list that ComfyUI point-editor nodes produce
        try:
            points = [(float(p["x"]), float(p["y"])) for p in json.loads(text)]
        except (ValueError, TypeError, KeyError) as error:
            raise HarmoVidError(f"{name}: cannot read {text!r} as JSON points [{{\"x\": 10, \"y\": 20}}] ({error}).") from None
        return [_finite(point, name, text) for point in points]
    points = []
    for part in re.split(r"[;\n]+", text):
        numbers = [n for n in re.split(r"[,\s]+", part.strip()) if n]
        if not numbers:
            continue
        try:
            x, y = (float(n) for n in numbers)
        except ValueError:
            raise HarmoVidError(
                f"{name}: {part.strip()!r} is not a point. Write pixel coordinates as 'x,y; x,y', e.g. '320,180; 300,400'."
            ) from None
        points.append(_finite((x, y), name, text))
    return points


def parse_box(text: Optional[str]) -> Optional[Box]:
    """``"x1,y1,x2,y2"`` (pixels, x1 < x2 and y1 < y2) -> a 4-tuple, or None for empty text."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        values = tuple(float(n) for n in re.split(r"[,;\s]+", text.strip("[]() ")) if n)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise HarmoVidError(f"box: {text!r} is not a box. Write 'x1,y1,x2,y2' in pixels, e.g. '100,40,420,480'.")
    _finite(values, "box", text)
    check_box_corners(values)
    return values


def check_box_corners(box: Sequence[float]) -> None:
    x1, y1, x2, y2 = box
    if not (x1 < x2 and y1 < y2):
        raise HarmoVidError(f"box must be x1,y1,x2,y2 pixels with x1 < x2 and y1 < y2, got {list(box)}.")


def check_points_in_frame(points: np.ndarray, height: int, width: int) -> None:
    """``points`` ``[N, 2]`` x,y pixels; a clear error names the first one outside the frame."""
    outside = (points[:, 0] < 0) | (points[:, 0] > width - 1) | (points[:, 1] < 0) | (points[:, 1] > height - 1)
    if outside.any():
        raise HarmoVidError(
            f"point {points[outside][0].tolist()} is outside the {width}x{height} frame; points are x,y pixels."
        )


def check_prompt_frame(prompt_frame: int, total: int) -> int:
    if not 0 <= prompt_frame < total:
        raise HarmoVidError(f"prompt_frame {prompt_frame} is outside the clip (frames 0..{total - 1}).")
    return int(prompt_frame)


@dataclass(frozen=True)
class Prompts:
    """What the user marked on the prompt frame: points on the person, points off it, a box around it."""

    positive: Tuple[Point, ...] = ()
    negative: Tuple[Point, ...] = ()
    box: Optional[Box] = None

    @classmethod
    def parse(cls, points: Optional[str] = "", negative_points: Optional[str] = "", box: Optional[str] = "") -> "Prompts":
        """The three widget texts -> Prompts; malformed text is a clear error."""
        return cls(tuple(parse_points(points, "points")), tuple(parse_points(negative_points, "negative_points")),
                   parse_box(box))

    def __bool__(self) -> bool:
        return bool(self.positive or self.negative or self.box is not None)

    def check_frame(self, height: int, width: int) -> None:
        """Every point inside a ``width`` x ``height`` frame (the box may reach past it)."""
        for points in (self.positive, self.negative):
            if points:
                check_points_in_frame(np.asarray(points, np.float32), height, width)
        if self.box is not None:
            check_box_corners(self.box)

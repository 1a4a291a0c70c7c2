"""Point and box prompts written as text (node widgets, command-line options)."""

import json
import re
from typing import List, Optional, Tuple

from ..errors import HarmoVidError

Point = Tuple[float, float]


def parse_points(text: Optional[str], name: str = "points") -> List[Point]:
    """``"x,y; x,y"`` (also newlines between points) or JSON ``[{"x": .., "y": ..}, ...]`` -> [(x, y), ...].

    Empty text gives no points. Coordinates are pixels of the frame.
    """
    text = (text or "").strip()
    if not text:
        return []
    if text.startswith("["):  # the JSON list that ComfyUI point-editor nodes produce
        try:
            return [(float(p["x"]), float(p["y"])) for p in json.loads(text)]
        except (ValueError, TypeError, KeyError) as error:
            raise HarmoVidError(f"{name}: cannot read {text!r} as JSON points [{{\"x\": 10, \"y\": 20}}] ({error}).") from None
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
        points.append((x, y))
    return points


def parse_box(text: Optional[str]) -> Optional[Tuple[float, float, float, float]]:
    """``"x1,y1,x2,y2"`` (pixels) -> a 4-tuple, or None for empty text."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        values = tuple(float(n) for n in re.split(r"[,;\s]+", text.strip("[]() ")) if n)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise HarmoVidError(f"box: {text!r} is not a box. Write 'x1,y1,x2,y2' in pixels, e.g. '100,40,420,480'.")
    return values

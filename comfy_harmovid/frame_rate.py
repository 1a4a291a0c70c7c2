"""Changing a clip's frame rate by picking frames: the one rule that reading a video at another rate
(``io``) and compositing clips of different rates (``composite.frame_schedule``) both follow.

Output frame ``k`` is shown at time ``k / output_fps``; it takes the source frame on screen at that
moment, the last one starting at or before it: source index ``floor(k * source_fps / output_fps)``.
Frames are repeated (to a higher rate) or dropped (to a lower one) and the duration stays the same.
"""

import math

# A time within a millionth of a frame of a frame's start counts as that frame's start, so exact
# ratios (30 -> 15, 24 -> 48) land on whole frames despite floating-point rounding. The rounding of
# ``k * source_fps / output_fps`` stays below 1e-9 frames for any clip shorter than a million frames,
# and two real frame rates (29.97 vs 30) put their frame starts at least 1e-3 frames apart.
FRAME_TOLERANCE = 1e-6


def source_frame(output_index: int, source_fps: float, output_fps: float) -> int:
    """The source frame on screen at output frame ``output_index`` (both rates positive)."""
    return math.floor(output_index * source_fps / output_fps + FRAME_TOLERANCE)


def output_frame_count(source_frames: int, source_fps: float, output_fps: float) -> int:
    """How many output frames the source's duration covers: those whose :func:`source_frame` is one of
    its ``source_frames`` frames."""
    count = math.ceil(source_frames * output_fps / source_fps)
    # The estimate can be one off where the tolerance or rounding moves a frame across the end.
    while count > 0 and source_frame(count - 1, source_fps, output_fps) >= source_frames:
        count -= 1
    while source_frame(count, source_fps, output_fps) < source_frames:
        count += 1
    return count

"""Compositing: place a foreground clip with its alpha over a background clip.

The pieces, usable one by one by a streaming caller:

- :func:`frame_schedule` decides which foreground and background frame make each output frame
  (different lengths and frame rates; the output runs at the background's frame rate by default);
- :class:`Placement` scales and positions a foreground chunk (frames or alpha) on the background canvas;
- :func:`decontaminate_foreground` removes the old background's colour from the soft edge
  (Forte & Pitie 2021, "blur fusion" fast foreground estimation);
- :func:`alpha_over` blends;
- :func:`composite_chunk` does all of that for one chunk.

:func:`composite` runs them over whole clips.
"""

import math
from typing import List, NamedTuple, Optional, Tuple

import cv2
import numpy as np
import torch

from .errors import HarmoVidError
from .filters import bounding_slices, box_mean, downsample, enlarge_array, one_torch_thread, resize, upsample_at
from .frame_rate import output_frame_count, source_frame
from .progress import ProgressCallback, report
from .validate import check_frames, check_mask, check_same_length, check_same_size

ANCHORS = {
    # name: (horizontal, vertical) position of the anchor point as a fraction of the width/height
    "top-left": (0.0, 0.0),
    "top-center": (0.5, 0.0),
    "top-right": (1.0, 0.0),
    "center-left": (0.0, 0.5),
    "center": (0.5, 0.5),
    "center-right": (1.0, 0.5),
    "bottom-left": (0.0, 1.0),
    "bottom-center": (0.5, 1.0),
    "bottom-right": (1.0, 1.0),
}
LENGTH_POLICIES = ("shortest", "loop", "ping-pong", "hold")


class CompositeResult(NamedTuple):
    composite: torch.Tensor  # [T, H, W, 3] at background size
    alpha: torch.Tensor  # [T, H, W] the placed alpha, 1 = foreground
    background: torch.Tensor  # [T, H, W, 3] the background frames aligned with the composite


# ----------------------------------------------------------------------------------------------
# Time: which frames make each output frame


def _extend(index: int, count: int, policy: str) -> int:
    """Map a frame index past the end of a clip of ``count`` frames back into it."""
    if index < count:
        return index
    if policy == "loop":
        return index % count
    if policy == "ping-pong":
        if count == 1:
            return 0
        period = 2 * count - 2
        phase = index % period
        return phase if phase < count else period - phase
    return count - 1  # hold (and shortest, which never asks past the end)


def frame_schedule(
    foreground_frames: int,
    background_frames: int,
    *,
    foreground_fps: Optional[float] = None,
    background_fps: Optional[float] = None,
    length_policy: str = "shortest",
    output_fps: Optional[float] = None,
) -> List[Tuple[int, int]]:
    """``(foreground_index, background_index)`` for each output frame.

    The output runs at ``output_fps`` (default: the background's frame rate); each clip is sampled at
    the output frame times, showing the frame on screen at that moment. When a frame rate is unknown
    (None or 0) the clips are taken frame by frame. ``length_policy`` sets the length: ``shortest``
    stops when either clip ends; ``loop``, ``ping-pong`` and ``hold`` run for the longer clip and
    repeat, bounce or freeze on the last frame of the shorter one.
    """
    if length_policy not in LENGTH_POLICIES:
        raise HarmoVidError(f"length_policy must be one of {', '.join(LENGTH_POLICIES)}; got {length_policy!r}.")
    for name, count in (("foreground", foreground_frames), ("background", background_frames)):
        if int(count) < 1:
            raise HarmoVidError(f"The {name} has no frames; give it at least one.")
    for name, fps in (("foreground_fps", foreground_fps), ("background_fps", background_fps), ("output_fps", output_fps)):
        if fps is not None and (not math.isfinite(fps) or fps < 0):
            raise HarmoVidError(f"{name} must be a positive frame rate (or 0/None for unknown); got {fps!r}.")
    if not foreground_fps or not background_fps:
        foreground_fps = background_fps = output_fps = 1.0  # unknown rates: frame by frame
    output_fps = output_fps or background_fps

    fg_length = output_frame_count(foreground_frames, foreground_fps, output_fps)
    bg_length = output_frame_count(background_frames, background_fps, output_fps)
    length = min(fg_length, bg_length) if length_policy == "shortest" else max(fg_length, bg_length)
    schedule = []
    for j in range(length):
        fg = _extend(source_frame(j, foreground_fps, output_fps), foreground_frames, length_policy)
        bg = _extend(source_frame(j, background_fps, output_fps), background_frames, length_policy)
        schedule.append((min(fg, foreground_frames - 1), min(bg, background_frames - 1)))
    return schedule


# ----------------------------------------------------------------------------------------------
# Space: where the foreground lands on the background


class Placement:
    """Scale and position foreground-sized images on a background-sized canvas.

    ``scale = 1`` fits the foreground inside the background keeping its aspect ratio (for a portrait
    clip: its height equals the background height); other values scale that size. ``anchor`` names
    the point of the foreground that is pinned to the same point of the background
    ("bottom-center" keeps a portrait standing on the bottom edge); ``x`` and ``y`` then move it by
    fractions of the background width and height (positive = right and down). Parts that fall off
    the canvas are cropped; the canvas outside the foreground gets alpha 0.
    """

    def __init__(self, foreground_size, background_size, *, scale=1.0, x=0.0, y=0.0, anchor="bottom-center"):
        if anchor not in ANCHORS:
            raise HarmoVidError(f"anchor must be one of {', '.join(ANCHORS)}; got {anchor!r}.")
        if not (math.isfinite(scale) and scale > 0):
            raise HarmoVidError(f"scale must be a positive number (1 = fit the background); got {scale!r}.")
        if not (math.isfinite(x) and math.isfinite(y)):
            raise HarmoVidError(f"x and y must be finite fractions of the background size; got {x!r}, {y!r}.")
        self.foreground_size = (int(foreground_size[0]), int(foreground_size[1]))
        self.background_size = (int(background_size[0]), int(background_size[1]))
        fg_h, fg_w = self.foreground_size
        bg_h, bg_w = self.background_size
        fit = min(bg_h / fg_h, bg_w / fg_w)
        self.size = (max(1, round(fg_h * fit * scale)), max(1, round(fg_w * fit * scale)))  # placed (h, w)
        ax, ay = ANCHORS[anchor]
        # Top-left corner of the placed foreground on the canvas, in whole pixels.
        self.top = round(ay * (bg_h - self.size[0]) + y * bg_h)
        self.left = round(ax * (bg_w - self.size[1]) + x * bg_w)

    def _crop_boxes(self):
        """(canvas rows, canvas cols, foreground rows, foreground cols) of the visible overlap, or None."""
        bg_h, bg_w = self.background_size
        h, w = self.size
        top, left = max(self.top, 0), max(self.left, 0)
        bottom, right = min(self.top + h, bg_h), min(self.left + w, bg_w)
        if bottom <= top or right <= left:
            return None
        return (
            slice(top, bottom),
            slice(left, right),
            slice(top - self.top, bottom - self.top),
            slice(left - self.left, right - self.left),
        )

    @property
    def visible(self) -> bool:
        """False when the foreground is placed entirely off the canvas."""
        return self._crop_boxes() is not None

    def _check_size(self, tensor: torch.Tensor, name: str) -> None:
        if tuple(tensor.shape[1:3]) != self.foreground_size:
            h, w = self.foreground_size
            raise HarmoVidError(
                f"Placement: {name} is {tensor.shape[2]}x{tensor.shape[1]} but this placement was made for a "
                f"{w}x{h} foreground. Make a new Placement for clips of another size."
            )

    def place_alpha(self, alpha: torch.Tensor) -> torch.Tensor:
        """Alpha ``[T, h, w]`` at foreground size -> ``[T, H, W]`` on the canvas (0 where not covered)."""
        self._check_size(alpha, "alpha")
        canvas = alpha.new_zeros((alpha.shape[0], *self.background_size))
        boxes = self._crop_boxes()
        if boxes is not None:
            rows, cols, fg_rows, fg_cols = boxes
            canvas[:, rows, cols] = resize(alpha, self.size)[:, fg_rows, fg_cols].clamp(0, 1)
        return canvas

    def place_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``[T, h, w, 3]`` at foreground size -> ``[T, H, W, 3]`` on the canvas (0 where not covered)."""
        self._check_size(frames, "frames")
        canvas = frames.new_zeros((frames.shape[0], *self.background_size, 3))
        boxes = self._crop_boxes()
        if boxes is not None:
            canvas[:, boxes[0], boxes[1]] = self._visible_frames(frames, boxes)
        return canvas

    def _visible_frames(self, frames: torch.Tensor, boxes) -> torch.Tensor:
        """The part of ``frames`` that lands on the canvas, scaled: ``[T, rows, cols, 3]``."""
        _, _, fg_rows, fg_cols = boxes
        placed = resize(frames.permute(0, 3, 1, 2), self.size).permute(0, 2, 3, 1)
        return placed[:, fg_rows, fg_cols].clamp(0, 1)

    def over(self, frames: torch.Tensor, placed_alpha: torch.Tensor, background: torch.Tensor, *,
             out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Frames ``[T, h, w, 3]`` placed over ``background`` ``[T, H, W, 3]`` through ``placed_alpha``
        (from :meth:`place_alpha`): ``alpha_over(place_frames(frames), background, placed_alpha)``,
        blended only inside the placed box (outside, the alpha is 0), without a canvas-sized copy.
        ``out``: where to write it (a copy of ``background``, or ``background`` itself); default a new copy."""
        self._check_size(frames, "frames")
        out = background.clone() if out is None else out
        boxes = self._crop_boxes()
        if boxes is not None:
            rows, cols = boxes[:2]
            out[:, rows, cols] = alpha_over(
                self._visible_frames(frames, boxes), background[:, rows, cols], placed_alpha[:, rows, cols]
            )
        return out


# ----------------------------------------------------------------------------------------------
# Colour: decontamination and blending


def _local_colours(image: torch.Tensor, alpha: torch.Tensor, radius: int):
    """Alpha-weighted local means of the foreground and background colours, ``[T, 3, h, w]`` each, on
    the image shrunk ``factor`` times, and that ``factor``.

    They only need to be smooth averages over ``radius``, so they are taken on an image shrunk until
    ``radius`` spans about 8 pixels; the caller scales them back up.
    """
    factor = max(1, radius // 8)
    small_radius = max(1, round(radius / factor))
    small_image, small_alpha = downsample(image, factor), downsample(alpha, factor)
    means = box_mean(torch.cat([small_alpha, small_image * small_alpha, small_image * (1 - small_alpha)], 1), small_radius)
    blurred_alpha = means[:, :1]
    local_fg = means[:, 1:4] / (blurred_alpha + 1e-5)
    local_bg = means[:, 4:] / ((1 - blurred_alpha) + 1e-5)
    return local_fg, local_bg, factor


class _EdgeColours:
    """The local foreground and background colours that blur fusion explains soft pixels with, over the
    chunk's region around the foreground (``rows``, ``cols``: empty when there is no foreground).

    Only pixels near the foreground change; the margin keeps every window used there whole.
    ``radius`` defaults to 1/16 of the larger image side, at least 16 pixels."""

    def __init__(self, frames: torch.Tensor, alpha: torch.Tensor, radius: Optional[int] = None):
        radius = radius or max(16, max(frames.shape[1:3]) // 16)
        self.inner = bounding_slices(alpha, 0)  # rows and columns of every pixel of alpha > 0
        margin = radius + 16
        self.rows, self.cols = (slice(max(0, part.start - margin), min(size, part.stop + margin)) if part.stop > part.start
                                else part for part, size in zip(self.inner, alpha.shape[-2:]))
        if self.rows.stop > self.rows.start:
            self.fg, self.bg, self.factor = _local_colours(
                frames[:, self.rows, self.cols].permute(0, 3, 1, 2), alpha[:, self.rows, self.cols].unsqueeze(1), radius
            )

    def foreground_at(self, t: int, frame: torch.Tensor, weight: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor):
        """Decontaminated colours ``[N, 3]`` (clipped to 0..1) of frame ``t``'s pixels ``(ys, xs)``
        (region coordinates) whose colours are ``frame`` ``[N, 3]`` and alpha ``weight`` ``[N]``: the
        soft-pixel formula of :func:`decontaminate_foreground`."""
        local_fg = upsample_at(self.fg[t], self.factor, ys, xs).T
        local_bg = upsample_at(self.bg[t], self.factor, ys, xs).T
        w = weight[:, None]
        return (local_fg + w * (frame - w * local_fg - (1 - w) * local_bg)).clamp_(0, 1)


def _narrowed(canvas: slice, source: slice, within: slice):
    """The ``canvas`` and ``source`` slices (same length, one shifted from the other) cut down to the
    source positions ``within``."""
    start, stop = max(source.start, within.start), min(source.stop, within.stop)
    shift = canvas.start - source.start
    return slice(start + shift, max(start, stop) + shift), slice(start, max(start, stop))


def _enlarge(small: torch.Tensor, factor: int, size) -> np.ndarray:
    """One frame's ``[3, h, w]`` local colours back at full ``size``, as an ``[H, W, 3]`` array."""
    return enlarge_array(np.ascontiguousarray(small.permute(1, 2, 0).numpy()), factor, size)


def decontaminate_foreground(frames: torch.Tensor, alpha: torch.Tensor, *, radius: Optional[int] = None) -> torch.Tensor:
    """Foreground colours with the old background removed from the soft edge: ``[T, H, W, 3]``.

    Blur fusion (Forte & Pitie 2021, "approximate fast foreground colour estimation"): local
    averages of the foreground and background colours explain each soft pixel as
    ``alpha * F + (1 - alpha) * B``; the part of the pixel they do not explain is added to F.
    Where ``alpha`` is 1 the frames are unchanged; where it is soft, the colour becomes the foreground
    alone (so a green screen or a bright wall does not fringe the edge when composited elsewhere);
    where it is 0, the nearby foreground colour, so resizing does not pull the old background in
    either. ``radius`` must reach well past the soft band into solid foreground and clean background;
    it defaults to 1/16 of the larger image side (at least 16 pixels), near the 90 pixels Forte &
    Pitie use on 1-2 megapixel images. Their second, narrow pass is left out: on the green-screen
    clip lp_d0 it left more green on the edge, not less.
    """
    frames = check_frames(frames, "foreground")
    alpha = check_mask(alpha, "alpha")
    check_same_size(frames, alpha, "foreground", "alpha")
    check_same_length(frames, alpha, "foreground", "alpha")
    alpha = alpha.detach().to("cpu", torch.float32).clamp(0, 1)
    out = frames.detach().to("cpu", torch.float32, copy=True)
    colours = _EdgeColours(out, alpha, radius)
    if colours.rows.stop == colours.rows.start:  # no foreground anywhere: nothing to clean
        return out.to(frames.device, frames.dtype)
    rows, cols, local_fg, local_bg, factor = colours.rows, colours.cols, colours.fg, colours.bg, colours.factor
    a = alpha[:, rows, cols]
    size = a.shape[-2:]
    # Frame by frame, and the full formula only on the soft pixels (a thin band): the solid
    # foreground keeps its colours, the background becomes the local foreground colour.
    for t in range(out.shape[0]):
        image, weight = out[t, rows, cols].numpy(), a[t].numpy()
        estimate = _enlarge(local_fg[t], factor, size)
        soft = (weight > 0) & (weight < 1)
        if soft.any():
            w = weight[soft][:, None]
            fg_soft = estimate[soft]
            bg_soft = _enlarge(local_bg[t], factor, size)[soft]
            estimate[soft] = fg_soft + w * (image[soft] - w * fg_soft - (1 - w) * bg_soft)
        np.clip(estimate, 0, 1, out=estimate)
        np.copyto(image, estimate, where=(weight < 1)[..., None])  # writes into ``out``
    return out.to(frames.device, frames.dtype)


def composite_chunk(
    foreground: torch.Tensor, background: torch.Tensor, alpha: torch.Tensor, placement: Placement,
    decontaminate: bool = True, *, in_place: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One chunk of a composite: ``foreground`` ``[T, h, w, 3]`` with its ``alpha`` ``[T, h, w]`` placed
    over the matching ``background`` frames ``[T, H, W, 3]``. Returns ``(composite, placed alpha)``.
    ``in_place``: write the composite into ``background`` (a CPU float32 tensor) instead of a copy."""
    with one_torch_thread():
        placed_alpha = placement.place_alpha(alpha)
        out = background if in_place else background.clone()
        if decontaminate and placement.size == placement.foreground_size:
            return _over_decontaminated(foreground, alpha, placement, out), placed_alpha
        if decontaminate:
            foreground = decontaminate_foreground(foreground, alpha)
        return placement.over(foreground, placed_alpha, background, out=out), placed_alpha


def _over_decontaminated(foreground, alpha, placement: Placement, out: torch.Tensor) -> torch.Tensor:
    """``placement.over(decontaminate_foreground(foreground, alpha), ...)`` into ``out`` (the background
    frames) for a placement that keeps the foreground's size, touching only the pixels that show the
    person.

    Without resizing, a pixel of alpha 0 shows the background and one of alpha 1 the unchanged
    foreground, whatever decontamination makes of them, so the blur-fusion formula runs on the soft
    pixels only (a band along the edge) instead of on every pixel around the person."""
    foreground = check_frames(foreground, "foreground").detach().to("cpu", torch.float32)
    alpha = check_mask(alpha, "alpha").detach().to("cpu", torch.float32).clamp(0, 1)
    check_same_size(foreground, alpha, "foreground", "alpha")
    boxes = placement._crop_boxes()
    colours = _EdgeColours(foreground, alpha)
    if boxes is None or colours.rows.stop == colours.rows.start:
        return out
    rows, cols, fg_rows, fg_cols = boxes
    # Only the visible pixels of alpha > 0 change (the region holds them all).
    rows, fg_rows = _narrowed(rows, fg_rows, colours.inner[0])
    cols, fg_cols = _narrowed(cols, fg_cols, colours.inner[1])
    if fg_rows.stop <= fg_rows.start or fg_cols.stop <= fg_cols.start:
        return out
    # The region where colours were estimated, and the visible box, both in foreground coordinates.
    region_top, region_left = colours.rows.start, colours.cols.start
    for t in range(out.shape[0]):
        canvas = out[t, rows, cols].numpy()  # a view: written in place
        weight = alpha[t, fg_rows, fg_cols]
        frame = foreground[t, fg_rows, fg_cols]
        solid = (weight >= 1).numpy().view(np.uint8)
        cv2.copyTo(np.clip(frame.numpy(), 0, 1), solid, dst=canvas)  # in place (3x numpy's copyto where=)
        ys, xs = torch.nonzero((weight > 0) & (weight < 1), as_tuple=True)
        if ys.numel():
            w = weight[ys, xs]
            # The soft pixels in the estimation region's coordinates (it holds every pixel of alpha > 0).
            fg_ys, fg_xs = ys + (fg_rows.start - region_top), xs + (fg_cols.start - region_left)
            colour = colours.foreground_at(t, frame[ys, xs], w, fg_ys, fg_xs)
            under = torch.from_numpy(canvas)[ys, xs]
            torch.from_numpy(canvas)[ys, xs] = torch.lerp(under, colour, w[:, None])
    return out


def alpha_over(foreground: torch.Tensor, background: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``alpha * foreground + (1 - alpha) * background`` for ``[T, H, W, 3]`` frames and a ``[T, H, W]`` alpha."""
    a = alpha.clamp(0, 1).unsqueeze(-1)
    return torch.lerp(background, foreground, a)


# ----------------------------------------------------------------------------------------------
# Whole clips


def composite(
    foreground: torch.Tensor,
    background: torch.Tensor,
    alpha: torch.Tensor,
    *,
    scale: float = 1.0,
    x: float = 0.0,
    y: float = 0.0,
    anchor: str = "bottom-center",
    length_policy: str = "shortest",
    foreground_fps: Optional[float] = None,
    background_fps: Optional[float] = None,
    output_fps: Optional[float] = None,
    decontaminate: bool = True,
    progress: ProgressCallback = None,
    chunk_frames: int = 16,
) -> CompositeResult:
    """Place ``foreground`` ``[Tf, h, w, 3]`` with ``alpha`` ``[Tf, h, w]`` over ``background`` ``[Tb, H, W, 3]``.

    Returns the composite, the placed alpha and the aligned background, all at background size and
    with one frame per entry of :func:`frame_schedule`. See :class:`Placement` for scale/x/y/anchor.
    """
    foreground = check_frames(foreground, "foreground")
    background = check_frames(background, "background")
    alpha = check_mask(alpha, "alpha")
    check_same_size(foreground, alpha, "foreground", "alpha")
    check_same_length(foreground, alpha, "foreground", "alpha")
    schedule = frame_schedule(
        foreground.shape[0],
        background.shape[0],
        foreground_fps=foreground_fps,
        background_fps=background_fps,
        length_policy=length_policy,
        output_fps=output_fps,
    )
    placement = Placement(foreground.shape[1:3], background.shape[1:3], scale=scale, x=x, y=y, anchor=anchor)
    total = len(schedule)
    height, width = background.shape[1:3]
    out_composite = background.new_empty((total, height, width, 3))
    out_alpha = alpha.new_empty((total, height, width))
    out_background = background.new_empty((total, height, width, 3))
    for start in range(0, total, chunk_frames):
        pairs = schedule[start : start + chunk_frames]
        fg_index = torch.tensor([fg for fg, _ in pairs], device=foreground.device)
        bg_index = torch.tensor([bg for _, bg in pairs], device=background.device)
        window = slice(start, start + len(pairs))
        out_background[window] = background[bg_index]
        out_composite[window], out_alpha[window] = composite_chunk(
            foreground[fg_index], out_background[window], alpha[fg_index], placement, decontaminate
        )
        report(progress, start + len(pairs), total)
    return CompositeResult(out_composite, out_alpha, out_background)

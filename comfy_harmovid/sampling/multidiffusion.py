"""Temporal (and optionally spatial) MultiDiffusion: sample a latent longer than the model's window.

The latent ``[B, C, T', h, w]`` is covered by overlapping windows over its frames (the last one aligned
to the clip's end) and, optionally, overlapping tiles over its height and width. At every step:

1. each window is given to the model on its own (with classifier-free guidance);
2. its velocity is added into a full-size buffer, multiplied by the window's weight;
3. the buffer is divided by the summed weights;
4. the scheduler takes one step on the whole latent.

Peak memory per step therefore depends on the window, not on the clip length (the full-size buffers
are latents: 1/4 of the frames and 1/64 of the pixels of the video). With one window covering the
clip every weight is 1 and the result equals plain sampling bit for bit.

Weightings, along each axis that is split:

- ``flat``: 1 everywhere (a plain average where windows overlap).
- ``pyramid``: rises linearly from each side shared with a neighbour to 1 at the window's centre.
- ``overlap-linear``: 1 inside, linear ramps only across the frames shared with a neighbour, so two
  neighbours' ramps add up to exactly 1.

Sides at the clip's edge are never ramped: no other window covers them. ``pyramid`` is the default:
in ``harmovid bench diffusion``'s seam report it spreads the windows' disagreement over whole windows
and leaves the least jump at borders (flat leaves the most).
"""

from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

import torch

from ..errors import HarmoVidError
from ..progress import ProgressCallback, report

WEIGHTINGS = ("flat", "pyramid", "overlap-linear")
Span = Tuple[int, int]  # [start, stop) along one axis


def split_axis(length: int, size: int, overlap: int) -> List[Span]:
    """Spans of ``size`` covering ``length``, neighbours sharing ``overlap``, the last aligned to the end."""
    if size >= length:
        return [(0, length)]
    stride = size - overlap
    starts = list(range(0, length - size, stride)) + [length - size]
    return [(start, start + size) for start in starts]


def span_weights(spans: Sequence[Span], weighting: str) -> List[torch.Tensor]:
    """One 1-D float32 weight per span, positive everywhere, ramped only towards neighbours."""
    weights = []
    for index, (start, stop) in enumerate(spans):
        size = stop - start
        shared_before = spans[index - 1][1] - start if index > 0 else 0
        shared_after = stop - spans[index + 1][0] if index + 1 < len(spans) else 0
        weight = torch.ones(size, dtype=torch.float64)
        if weighting == "pyramid":
            centre = torch.arange(size, dtype=torch.float64) + 0.5
            if shared_before > 0:
                weight = torch.minimum(weight, centre / (size / 2))
            if shared_after > 0:
                weight = torch.minimum(weight, (size - centre) / (size / 2))
        elif weighting == "overlap-linear":
            if shared_before > 0:
                ramp = torch.arange(1, shared_before + 1, dtype=torch.float64) / (shared_before + 1)
                weight[:shared_before] = torch.minimum(weight[:shared_before], ramp)
            if shared_after > 0:
                ramp = torch.arange(shared_after, 0, -1, dtype=torch.float64) / (shared_after + 1)
                weight[size - shared_after :] = torch.minimum(weight[size - shared_after :], ramp)
        elif weighting != "flat":
            raise HarmoVidError(f"Unknown weighting '{weighting}'. Choose one of: {', '.join(WEIGHTINGS)}.")
        weights.append(weight.float())
    return weights


@dataclass(frozen=True)
class Window:
    """One block of the latent: spans over frames, rows and columns, and its 1-D weights along each."""

    frames: Span
    rows: Span
    cols: Span
    frame_weight: torch.Tensor
    row_weight: torch.Tensor
    col_weight: torch.Tensor

    @property
    def index(self):
        """Indexes ``[..., T', h, w]`` tensors."""
        return (Ellipsis, slice(*self.frames), slice(*self.rows), slice(*self.cols))

    def weight(self, device=None) -> torch.Tensor:
        """The window's weight ``[t, h, w]``: the outer product of its three 1-D weights."""
        weight = self.frame_weight[:, None, None] * self.row_weight[None, :, None] * self.col_weight[None, None, :]
        return weight.to(device)


def _round_down(value: int, multiple: int) -> int:
    return max(multiple, value // multiple * multiple)


@dataclass(frozen=True)
class MultiDiffusion:
    """Window settings, all in latent units (one latent frame = 4 video frames, one latent pixel = 8).

    ``window``/``overlap``: latent frames per temporal window and shared between neighbours (the paper's
    85-frame windows are 22 latent frames). ``tile``/``tile_overlap``: latent height and width of a
    spatial tile and the part shared with neighbours; ``tile`` 0 keeps whole frames.
    """

    window: int = 22
    overlap: int = 6
    weighting: str = "pyramid"
    tile: int = 0
    tile_overlap: int = 8

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise HarmoVidError(f"Unknown weighting '{self.weighting}'. Choose one of: {', '.join(WEIGHTINGS)}.")
        if self.window < 1 or not 0 <= self.overlap < self.window:
            raise HarmoVidError(
                f"MultiDiffusion needs window >= 1 and 0 <= overlap < window (latent frames), got window "
                f"{self.window}, overlap {self.overlap}. The paper uses 22 latent frames (85 video frames)."
            )
        if self.tile < 0 or (self.tile > 0 and not 0 <= self.tile_overlap < self.tile):
            raise HarmoVidError(
                f"Spatial tiles need tile 0 (off) or tile > tile_overlap >= 0 (latent pixels), got tile "
                f"{self.tile}, tile_overlap {self.tile_overlap}."
            )

    @classmethod
    def from_video_units(
        cls,
        window_frames: int = 85,
        overlap_frames: int = 24,
        weighting: str = "pyramid",
        tile_pixels: int = 0,
        tile_overlap_pixels: int = 64,
        temporal_compression: int = 4,
        spatial_compression: int = 8,
    ) -> "MultiDiffusion":
        """Settings given in video frames and pixels, as a user thinks of them, moved to the latent grid."""
        window = (max(window_frames, 1) - 1) // temporal_compression + 1
        overlap = min(round(overlap_frames / temporal_compression), window - 1)
        tile = tile_pixels // spatial_compression
        tile_overlap = min(round(tile_overlap_pixels / spatial_compression), max(tile - 1, 0))
        return cls(window, max(overlap, 0), weighting, tile, max(tile_overlap, 0))

    def layout(self, latent_shape: Sequence[int], frame_multiple: int = 1, tile_multiple: int = 1) -> List[Window]:
        """The windows covering a latent of ``latent_shape`` ``[B, C, T', h, w]``.

        ``frame_multiple``/``tile_multiple``: the model's patch sizes over frames and pixels; windows and
        tiles shorter than the latent are rounded down to them (the CogVideoX 1.5 layout needs even
        windows). A window or tile at least as long as the latent becomes one span over all of it.
        """
        frames, height, width = latent_shape[-3:]
        window = self.window if self.window >= frames else _round_down(self.window, frame_multiple)
        frame_spans = split_axis(frames, window, min(self.overlap, window - 1))
        if self.tile > 0:
            tile = self.tile if self.tile >= max(height, width) else _round_down(self.tile, tile_multiple)
            overlap = min(self.tile_overlap, tile - 1)
            row_spans, col_spans = split_axis(height, tile, overlap), split_axis(width, tile, overlap)
        else:
            row_spans, col_spans = [(0, height)], [(0, width)]
        frame_weights = span_weights(frame_spans, self.weighting)
        row_weights = span_weights(row_spans, self.weighting)
        col_weights = span_weights(col_spans, self.weighting)
        return [
            Window(f, r, c, fw, rw, cw)
            for f, fw in zip(frame_spans, frame_weights)
            for r, rw in zip(row_spans, row_weights)
            for c, cw in zip(col_spans, col_weights)
        ]

    def blend(
        self,
        windows: Sequence[Window],
        latents: torch.Tensor,
        predict: Callable[[Window], torch.Tensor],
        progress: ProgressCallback = None,
    ) -> torch.Tensor:
        """The velocity for the whole latent: each window's ``predict(window)``, weighted and normalised."""
        velocity = torch.zeros(latents.shape, dtype=torch.float32, device=latents.device)
        weight_sum = torch.zeros(latents.shape[-3:], dtype=torch.float32, device=latents.device)
        for done, window in enumerate(windows, start=1):
            weight = window.weight(latents.device)
            velocity[window.index] += predict(window) * weight
            weight_sum[window.index] += weight
            report(progress, done, len(windows))
        return velocity / weight_sum


def seam_report(latents: torch.Tensor, windows: Sequence[Window]) -> dict:
    """How much larger the frame-to-frame change is across temporal window borders than elsewhere.

    ``ratio`` near 1 means no visible seam; the differences are mean absolute values over a
    ``[B, C, T', h, w]`` latent (or any ``[..., T, H, W]`` tensor on the same frame grid).
    """
    frame_count = latents.shape[-3]
    steps = (latents[..., 1:, :, :] - latents[..., :-1, :, :]).abs().float()
    per_step = steps.transpose(0, -3).reshape(frame_count - 1, -1).mean(dim=1) if frame_count > 1 else steps
    borders = set()
    for start, stop in {window.frames for window in windows}:
        if start > 0:
            borders.add(start - 1)  # change from frame start-1 into the window's first frame
        if stop < frame_count:
            borders.add(stop - 1)  # change from the window's last frame to the next
    inside = [i for i in range(frame_count - 1) if i not in borders]
    border_jump = float(per_step[sorted(borders)].mean()) if borders else 0.0
    interior_jump = float(per_step[inside].mean()) if inside else 0.0
    return {
        "borders": len(borders),
        "border_jump": border_jump,
        "interior_jump": interior_jump,
        "ratio": border_jump / interior_jump if borders and interior_jump > 0 else 1.0,
    }

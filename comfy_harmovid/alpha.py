"""Pseudo-alpha: a soft, edge-following, temporally stable alpha from a binary or rough mask.

The paper (Sec. 3.3) conditions HarmoVid on a "pseudo alpha mask" that "smoothly decays the
foreground boundaries". Here it is made in three steps, all confined to a band around the mask
boundary; outside the band the alpha is exactly 0 or 1:

1. a smooth ramp: the mask blurred twice with box filters whose radii add up to ``band_width``
   (a tent filter), so it falls monotonically from 1 to 0 across the band;
2. edge following: a colour guided filter (He et al. 2013) with the frame as guide, the mask as
   input and a window of a third of the band, fits the alpha to the image's own edges (hair,
   anti-aliased outlines, a mask a pixel or two off); where the image has no edge its output is
   itself a smooth ramp. ``edge_awareness`` blends between the plain ramp (0) and the guided
   result (1, the default: it is the closest to a green-screen chroma key for binary, coarse and
   segmenter masks alike; docs/benchmarks.md, "Pseudo-alpha");
3. temporal smoothing: inside the band the alpha is averaged with the previous frame's alpha
   where the frame itself did not change, which removes shimmer of a jittering mask without
   dragging the alpha behind a moving person.

``band_width`` is in pixels on each side of the mask boundary, measured as a square (chessboard)
distance. The default of 12 suits 480p-1080p portraits; for 4K footage, or for masks that are off
by more than a few pixels, raise it.
"""

import math

import torch
import torch.nn.functional as F

from .errors import HarmoVidError
from .filters import (
    bounding_slices,
    downsample,
    fast_guided_filter_at,
    one_torch_thread,
    tent_count,
    tent_sum,
    upsample_at,
)
from .progress import ProgressCallback, report
from .validate import check_frames, check_mask, check_not_empty, check_same_length, check_same_size

# Guided filter regularisation (image values 0..1): small enough to snap to hair-level contrast,
# large enough that compression noise does not turn into alpha texture.
GUIDE_EPS = 1e-4
# Mean absolute colour change (0..1) at which temporal smoothing has fallen to exp(-1) of its strength:
# above sensor and compression noise, below the change a moving edge makes.
MOTION_SCALE = 0.04
# Side in pixels of the blocks whose mean colour change is the motion signal.
MOTION_BLOCK = 4
# The corrections' weight is WINDOW_GAIN * ramp * (1 - ramp), capped at 1: full over most of the band,
# fading out only in its outer few pixels (where the tent ramp is below about 5 %).
WINDOW_GAIN = 20.0


def _check_settings(band_width, edge_awareness, temporal_smoothing) -> None:
    if not isinstance(band_width, int) or isinstance(band_width, bool) or band_width < 1:
        raise HarmoVidError(f"band_width must be a whole number of pixels >= 1, got {band_width!r}.")
    if not 0.0 <= float(edge_awareness) <= 1.0:
        raise HarmoVidError(f"edge_awareness must be between 0 and 1, got {edge_awareness!r}.")
    if not 0.0 <= float(temporal_smoothing) < 1.0:
        raise HarmoVidError(
            f"temporal_smoothing must be in [0, 1) (0 = none, 0.9 = strong), got {temporal_smoothing!r}."
        )


class PseudoAlpha:
    """Streaming pseudo-alpha: ``process(frames_chunk, mask_chunk)`` returns the alpha of that chunk.

    The temporal smoothing carries over between calls, so a long clip fed chunk by chunk gives the
    same alpha as the whole clip at once. Call ``reset()`` before starting another clip.
    """

    def __init__(self, band_width: int = 12, edge_awareness: float = 1.0, temporal_smoothing: float = 0.5):
        _check_settings(band_width, edge_awareness, temporal_smoothing)
        self.band_width = band_width
        self.edge_awareness = float(edge_awareness)
        self.temporal_smoothing = float(temporal_smoothing)
        # A guided filter window of a third of the band follows hair and a coarse mask's true edge
        # best against a green-screen key. Its coefficients are computed at reduced resolution (1/3
        # for the default band, a ninth of the work for about the same alpha error; docs/benchmarks.md,
        # "Pseudo-alpha"); the fine detail comes from the full-resolution frame.
        self.guide_radius = max(2, band_width // 3)
        self.guide_subsample = max(1, self.guide_radius * 3 // 4)
        # Motion anywhere within reach of a pixel's alpha (the band plus the guide) stops its smoothing.
        self.motion_reach = math.ceil(2 * band_width / MOTION_BLOCK)
        self._grid = math.lcm(MOTION_BLOCK, self.guide_subsample)  # work areas start on both block grids
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (start of a new clip)."""
        self._previous_blocks = None  # [3, H / MOTION_BLOCK, W / MOTION_BLOCK] colour of the last frame
        self._previous_alpha = None  # [H, W]

    def process(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Alpha ``[T, H, W]`` for frames ``[T, H, W, 3]`` and their mask ``[T, H, W]`` (1 = foreground)."""
        frames = check_frames(frames)
        mask = check_mask(mask)
        check_same_size(frames, mask, "frames", "mask")
        check_same_length(frames, mask, "frames", "mask")
        if self._previous_alpha is not None and self._previous_alpha.shape != mask.shape[1:]:
            raise HarmoVidError(
                f"This chunk is {frames.shape[2]}x{frames.shape[1]} but the previous one was "
                f"{self._previous_alpha.shape[1]}x{self._previous_alpha.shape[0]}. Call reset() before a new clip."
            )
        with one_torch_thread():
            return torch.stack([self._frame(frame.float(), frame_mask.float().clamp(0, 1))
                                for frame, frame_mask in zip(frames, mask)])

    def _frame(self, frame: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Alpha ``[H, W]`` of one frame ``[H, W, 3]`` with its mask ``[H, W]``; updates the temporal state."""
        alpha = (mask >= 0.5).float()  # exact wherever no boundary is in reach
        blocks = downsample(frame.permute(2, 0, 1), MOTION_BLOCK)
        area = self._work_area(alpha)
        if area[0].stop > area[0].start:  # else no foreground at all: the alpha is 0
            alpha[area] = self._work_area_alpha(frame[area], mask[area], alpha[area], blocks, area)
        self._previous_blocks, self._previous_alpha = blocks, alpha
        return alpha

    def _work_area(self, binary: torch.Tensor):
        """Rows and columns that hold every mask boundary of the frame, with margin for all filters.

        Pixels outside are farther than the band from any boundary, so their alpha is the mask itself;
        the margin covers every filter's reach, and the corner sits on the downsampling grids, so the
        result inside is the same as computing the whole frame.
        """
        margin = 2 * self.band_width + 2 * self.guide_radius + 2 * self._grid
        return bounding_slices(binary, margin, self._grid)

    def _work_area_alpha(self, frame, mask, binary, blocks, area) -> torch.Tensor:
        """The alpha on the work area: the fixed 0/1 pixels, and the band computed pixel by pixel.

        The band (pixels with both foreground and background within ``band_width``) is a thin line
        around the person, so only the filters that need whole images (box sums, the guided filter's
        coefficients at reduced resolution, the motion blocks) run on the whole work area.
        """
        inner = self.band_width // 2
        outer = self.band_width - inner
        # The ramp is the tent-weighted share of foreground within band_width: counted in whole numbers,
        # it is exactly 0 (or 1) where no foreground (background) pixel lies in reach: those are fixed.
        count = tent_count(*binary.shape, inner, outer, binary.device)
        ramp = (tent_sum(binary, inner, outer) / count).float()
        out = (ramp == 1).float()
        ys, xs = torch.nonzero((ramp > 0) & (ramp < 1), as_tuple=True)  # the band
        if ys.numel() == 0:
            return out
        ramp = ramp[ys, xs]
        # Weight of the guided and temporal corrections: 1 near the boundary, falling to 0 where the
        # ramp reaches 0 or 1 at the band's edge, so the alpha stays continuous there.
        window = (WINDOW_GAIN * ramp * (1 - ramp)).clamp(0, 1)
        alpha = ramp
        if self.edge_awareness > 0:
            guide = frame.permute(2, 0, 1)
            guided = fast_guided_filter_at(guide, mask, self.guide_radius, GUIDE_EPS, self.guide_subsample, ys, xs)
            alpha = ramp + self.edge_awareness * window * (guided - ramp)
        alpha = alpha.clamp(0, 1)
        if self.temporal_smoothing > 0 and self._previous_alpha is not None:
            still = self._stillness(blocks, area)
            keep = self.temporal_smoothing * upsample_at(still[None], MOTION_BLOCK, ys, xs)[0] * window
            alpha = alpha + keep * (self._previous_alpha[area][ys, xs] - alpha)
        out[ys, xs] = alpha
        return out

    def _stillness(self, blocks, area) -> torch.Tensor:
        """Per block of the work area, 1 where nothing moved nearby since the previous frame, towards 0
        where it did: ``[h / MOTION_BLOCK, w / MOTION_BLOCK]``.

        blocks: ``[3, H / MOTION_BLOCK, W / MOTION_BLOCK]`` mean colours of the whole frame.
        """
        # Colour change of small blocks (so sensor noise does not read as motion), spread as far as
        # a pixel's alpha looks: an edge that moved nearby changes this pixel's alpha. The work
        # area starts on the block grid.
        rows, cols = (slice(s.start // MOTION_BLOCK, -(-s.stop // MOTION_BLOCK)) for s in area)
        change = (blocks[:, rows, cols] - self._previous_blocks[:, rows, cols]).abs().mean(0)
        reach = self.motion_reach
        change = F.max_pool2d(change[None], (1, 2 * reach + 1), stride=1, padding=(0, reach))
        change = F.max_pool2d(change, (2 * reach + 1, 1), stride=1, padding=(reach, 0))[0]
        return torch.exp(-((change / MOTION_SCALE) ** 2))


def pseudo_alpha(
    frames: torch.Tensor,
    mask: torch.Tensor,
    *,
    band_width: int = 12,
    edge_awareness: float = 1.0,
    temporal_smoothing: float = 0.5,
    progress: ProgressCallback = None,
    chunk_frames: int = 16,
) -> torch.Tensor:
    """Soft alpha ``[T, H, W]`` (1 = foreground) for a whole clip; see the module notes.

    frames: ``[T, H, W, 3]`` float 0..1; mask: ``[T, H, W]`` binary or rough, 1 = foreground.
    The alpha is exactly 0 or 1 farther than ``band_width`` pixels from the mask boundary.
    """
    frames = check_frames(frames)
    mask = check_mask(mask)
    check_same_size(frames, mask, "frames", "mask")
    check_same_length(frames, mask, "frames", "mask")
    check_not_empty(mask)
    maker = PseudoAlpha(band_width, edge_awareness, temporal_smoothing)
    total = frames.shape[0]
    out = torch.empty(mask.shape, dtype=torch.float32, device=mask.device)
    chunks = math.ceil(total / chunk_frames)
    for index in range(chunks):
        window = slice(index * chunk_frames, (index + 1) * chunk_frames)
        out[window] = maker.process(frames[window], mask[window])
        report(progress, min((index + 1) * chunk_frames, total), total)
    return out

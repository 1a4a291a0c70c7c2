"""The statistics method of per-frame HarmoIm: no weights, robust colour statistics only.

It moves the person part of the way toward the background's light, and only as far as the evidence
supports:

1. Robust statistics in CIE Lab at a reduced resolution: medians and quantile spreads of the foreground
   (alpha core) and of the background (the background plate when given, else the composite outside
   the alpha).
2. Colour cast: the difference of a/b medians, shrunk, held back when a second estimate (the
   near-neutral pixels of each region) disagrees with it, and clamped. Exposure and contrast: only the
   part of the L difference beyond what is natural between a person and their surroundings (a dead
   zone), shrunk and clamped. People are rarely the colour or brightness of their background, so a
   full transfer (what colour-transfer tools do) destroys skin and clothing.
3. The Lab change is fitted as one affine RGB map (3x3 matrix + offset) on a sample of foreground
   pixels, which is cheap to smooth over time and to apply at full resolution, and is applied through
   the soft alpha: where alpha is 0 the frame is untouched.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np
import torch

from ..color import lab_to_rgb, rgb_to_lab
from ..errors import HarmoVidError
from ..filters import float_array
from ..validate import check_frames, check_same_length, check_same_size, check_strength
from .chunks import checked_chunk, output_buffer

STATS_SIZE = 128  # short side (pixels) the statistics are measured at
STATS_PIXELS = 8192  # at most this many pixels per region enter the statistics
SAMPLE_PIXELS = 4096  # foreground pixels the affine colour map is fitted on


def _small(image: np.ndarray, size: int) -> torch.Tensor:
    """``[H, W]`` or ``[H, W, 3]`` array -> area-downsampled tensor whose short side is at most ``size``."""
    height, width = image.shape[:2]
    scale = min(1.0, size / min(height, width))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.ascontiguousarray(image))


def _subsample(pixels: torch.Tensor, limit: int) -> torch.Tensor:
    step = max(1, pixels.shape[0] // limit)
    return pixels[::step]


def _soft_threshold(x: torch.Tensor, dead_zone: float) -> torch.Tensor:
    return torch.sign(x) * (x.abs() - dead_zone).clamp(min=0.0)


def _plausible(difference: torch.Tensor, fade_start: float, fade_end: float) -> torch.Tensor:
    """1 for a gap a colour grade could cause, fading to 0 for a gap so large it must be the scene itself."""
    return ((fade_end - difference.abs()) / (fade_end - fade_start)).clamp(0.0, 1.0)


def _neutral_ab(lab: torch.Tensor, fraction: float = 0.25) -> torch.Tensor:
    """Mean a/b of the least saturated ``fraction`` of pixels ``[N, 3]``: a second, independent cast estimate."""
    chroma = lab[:, 1:].norm(dim=-1)
    count = max(1, int(fraction * lab.shape[0]))
    return lab[chroma.topk(count, largest=False).indices, 1:].mean(0)


@dataclass(frozen=True)
class StatisticsSettings:
    """How far the statistics method moves the person toward the background's light.

    Differences are measured in CIE Lab (D65; L 0..100, a and b about -128..127), between the medians
    of the person and of the background. A *shrink* is the share (0..1) of a difference that is applied;
    a *dead zone* is the part of a difference that is natural between a person and their surroundings
    and is never corrected; a *fade* ``(start, end)`` is where a difference stops being trusted: fully
    up to ``start``, not at all from ``end`` on (a gap that large is the scene itself, not a grade). The
    defaults, and the numbers they were chosen by, are in docs/benchmarks.md.
    """

    cast_shrink: float = 0.1  # share (0..1) of the a/b median difference applied as a colour cast
    max_cast: float = 4.0  # the largest cast applied: length of its (a, b) vector, Lab units
    cast_fade: Tuple[float, float] = (15.0, 25.0)  # fade of trust in the cast: a/b difference length, Lab units
    exposure_shrink: float = 0.25  # share (0..1) of the L difference beyond the dead zone applied
    exposure_dead_zone: float = 20.0  # L difference never corrected, Lab L units (0..100)
    max_exposure: float = 5.0  # the largest change of L applied, Lab L units
    exposure_fade: Tuple[float, float] = (30.0, 40.0)  # fade of trust in the exposure: L difference, Lab L units
    # Contrast: the ratio of the L spreads (10th to 90th percentile) of background and person.
    contrast_shrink: float = 0.0  # share (0..1) of the log ratio beyond the dead zone applied (0: off)
    contrast_dead_zone: float = 0.3  # log ratio never corrected (natural log: 0.3 is a ratio of 1.35)
    max_contrast: float = 1.25  # the largest factor on L around the person's median (its inverse the smallest)
    # Over time: the share (0..1, below 1) of the previous frames' colour map in each frame's; 0 = none.
    temporal_smoothing: float = 0.8

    def __post_init__(self):
        if not 0.0 <= self.temporal_smoothing < 1.0:
            raise HarmoVidError(f"temporal_smoothing must be in [0, 1), got {self.temporal_smoothing}.")


class StatisticsHarmonizer:
    """Streaming statistics harmonization: feed consecutive chunks to :meth:`process`.

    ``strength`` 0..1 scales the correction; ``settings`` (a :class:`StatisticsSettings`, default: its
    defaults) says how far it may go. The per-frame colour map is smoothed over time
    (``settings.temporal_smoothing``), so the correction does not flicker.
    """

    uses_background = True  # process() reads the scene's light from the background plate when given

    def __init__(self, strength: float = 1.0, *, settings: Optional[StatisticsSettings] = None):
        self.strength = check_strength(strength)
        if settings is None:
            settings = StatisticsSettings()
        if not isinstance(settings, StatisticsSettings):
            raise HarmoVidError(f"settings: expected a StatisticsSettings, got {type(settings).__name__}.")
        self.settings = settings
        self._colour_map = None  # smoothed [4, 3] affine RGB map
        self.last_correction = None  # the Lab change of the last frame (dict), for inspection

    def process(self, composite_chunk, alpha_chunk, background_chunk=None, *, out=None) -> torch.Tensor:
        """Harmonize the next ``[T, H, W, 3]`` composite frames given their alpha ``[T, H, W]``.

        ``out``: an optional float32 CPU tensor of the composite's shape to write the result into (and
        return), e.g. one buffer reused for every chunk; it must not overlap the composite.
        """
        composite, alpha = checked_chunk(composite_chunk, alpha_chunk)
        result = output_buffer(out, composite)
        if background_chunk is not None:
            background_chunk = check_frames(background_chunk, "background")
            check_same_size(composite, background_chunk, "composite", "background")
            check_same_length(composite, background_chunk, "composite", "background")
        for t in range(composite.shape[0]):
            background = None if background_chunk is None else float_array(background_chunk[t])
            result[t] = torch.from_numpy(self._frame(float_array(composite[t]), float_array(alpha[t]), background))
        return result.to(composite.device)

    def _frame(self, frame: np.ndarray, alpha: np.ndarray, background: Optional[np.ndarray]) -> np.ndarray:
        colour_map = self._measure(frame, alpha, background)
        if colour_map is not None:
            if self._colour_map is None:
                self._colour_map = colour_map
            else:
                keep = self.settings.temporal_smoothing
                self._colour_map = keep * self._colour_map + (1 - keep) * colour_map
        if self._colour_map is None or self.strength == 0.0:
            return frame.copy()
        # cv2.transform wants [3 out, 4 in]: the transposed [4 in, 3 out] map.
        mapped = cv2.transform(frame, self._colour_map.T.numpy().astype(np.float32))
        np.clip(mapped, 0.0, 1.0, out=mapped)
        mapped -= frame
        mapped *= (self.strength * alpha)[..., None]
        mapped += frame
        return mapped

    def _measure(self, frame, alpha, background) -> Optional[torch.Tensor]:
        """The affine RGB map ``[4, 3]`` for this frame, or None when the frame has too little foreground."""
        small_frame = _small(frame, STATS_SIZE)
        small_alpha = _small(alpha, STATS_SIZE)
        foreground_rgb = _subsample(small_frame[small_alpha > 0.9], STATS_PIXELS)
        if background is not None:
            background_rgb = _subsample(_small(background, STATS_SIZE).reshape(-1, 3), STATS_PIXELS)
        else:
            background_rgb = _subsample(small_frame[small_alpha < 0.1], STATS_PIXELS)
        if foreground_rgb.shape[0] < 16 or background_rgb.shape[0] < 16:
            return None
        fg, bg = rgb_to_lab(foreground_rgb), rgb_to_lab(background_rgb)
        quantiles = torch.tensor([0.1, 0.5, 0.9])
        fg_q = torch.quantile(fg, quantiles, dim=0)  # [3 quantiles, 3 channels]
        bg_q = torch.quantile(bg, quantiles, dim=0)

        settings = self.settings
        # Colour cast: median difference, trusted as far as the neutral-pixel estimate agrees with it.
        cast = bg_q[1, 1:] - fg_q[1, 1:]
        cast_neutral = _neutral_ab(bg) - _neutral_ab(fg)
        agreement = (cast * cast_neutral).sum() / (cast.norm() * cast_neutral.norm() + 1e-6)
        confidence = agreement.clamp(min=0.0) * _plausible(cast.norm(), *settings.cast_fade)
        cast = settings.cast_shrink * confidence * cast
        cast = cast * (settings.max_cast / cast.norm().clamp(min=settings.max_cast))

        # Exposure and contrast: only what exceeds the natural person/background difference.
        gap = bg_q[1, 0] - fg_q[1, 0]
        exposure = (settings.exposure_shrink * _soft_threshold(gap, settings.exposure_dead_zone)
                    * _plausible(gap, *settings.exposure_fade))
        exposure = exposure.clamp(-settings.max_exposure, settings.max_exposure)
        spread_ratio = (bg_q[2, 0] - bg_q[0, 0]).clamp(min=1.0) / (fg_q[2, 0] - fg_q[0, 0]).clamp(min=1.0)
        log_contrast = settings.contrast_shrink * _soft_threshold(spread_ratio.log(), settings.contrast_dead_zone)
        contrast = log_contrast.exp().clamp(1.0 / settings.max_contrast, settings.max_contrast)
        self.last_correction = {
            "cast_ab": cast.tolist(), "exposure": float(exposure), "contrast": float(contrast),
            "agreement": float(agreement),
        }

        # Fit the Lab change as an affine RGB map on a sample of foreground pixels.
        sample_rgb, sample_lab = _subsample(foreground_rgb, SAMPLE_PIXELS), _subsample(fg, SAMPLE_PIXELS)
        target_lab = sample_lab.clone()
        target_lab[:, 0] = (sample_lab[:, 0] - fg_q[1, 0]) * contrast + fg_q[1, 0] + exposure
        target_lab[:, 1:] += cast
        target_rgb = lab_to_rgb(target_lab).clamp(0.0, 1.0)
        design = torch.cat([sample_rgb, torch.ones(sample_rgb.shape[0], 1)], dim=1)
        # A little ridge toward the identity map keeps the fit stable on low-variety foregrounds.
        ridge = 1e-3 * sample_rgb.shape[0] * torch.eye(4)
        identity = torch.cat([torch.eye(3), torch.zeros(1, 3)])
        return torch.linalg.solve(design.T @ design + ridge, design.T @ target_rgb + ridge @ identity)

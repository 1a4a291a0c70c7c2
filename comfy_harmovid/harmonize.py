"""Per-frame image harmonization ("HarmoIm"): the weights-free statistics method and the learned one.

The learned method (``LearnedHarmonizer``, network and training in ``comfy_harmovid.harmoim``) predicts a
luminance-banded colour transform per frame from the composite and alpha, holds it back where it asserts
more than the scene supports (a bounded exposure change; no cooling of a person below a warm room's
cast), smooths it over time and applies it through the alpha; it needs the weights file the pack ships
(or one you trained).

The statistics method moves the person part of the way toward the background's light, and only as far
as the evidence supports:

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

import contextlib
from typing import Optional

import cv2
import numpy as np
import torch

from .color import lab_to_rgb, rgb_to_lab
from .errors import HarmoVidError
from .filters import float_array, one_torch_thread
from .progress import ProgressCallback, report
from .validate import (
    check_frames,
    check_mask,
    check_not_empty,
    check_same_length,
    check_same_size,
    check_strength,
)

METHODS = ("statistics", "learned")

STATS_SIZE = 128  # short side (pixels) the statistics are measured at
STATS_PIXELS = 8192  # at most this many pixels per region enter the statistics
SAMPLE_PIXELS = 4096  # foreground pixels the affine colour map is fitted on
# The most the learned method may change the person's mean luma (0..1): the median change the training
# LUTs make (0.053 on the training people). Beyond it the network mostly asserts its prior of how bright
# people are, learned from a handful of them: a darker-skinned person looks to it like an underexposed one.
MAX_EXPOSURE_CHANGE = 0.05


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


def _checked_chunk(composite_chunk, alpha_chunk):
    """The composite ``[T, H, W, 3]`` and alpha ``[T, H, W]`` chunk a harmonizer gets, validated together."""
    composite = check_frames(composite_chunk, "composite")
    alpha = check_mask(alpha_chunk, "alpha")
    check_same_size(composite, alpha, "composite", "alpha")
    check_same_length(composite, alpha, "composite", "alpha")
    return composite, alpha


def _output_buffer(out, composite: torch.Tensor) -> torch.Tensor:
    """Where a harmonizer writes the chunk: the caller's ``out`` once checked, else a new tensor.

    A buffer reused from chunk to chunk saves allocating a new chunk each time (at 720p and above a
    fresh chunk costs a page fault per 4 KiB touched, about as much as harmonizing it).
    """
    if out is None:
        return torch.empty(composite.shape, dtype=torch.float32)
    if not isinstance(out, torch.Tensor):
        raise HarmoVidError(f"out: expected a torch tensor to write the harmonized frames into, got {type(out).__name__}.")
    if tuple(out.shape) != tuple(composite.shape) or out.dtype != torch.float32:
        raise HarmoVidError(
            f"out: expected a float32 tensor of the composite chunk's shape {tuple(composite.shape)}, got "
            f"{out.dtype} {tuple(out.shape)}. Slice a reused buffer to the chunk's length (buffer[:T])."
        )
    if out.device.type != "cpu" or composite.device.type != "cpu" or not out.is_contiguous():
        raise HarmoVidError("out: a reusable output buffer works for CPU chunks only, and must be contiguous.")
    # Only a float32 composite is read in place (any other is converted to a float32 copy first).
    if composite.dtype == torch.float32 and np.may_share_memory(out.numpy(), composite.detach().numpy()):
        raise HarmoVidError("out must not overlap the composite chunk: harmonizing reads it while writing out.")
    return out


class StatisticsHarmonizer:
    """Streaming statistics harmonization: feed consecutive chunks to :meth:`process`.

    The per-frame colour map is smoothed over time (``temporal_smoothing`` is the weight of the history,
    0 = each frame on its own), so the correction does not flicker.
    """

    def __init__(
        self,
        strength: float = 1.0,
        *,
        cast_shrink: float = 0.1,
        max_cast: float = 4.0,
        cast_fade: tuple = (15.0, 25.0),
        exposure_shrink: float = 0.25,
        exposure_dead_zone: float = 20.0,
        max_exposure: float = 5.0,
        exposure_fade: tuple = (30.0, 40.0),
        contrast_shrink: float = 0.0,
        contrast_dead_zone: float = 0.3,
        max_contrast: float = 1.25,
        temporal_smoothing: float = 0.8,
    ):
        self.strength = check_strength(strength)
        self.cast_shrink = cast_shrink
        self.max_cast = max_cast
        self.cast_fade = cast_fade
        self.exposure_fade = exposure_fade
        self.exposure_shrink = exposure_shrink
        self.exposure_dead_zone = exposure_dead_zone
        self.max_exposure = max_exposure
        self.contrast_shrink = contrast_shrink
        self.contrast_dead_zone = contrast_dead_zone
        self.max_contrast = max_contrast
        if not 0.0 <= temporal_smoothing < 1.0:
            raise HarmoVidError(f"temporal_smoothing must be in [0, 1), got {temporal_smoothing}.")
        self.temporal_smoothing = temporal_smoothing
        self._colour_map = None  # smoothed [4, 3] affine RGB map
        self.last_correction = None  # the Lab change of the last frame (dict), for inspection

    def process(self, composite_chunk, alpha_chunk, background_chunk=None, *, out=None) -> torch.Tensor:
        """Harmonize the next ``[T, H, W, 3]`` composite frames given their alpha ``[T, H, W]``.

        ``out``: an optional float32 CPU tensor of the composite's shape to write the result into (and
        return), e.g. one buffer reused for every chunk; it must not overlap the composite.
        """
        composite, alpha = _checked_chunk(composite_chunk, alpha_chunk)
        result = _output_buffer(out, composite)
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
                self._colour_map = self.temporal_smoothing * self._colour_map + (1 - self.temporal_smoothing) * colour_map
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

        # Colour cast: median difference, trusted as far as the neutral-pixel estimate agrees with it.
        cast = bg_q[1, 1:] - fg_q[1, 1:]
        cast_neutral = _neutral_ab(bg) - _neutral_ab(fg)
        agreement = (cast * cast_neutral).sum() / (cast.norm() * cast_neutral.norm() + 1e-6)
        confidence = agreement.clamp(min=0.0) * _plausible(cast.norm(), *self.cast_fade)
        cast = self.cast_shrink * confidence * cast
        cast = cast * (self.max_cast / cast.norm().clamp(min=self.max_cast))

        # Exposure and contrast: only what exceeds the natural person/background difference.
        gap = bg_q[1, 0] - fg_q[1, 0]
        exposure = self.exposure_shrink * _soft_threshold(gap, self.exposure_dead_zone) * _plausible(gap, *self.exposure_fade)
        exposure = exposure.clamp(-self.max_exposure, self.max_exposure)
        spread_ratio = (bg_q[2, 0] - bg_q[0, 0]).clamp(min=1.0) / (fg_q[2, 0] - fg_q[0, 0]).clamp(min=1.0)
        log_contrast = self.contrast_shrink * _soft_threshold(spread_ratio.log(), self.contrast_dead_zone)
        contrast = log_contrast.exp().clamp(1.0 / self.max_contrast, self.max_contrast)
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


class LearnedHarmonizer:
    """Streaming learned harmonization: feed consecutive chunks to :meth:`process`.

    ``weights``: a weights file, a loaded ``HarmoImNet``, or None for the default weights. The predicted
    colour maps are smoothed over time (``temporal_smoothing`` = weight of the history) so that they do
    not flicker. The scene's light is read from the composite itself: a background plate is not needed.
    Two restraints hold back what the network asserts from its prior of how people look rather than
    reads from the scene (``harmoim.transform``): ``max_exposure_change`` is the most the person's mean
    luma (0..1) may change (None: no limit; see ``MAX_EXPOSURE_CHANGE``), and ``scene_cast`` keeps the
    person from losing more colour cast than the scene's light supports (``respect_scene_cast``).
    """

    def __init__(self, strength: float = 1.0, *, weights=None, temporal_smoothing: float = 0.7,
                 max_exposure_change: Optional[float] = MAX_EXPOSURE_CHANGE, scene_cast: bool = True):
        from .harmoim import HarmoImNet, load_harmoim

        self.strength = check_strength(strength)
        if not 0.0 <= temporal_smoothing < 1.0:
            raise HarmoVidError(f"temporal_smoothing must be in [0, 1), got {temporal_smoothing}.")
        if max_exposure_change is not None and not 0.0 <= max_exposure_change <= 1.0:
            raise HarmoVidError(f"max_exposure_change must be in [0, 1] or None, got {max_exposure_change}.")
        self.temporal_smoothing = temporal_smoothing
        self.max_exposure_change = max_exposure_change
        self.scene_cast = scene_cast
        self.net = weights if isinstance(weights, HarmoImNet) else load_harmoim(weights)
        self._maps = None  # smoothed [K, 4, 3] colour maps of the previous frame

    def process(self, composite_chunk, alpha_chunk, background_chunk=None, *, out=None) -> torch.Tensor:
        """Harmonize the next ``[T, H, W, 3]`` composite frames given their alpha ``[T, H, W]``.

        ``out``: an optional float32 CPU tensor of the composite's shape to write the result into (and
        return), e.g. one buffer reused for every chunk; it must not overlap the composite.
        """
        from .harmoim.transform import apply_to_frame

        composite, alpha = _checked_chunk(composite_chunk, alpha_chunk)
        result = _output_buffer(out, composite)
        frames, alphas = float_array(composite), float_array(alpha)
        maps = self._predict(frames, alphas)  # [T, K, 4, 3]
        target = result.numpy()
        for t in range(target.shape[0]):
            if self._maps is None:
                self._maps = maps[t]
            else:
                self._maps = self.temporal_smoothing * self._maps + (1 - self.temporal_smoothing) * maps[t]
            if self.strength == 0.0:
                target[t] = frames[t]
            else:
                apply_to_frame(frames[t], alphas[t], self._maps, self.strength, out=target[t])
        return result.to(composite.device)

    def _predict(self, frames: np.ndarray, alphas: np.ndarray) -> torch.Tensor:
        """The network's colour maps ``[T, K, 4, 3]`` for ``[T, H, W, 3]`` frames, seen at its input size."""
        from .harmoim.transform import limit_exposure, respect_scene_cast

        size = (self.net.config.input_size,) * 2
        small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
        small_alpha = np.stack([cv2.resize(a, size, interpolation=cv2.INTER_AREA) for a in alphas])
        device = next(self.net.parameters()).device
        # A small network on small images: on the CPU, torch's threads cost more than they save.
        threads = one_torch_thread() if device.type == "cpu" else contextlib.nullcontext()
        with threads, torch.inference_mode():
            composite, alpha = torch.from_numpy(small).to(device), torch.from_numpy(small_alpha).to(device)
            maps = self.net.predict_maps(composite.permute(0, 3, 1, 2), alpha[:, None])
            pixels, weights = composite.flatten(1, 2), alpha.flatten(1)
            if self.max_exposure_change is not None:
                maps = limit_exposure(maps, pixels, weights, self.max_exposure_change)
            if self.scene_cast:
                maps = respect_scene_cast(maps, pixels, weights)
            return maps.cpu()


def available_methods() -> list:
    """The methods that can run here: "learned" only when its default weights are present."""
    from .harmoim.weights import default_weights_path

    return [name for name in METHODS if name != "learned" or default_weights_path() is not None]


def default_method() -> str:
    """"learned" when its weights are present, else "statistics"."""
    return "learned" if "learned" in available_methods() else "statistics"


def resolve_method(method: str, weights=None) -> str:
    """``method`` with "auto" replaced: "learned" when weights are given or the default ones exist, else
    "statistics"."""
    if method == "auto":
        return "learned" if weights is not None else default_method()
    if method not in METHODS:
        raise HarmoVidError(f"unknown harmonization method {method!r}; choose auto or one of: {', '.join(METHODS)}.")
    return method


def make_harmonizer(method: str = "statistics", strength: float = 1.0, *, weights=None):
    """The streaming harmonizer of ``method`` ("statistics", "learned" or "auto"); ``weights`` only for "learned"."""
    if resolve_method(method, weights) == "learned":
        return LearnedHarmonizer(strength, weights=weights)
    return StatisticsHarmonizer(strength)


def harmonize_frames(
    composite: torch.Tensor,
    alpha: torch.Tensor,
    background: Optional[torch.Tensor] = None,
    *,
    method: str = "statistics",
    strength: float = 1.0,
    weights=None,
    progress: ProgressCallback = None,
    chunk_frames: int = 16,
) -> torch.Tensor:
    """Harmonize each frame of ``composite`` ``[T, H, W, 3]`` toward the background's light.

    ``alpha`` ``[T, H, W]`` (1 = person) says where the person is; ``background`` (optional, same size)
    is the clean background plate, else the composite outside the alpha is used. ``strength`` 0..1.
    ``method`` "learned" uses ``weights`` (a file or loaded ``HarmoImNet``; None = the default weights);
    "auto" is "learned" when there are weights, else "statistics".
    Returns ``[T, H, W, 3]``; pixels with alpha 0 are unchanged.
    """
    harmonizer = make_harmonizer(method, strength, weights=weights)
    composite = check_frames(composite, "composite")
    alpha = check_mask(alpha, "alpha")
    check_same_length(composite, alpha, "composite", "alpha")
    check_not_empty(alpha, "alpha")
    if background is not None:
        background = check_frames(background, "background")
        check_same_length(composite, background, "composite", "background")
    total = composite.shape[0]
    outputs = []
    for start in range(0, total, chunk_frames):
        stop = min(start + chunk_frames, total)
        chunk_background = None if background is None else background[start:stop]
        outputs.append(harmonizer.process(composite[start:stop], alpha[start:stop], chunk_background))
        report(progress, stop, total)
    return torch.cat(outputs)

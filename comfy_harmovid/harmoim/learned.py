"""The learned method of per-frame HarmoIm: the network (``network``) predicts a colour transform per frame.

It predicts a luminance-banded colour transform per frame from the composite and alpha, holds it back
where it asserts more than the scene supports (a bounded exposure change; no cooling of a person below a
warm room's cast), sizes it by how clearly it stands out from the network's error, may take the face's
skin part of the way back toward natural skin (``skin``, on request), smooths it over time and applies
it through the alpha; it needs the weights file the pack ships (or one you trained).
"""

import contextlib
import warnings
from typing import Optional

import cv2
import numpy as np
import torch

from ..errors import HarmoVidError
from ..filters import float_array, one_torch_thread
from ..validate import check_strength
from .chunks import checked_chunk, output_buffer
from ..segment.mediapipe_model import MediaPipeMissing
from .network import HarmoImNet
from .skin import SkinBalance, SkinSettings
from .transform import apply_to_frame, clarity_factors, limit_exposure, respect_scene_cast, scale_change
from .weights import load_harmoim

# The most the learned method may change the person's mean luma (0..1). Beyond it the network mostly
# asserts its prior of how bright people are rather than what the scene shows: a person with darker skin
# in front of a bright wall looks to it like an underexposed one. Chosen on folds of the training split
# with clarity sizing on (docs/training.md, section 5, twelfth check): 0.05 until clarity sizing came.
MAX_EXPOSURE_CHANGE = 0.08


def restrain(maps: torch.Tensor, pixels: torch.Tensor, weights: torch.Tensor, *,
             max_exposure_change: Optional[float] = MAX_EXPOSURE_CHANGE, scene_cast: bool = True,
             clarity: bool = True, **clarity_settings) -> torch.Tensor:
    """The network's maps ``[B, K, 4, 3]`` for the colours ``pixels`` ``[B, N, 3]`` and alpha ``weights``
    ``[B, N]`` of its view, held by the restraints that are on and sized by their clarity
    (``clarity_settings``: ``noise`` and ``gain`` of ``transform.clarity_factors``), as ``LearnedHarmonizer``
    applies them."""

    def held(maps, pixels, weights):
        if max_exposure_change is not None:
            maps = limit_exposure(maps, pixels, weights, max_exposure_change)
        return respect_scene_cast(maps, pixels, weights) if scene_cast else maps

    maps = held(maps, pixels, weights)
    if clarity:  # measured on the held change; a change that grows may cross the bounds again
        factors = clarity_factors(maps, pixels, weights, **clarity_settings)
        maps = scale_change(maps, factors)
        # A change shrunk toward the identity stays within the bounds (about: clamping and Lab bend), and
        # most changes shrink: holding again only what grew saves a pass of both restraints.
        grown = factors > 1.0
        if grown.any():
            maps[grown] = held(maps[grown], pixels[grown], weights[grown])
    return maps


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` ``[H, W]`` or ``[H, W, C]`` (float32) shrunk to ``size`` x ``size`` by area averaging: the one
    way frames are made small for the network, in training and at inference.

    A large frame is first averaged over whole ``k`` x ``k`` blocks (the largest ``k`` that divides both
    sides and leaves at least twice ``size``): OpenCV has a fast path for whole factors, and it halves
    the cost at 720p. The view then differs from one-step area averaging only at output pixels whose
    edges cut through a block, by a small share of those blocks' pixels.
    """
    height, width = image.shape[:2]
    largest = min(height, width) // (2 * size)
    block = next((k for k in range(largest, 1, -1) if height % k == 0 and width % k == 0), 1)
    if block > 1:
        image = cv2.resize(image, (width // block, height // block), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def network_view(frames: np.ndarray, alphas: np.ndarray, size: int):
    """``[T, H, W, 3]`` frames and ``[T, H, W]`` alphas (float32) as the network sees them: ``size`` x ``size``,
    area-averaged."""
    small = np.stack([area_resize(f, size) for f in frames])
    small_alpha = np.stack([area_resize(a, size) for a in alphas])
    return small, small_alpha


def view_shows_all_finite(small: np.ndarray, small_alpha: np.ndarray, frame_size) -> bool:
    """Whether the network's view proves its frames and alphas (``frame_size`` ``(H, W)``) hold no NaN or inf.

    Shrinking by area averaging gives every pixel a positive weight in some view pixel, so a NaN or inf
    anywhere reaches the view (a test checks this at every pixel): a finite view saves a pass over the
    full-size chunk. Enlarging interpolates and may skip a pixel, so a view of a small frame proves nothing;
    nor does a view that is not finite (a sum can overflow): the caller then checks the chunk itself.
    """
    size = small.shape[1]
    return min(frame_size) >= size and bool(np.isfinite(small).all()) and bool(np.isfinite(small_alpha).all())


def _skin_balance(settings: SkinSettings) -> Optional[SkinBalance]:
    """The skin balance, or None with a warning when MediaPipe (its face mesh) is not installed: the
    network's change still works without it."""
    try:
        return SkinBalance(settings)
    except MediaPipeMissing as error:
        warnings.warn(f"The learned HarmoIm runs without its skin balance: {error}")
        return None


class LearnedHarmonizer:
    """Streaming learned harmonization: feed consecutive chunks to :meth:`process`.

    ``weights``: a weights file, a loaded ``HarmoImNet``, or None for the default weights. The predicted
    colour maps are smoothed over time (``temporal_smoothing`` = weight of the history) so that they do
    not flicker. The scene's light is read from the composite itself: a background plate is not needed.
    Two restraints hold back what the network asserts from its prior of how people look rather than
    reads from the scene (``transform``): ``max_exposure_change`` is the most the person's mean
    luma (0..1) may change (None: no limit; see ``MAX_EXPOSURE_CHANGE``), and ``scene_cast`` keeps the
    person from losing more colour cast than the scene's light supports (``respect_scene_cast``).
    ``clarity`` sizes the change by how clearly it stands out from the network's error
    (``transform.clarity_factors``: small changes mostly dropped, large ones grown a little), within both
    restraints. ``skin`` (``skin.SkinSettings``; None, the default: off) then takes the face's skin part of
    the way back toward natural skin (``skin.SkinBalance``; off by default: it adds to a 720p HarmoIm
    stage that meets its 25 fps goal only narrowly, README).
    """

    uses_background = False  # process() ignores the background plate

    def __init__(self, strength: float = 1.0, *, weights=None, temporal_smoothing: float = 0.7,
                 max_exposure_change: Optional[float] = MAX_EXPOSURE_CHANGE, scene_cast: bool = True,
                 clarity: bool = True, skin: Optional[SkinSettings] = None):
        self.strength = check_strength(strength)
        if not 0.0 <= temporal_smoothing < 1.0:
            raise HarmoVidError(f"temporal_smoothing must be in [0, 1), got {temporal_smoothing}.")
        if max_exposure_change is not None and not 0.0 <= max_exposure_change <= 1.0:
            raise HarmoVidError(f"max_exposure_change must be in [0, 1] or None, got {max_exposure_change}.")
        self.temporal_smoothing = temporal_smoothing
        self.max_exposure_change = max_exposure_change
        self.scene_cast = scene_cast
        self.clarity = clarity
        self.net = weights if isinstance(weights, HarmoImNet) else load_harmoim(weights)
        self._skin = _skin_balance(skin) if skin is not None and self.strength > 0.0 else None
        self._maps = None  # smoothed [K, 4, 3] colour maps of the previous frame

    def process(self, composite_chunk, alpha_chunk, background_chunk=None, *, out=None) -> torch.Tensor:
        """Harmonize the next ``[T, H, W, 3]`` composite frames given their alpha ``[T, H, W]``.

        ``out``: an optional float32 CPU tensor of the composite's shape to write the result into (and
        return), e.g. one buffer reused for every chunk; it must not overlap the composite.
        """
        composite, alpha = checked_chunk(composite_chunk, alpha_chunk, finite=False)
        result = output_buffer(out, composite)
        frames, alphas = float_array(composite), float_array(alpha)
        small, small_alpha = network_view(frames, alphas, self.net.config.input_size)
        if not view_shows_all_finite(small, small_alpha, frames.shape[1:3]):
            checked_chunk(composite, alpha)  # the full check, which names what is not finite
        maps = self._predict(small, small_alpha)  # [T, K, 4, 3]
        target = result.numpy()
        for t in range(target.shape[0]):
            frame_maps = maps[t]
            if self._skin is not None:
                frame_maps = self._skin.balanced(frame_maps, frames[t], torch.from_numpy(small[t]),
                                                 torch.from_numpy(small_alpha[t]))
            if self._maps is None:
                self._maps = frame_maps
            else:
                self._maps = self.temporal_smoothing * self._maps + (1 - self.temporal_smoothing) * frame_maps
            if self.strength == 0.0:
                target[t] = frames[t]
            else:
                apply_to_frame(frames[t], alphas[t], self._maps, self.strength, out=target[t])
        return result.to(composite.device)

    def _predict(self, small: np.ndarray, small_alpha: np.ndarray) -> torch.Tensor:
        """The network's colour maps ``[T, K, 4, 3]`` for its view of the frames (``network_view``)."""
        device = next(self.net.parameters()).device
        # A small network on small images: on the CPU, torch's threads cost more than they save.
        threads = one_torch_thread() if device.type == "cpu" else contextlib.nullcontext()
        with threads, torch.inference_mode():
            composite, alpha = torch.from_numpy(small).to(device), torch.from_numpy(small_alpha).to(device)
            maps = self.net.predict_maps(composite.permute(0, 3, 1, 2), alpha[:, None])
            maps = restrain(maps, composite.flatten(1, 2), alpha.flatten(1), scene_cast=self.scene_cast,
                            max_exposure_change=self.max_exposure_change, clarity=self.clarity)
            return maps.cpu()

"""Skin balance: the colour of the face's skin against natural skin, a cue the network's 96 px view misses.

Natural skin is a narrow target: over the training people, ungraded, the median skin colour (linear
light; natural log of red over green and of blue over green) spreads by 0.13 to 0.25, and most looks
move it much further. So after the network, the person is divided, in linear light and with the skin's
brightness kept, by a share (``SHRINK``) of the skin's chroma offset from the training people's mean
skin beyond a dead zone (``DEAD_ZONE`` standard deviations, Mahalanobis), once the part of the offset
that the room's own cast explains is taken off (a person in a warm room keeps warm skin). Chosen on
folds of the training split (docs/training.md, fourteenth check).

The skin is the cheeks and forehead of MediaPipe's face mesh (in its wheel), found on the frame every
``FACE_EVERY`` frames and measured there in the network's view; the gains hold until the next search and
are folded into the network's banded maps, so applying them costs nothing at full resolution.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch

from ..color import linear_to_srgb, srgb_to_linear
from ..errors import HarmoVidError
from ..locations import shipped_path
from .transform import LUMA, apply_maps

SHRINK = 0.75  # share of the skin's offset beyond the dead zone that is divided out
DEAD_ZONE = 1.0  # standard deviations of natural skin (Mahalanobis) never corrected
FACE_EVERY = 8  # frames between face searches and skin measurements (the last gains hold in between)
FACE_SIZE = 256  # the face is searched in the frame shrunk by a whole factor to a short side of at least this
MIN_SKIN_PIXELS = 16  # fewer skin pixels in the network's view: no skin balance for that frame
# What the skin balance does, in the words of the node's tooltip and the commands' help.
HELP = ("learned only: also take the face's skin part of the way back toward natural skin where a look pushed it "
        "away (unless the room's light explains it). Gains most on looks that grey or tint skin, can over-correct "
        "mild ones; slower (a face search every 8th frame)")
# Face-mesh landmarks around the left cheek, the right cheek and the forehead: skin, away from eyes,
# brows, nostrils, lips and hair.
SKIN_POLYGONS = (
    (116, 117, 118, 119, 100, 126, 209, 49, 129, 203, 206, 216, 192, 213, 147, 123),
    (345, 346, 347, 348, 329, 355, 429, 279, 358, 423, 426, 436, 416, 433, 376, 352),
    (109, 10, 338, 337, 336, 9, 107, 108),
)


def _chroma(linear: torch.Tensor) -> torch.Tensor:
    """``[2]``: natural log of red / green and blue / green of one linear colour ``[3]``."""
    linear = linear.clamp(min=1e-4)
    return torch.log(linear[[0, 2]] / linear[1])


def skin_chroma(rgb: torch.Tensor) -> torch.Tensor:
    """``[2]``: the chroma (log red / green, log blue / green) of the median linear colour of ``rgb`` ``[N, 3]``."""
    return _chroma(srgb_to_linear(rgb).median(0).values)


def natural_skin_pixels(frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Boolean ``[T, H, W]``: the person's pixels (``mask`` > 0.5) of skin hue in *ungraded* ``frames``
    ``[T, H, W, 3]`` (hue within 50 degrees of red, HSV saturation 0.15 to 0.75, value above 0.25): how
    the prior picks skin, where the frames' colours can be trusted."""
    hsv = cv2.cvtColor(frames.reshape(-1, 1, 3).numpy(), cv2.COLOR_RGB2HSV).reshape(frames.shape)
    hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    skin_hue = (hue < 50.0) | (hue > 340.0)
    return torch.from_numpy(skin_hue & (saturation > 0.15) & (saturation < 0.75) & (value > 0.25)) & (mask > 0.5)


def room_chroma(rgb: torch.Tensor) -> torch.Tensor:
    """``[2]``: the room's cast, as :func:`skin_chroma` of its mean linear colour (grey world)."""
    return _chroma(srgb_to_linear(rgb).mean(0))


@dataclass(frozen=True)
class SkinPrior:
    """Natural skin: mean ``[2]`` and covariance ``[2, 2]`` of :func:`skin_chroma` over ungraded people."""

    mean: tuple
    covariance: tuple
    people: int = 0

    @classmethod
    def load(cls, path=None) -> "SkinPrior":
        """The prior in a JSON file (``scripts/make_skin_prior.py`` writes one); default: the shipped one."""
        path = Path(path) if path is not None else shipped_path("harmoim", "skin-prior.json")
        try:
            values = json.loads(path.read_text())
            return cls(tuple(values["mean"]), tuple(map(tuple, values["covariance"])), int(values["people"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise HarmoVidError(f"Cannot read the skin prior {path}: {error}. Rebuild it with "
                                "scripts/make_skin_prior.py or reinstall the pack.") from None

    def gains(self, skin: torch.Tensor, room: torch.Tensor, shrink: float = SHRINK,
              dead_zone: float = DEAD_ZONE) -> torch.Tensor:
        """Linear-light RGB gains ``[3]`` that take the skin (``skin`` ``[N, 3]`` sRGB) back toward natural
        skin, in a room whose cast is ``room`` ``[2]`` (``room_chroma``); the skin's luma is kept."""
        offset = skin_chroma(skin).double() - torch.tensor(self.mean, dtype=torch.float64)
        length = float(offset.norm())
        if length < 1e-6:
            return torch.ones(3)
        explained = min(max(float(room.double() @ offset) / length, 0.0), length)  # the room's cast, this way
        offset = offset * (1.0 - explained / length)
        distance = float(offset @ torch.linalg.solve(torch.tensor(self.covariance, dtype=torch.float64), offset)) ** 0.5
        change = shrink * max(0.0, 1.0 - dead_zone / max(distance, 1e-6)) * offset
        gains = torch.exp(-torch.tensor([float(change[0]), 0.0, float(change[1])]))
        light = srgb_to_linear(skin).median(0).values
        return gains * (light @ LUMA) / ((light * gains) @ LUMA)


def fold_gains(maps: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Banded maps ``[K, 4, 3]`` followed by linear-light ``gains`` ``[3]``, as banded maps: each band's
    output is scaled by what the gains do in sRGB at the band's luma (exact for a grey at the band's
    centre, close for colours near it)."""
    bands = maps.shape[0]
    levels = torch.linspace(0.0, 1.0, bands).clamp(min=1e-3)[:, None]  # [K, 1]
    scale = linear_to_srgb(srgb_to_linear(levels) * gains) / levels  # [K, 3]
    return maps * scale[:, None, :]


def skin_mask(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean ``[height, width]``: the cheeks and forehead of face-mesh ``landmarks`` (fractions of the frame)."""
    mask = np.zeros((height, width), np.uint8)
    scale = np.array([width, height], np.float32)
    cv2.fillPoly(mask, [np.round(landmarks[list(polygon)] * scale).astype(np.int32) for polygon in SKIN_POLYGONS], 1)
    return mask.astype(bool)


@dataclass(frozen=True)
class SkinSettings:
    """How the skin balance works: what natural skin is (None: the shipped measurement), and how far
    it moves (``SkinPrior.gains``)."""

    prior: Optional[SkinPrior] = None
    shrink: float = SHRINK
    dead_zone: float = DEAD_ZONE


class SkinBalance:
    """Per-frame skin balance over a clip (state: the last measured gains and a frame counter)."""

    def __init__(self, settings: SkinSettings = SkinSettings()):
        from ..segment.mediapipe_model import FaceMeshModel  # MediaPipe loads only when the balance is on

        if not isinstance(settings, SkinSettings):
            raise HarmoVidError(f"skin: expected SkinSettings or None, got {type(settings).__name__}.")
        self.prior = settings.prior or SkinPrior.load()
        self.shrink, self.dead_zone = settings.shrink, settings.dead_zone
        self._faces = FaceMeshModel()
        self._gains = None  # the last measured gains (None: no face, or too little of it)
        self._frame = 0

    def balanced(self, maps: torch.Tensor, frame: np.ndarray, view: torch.Tensor, view_alpha: torch.Tensor) -> torch.Tensor:
        """``maps`` ``[K, 4, 3]`` of this ``frame`` (``[H, W, 3]`` float32) with the skin balance folded in;
        ``view`` ``[S, S, 3]`` and ``view_alpha`` ``[S, S]``: the network's view of the frame. The gains are
        measured every ``FACE_EVERY`` frames and held in between (the face and its light change slowly)."""
        if self._frame % FACE_EVERY == 0:
            self._gains = self._measure(maps, frame, view, view_alpha)
        self._frame += 1
        return maps if self._gains is None else fold_gains(maps, self._gains)

    def _measure(self, maps, frame, view, view_alpha) -> Optional[torch.Tensor]:
        """The gains for the skin of this frame after ``maps``, or None without a face in the view."""
        skin = skin_in_view(self._faces, frame, view_alpha)
        room = view_alpha < 0.5
        if skin is None or int(room.sum()) < MIN_SKIN_PIXELS:
            return None
        mapped_skin = apply_maps(view[skin][None], maps[None])[0].clamp(0.0, 1.0)
        return self.prior.gains(mapped_skin, room_chroma(view[room]), self.shrink, self.dead_zone)


def skin_in_view(faces, frame: np.ndarray, view_alpha: torch.Tensor) -> Optional[torch.Tensor]:
    """Boolean ``[h, w]``: the cheeks and forehead that ``faces`` (a ``FaceMeshModel``) finds in ``frame``
    (``[H, W, 3]`` float32), in a view of it of ``view_alpha``'s size (the network's, or the frame itself)
    and on the person (``view_alpha`` > 0.5); None without a face, or with fewer than ``MIN_SKIN_PIXELS``
    of it."""
    landmarks = faces.landmarks(_face_search_image(frame))
    if landmarks is None:
        return None
    skin = torch.from_numpy(skin_mask(landmarks, *view_alpha.shape)) & (view_alpha > 0.5)
    return skin if int(skin.sum()) >= MIN_SKIN_PIXELS else None


def _face_search_image(frame: np.ndarray) -> np.ndarray:
    """``frame`` (float32 0..1) as the uint8 picture the face mesh searches: shrunk by the largest whole
    factor that keeps its short side at least ``FACE_SIZE`` (OpenCV's fast path for whole factors)."""
    height, width = frame.shape[:2]
    factor = max(1, min(height, width) // FACE_SIZE)
    if factor > 1:
        frame = cv2.resize(frame, (width // factor, height // factor), interpolation=cv2.INTER_AREA)
    return cv2.multiply(np.ascontiguousarray(frame), 255.0, dtype=cv2.CV_8U)  # rounded and clamped to 0..255

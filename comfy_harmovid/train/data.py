"""Training data: clips of a footage manifest (``comfy_harmovid.footage``) read lazily, and the paired
items of each stage.

Every item is a dict of ``[T, H, W, 3]`` clips ``target``, ``composite``, ``background`` and a
``[T, H, W]`` ``mask`` (1 = person), ``T = 4k + 1`` at the training size, plus its ``path`` name:

- ``deflicker`` (stage 2, paper eq. 2-4): the person recoloured *frame by frame* (a flickering
  synthetic foreground) over the real background -> the real video. ``background`` is the composite
  itself (the deflicker model has no separate background); mask: the pseudo-alpha.
- ``real_to_synthetic`` (stage 3, eq. 5): the real person over another scene (binary mask) -> the
  per-frame relit composite, deflickered (built-in): the synthetic target. The per-frame relighting is
  the paper's stage 1: IC-Light (``relight.ICLightRelighter``) where its weights are given, else the
  built-in HarmoIm.
- ``synthetic_to_real``: a recoloured person over the real background with the person removed
  (temporal median + classical inpainting) -> the real video; mask: the pseudo-alpha (paper 3.3's
  asymmetric mask conditioning).
- ``lut``: the paper's evaluation recipe as a training pair: the person recoloured by a LUT over the
  original frames -> the original; background: the person-removed plate; mask: the pseudo-alpha.

Items depend only on ``(seed, index)``, so a run and its resume see the same data.
"""

import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from ..alpha import pseudo_alpha
from ..color import Lut, apply_lut, read_cube
from ..composite import alpha_over
from ..deflicker import deflicker
from ..errors import HarmoVidError
from ..filters import resize
from ..footage import ClipEntry, Manifest
from ..harmoim import harmonize_frames
from ..io import probe_video, read_mask, read_video

STAGES = {"deflicker": ("deflicker",), "harmovid": ("real_to_synthetic", "synthetic_to_real", "lut")}
PLATE_WORK_SIZE = 128  # inpainting runs on a frame of at most this many pixels along its long side


# -- reading clips -----------------------------------------------------------------------------------


def check_frame_count(frames: int) -> int:
    if frames < 1 or (frames - 1) % 4:
        raise HarmoVidError(f"training clips need 4k + 1 frames (9, 13, 17, ..., 49), got {frames}.")
    return frames


def crop_and_resize(clip: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Centre-crop ``[T, H, W, C]`` (or ``[T, H, W]``) to the aspect of ``height x width``, then resize."""
    source_height, source_width = clip.shape[1:3]
    scale = min(source_height / height, source_width / width)
    crop_height, crop_width = round(height * scale), round(width * scale)
    top, left = (source_height - crop_height) // 2, (source_width - crop_width) // 2
    clip = clip[:, top : top + crop_height, left : left + crop_width]
    if clip.ndim == 3:
        return resize(clip.float(), (height, width)).clamp(0, 1).contiguous()
    return resize(clip.permute(0, 3, 1, 2).float(), (height, width)).permute(0, 2, 3, 1).clamp(0, 1).contiguous()


def _repeat_last(clip: torch.Tensor, frames: int) -> torch.Tensor:
    if clip.shape[0] >= frames:
        return clip[:frames]
    return torch.cat([clip, clip[-1:].expand(frames - clip.shape[0], *clip.shape[1:])])


class ClipReader:
    """Reads ``frames`` frames of a manifest clip at the training size, only when asked."""

    def __init__(self, frames: int, height: int, width: int):
        self.frames, self.height, self.width = check_frame_count(frames), height, width
        self._counts: Dict[Path, int] = {}

    def frame_count(self, path: Path) -> int:
        if path not in self._counts:
            self._counts[path] = probe_video(path).frame_count
        return self._counts[path]

    def random_start(self, path: Path, rng: random.Random) -> int:
        return rng.randrange(max(self.frame_count(path) - self.frames, 0) + 1)

    def read(self, entry: ClipEntry, start: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(frames [T, H, W, 3], mask [T, H, W] or None)`` from ``start`` (the last frame repeated if short)."""
        clip = read_video(entry.path, start=start, max_frames=self.frames).frames
        frames = _repeat_last(crop_and_resize(clip, self.height, self.width), self.frames)
        mask = None
        if entry.mask is not None:
            mask = read_mask(entry.mask, start=start, max_frames=self.frames)
            mask = _repeat_last(crop_and_resize(mask, self.height, self.width), self.frames)
        return frames, mask


# -- synthesis ---------------------------------------------------------------------------------------


def remove_person(frames: torch.Tensor, mask: torch.Tensor, *, grow: int = 2) -> torch.Tensor:
    """The background with the person removed ``[T, H, W, 3]``: outside the (grown) mask the real frames;
    inside, each pixel's median over the frames where it is uncovered; pixels covered in every frame are
    filled by OpenCV's Telea inpainting on a downscaled plate."""
    kernel = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)
    covered = torch.from_numpy(
        np.stack([cv2.dilate((m > 0.5).numpy().astype(np.uint8), kernel) for m in mask.cpu()])
    ).bool()  # [T, H, W]
    samples = frames.clone()
    samples[covered] = float("nan")
    plate = samples.nanmedian(dim=0).values  # [H, W, 3], NaN where always covered
    holes = torch.isnan(plate[..., 0])
    if holes.any():
        height, width = plate.shape[:2]
        scale = min(1.0, PLATE_WORK_SIZE / max(height, width))
        small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = (torch.nan_to_num(plate).numpy() * 255).round().astype(np.uint8)
        small = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)
        small_holes = cv2.resize(holes.numpy().astype(np.uint8), small_size, interpolation=cv2.INTER_NEAREST)
        small_holes = cv2.dilate(small_holes, np.ones((3, 3), np.uint8))
        filled = cv2.inpaint(small, small_holes, 3, cv2.INPAINT_TELEA)
        filled = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
        plate[holes] = torch.from_numpy(filled).float()[holes] / 255
    return torch.where(covered[..., None], plate.expand_as(frames), frames)


def recolour(frames: torch.Tensor, rng: random.Random, luts: Sequence[Lut], *, per_frame: bool = False) -> torch.Tensor:
    """A synthetic look for ``frames``: a random LUT at a random strength (or, without LUTs, a random
    per-channel gain and lift); with ``per_frame`` a new strength and gain jitter every frame (flicker)."""
    lut = rng.choice(luts) if luts else None
    gain = torch.tensor([rng.uniform(0.7, 1.3) for _ in range(3)])
    lift = torch.tensor([rng.uniform(-0.08, 0.08) for _ in range(3)])
    strength = rng.uniform(0.5, 1.0)
    out = []
    for frame in frames:
        frame_strength, frame_gain = strength, gain
        if per_frame:
            frame_strength = min(1.0, max(0.0, strength + rng.uniform(-0.3, 0.3)))
            frame_gain = gain * rng.uniform(0.8, 1.2)
        looked = apply_lut(frame[None], lut, frame_strength)[0] if lut is not None else frame
        out.append((looked * frame_gain + lift).clamp(0, 1))
    return torch.stack(out)


class TrainingClips(torch.utils.data.Dataset):
    """``items`` training pairs of one stage (``"deflicker"`` or ``"harmovid"``), made lazily from a manifest.

    Masks come from the manifest's mask videos, else from the built-in portrait segmenter. ``relighter``
    (an ``ICLightRelighter``) relights the real -> synthetic targets frame by frame in place of HarmoIm.
    """

    def __init__(self, manifest: Manifest, stage: str, *, frames: int, height: int, width: int,
                 items: int, seed: int = 0, relighter=None):
        if stage not in STAGES:
            raise HarmoVidError(f"unknown training stage {stage!r}; use one of {', '.join(STAGES)}.")
        if items < 1:
            raise HarmoVidError(f"items must be at least 1, got {items}.")
        if stage == "harmovid" and not manifest.role("background"):
            raise HarmoVidError("stage 3 (harmovid) needs background clips in the manifest (role: background).")
        self.manifest, self.stage, self.items, self.seed = manifest, stage, items, seed
        self.relighter = relighter
        self.reader = ClipReader(frames, height, width)
        self.paths = STAGES[stage]
        self._luts: Optional[List[Lut]] = None

    def __len__(self) -> int:
        return self.items

    @property
    def luts(self) -> List[Lut]:
        if self._luts is None:
            self._luts = [read_cube(path) for path in self.manifest.luts]
        return self._luts

    def path_of(self, index: int) -> str:
        return self.paths[index % len(self.paths)]

    def _portrait(self, rng: random.Random):
        entry = rng.choice(self.manifest.role("portrait"))
        frames, mask = self.reader.read(entry, self.reader.random_start(entry.path, rng))
        if mask is None:
            from ..segment import segment_portrait

            mask = segment_portrait(frames)
        mask = (mask > 0.5).float()
        if float(mask.sum()) == 0:
            raise HarmoVidError(f"{entry.path}: no person found in the frames used; give a mask or another clip.")
        return frames, mask

    def _relit(self, composite, mask, background) -> torch.Tensor:
        """Stage 1: the composite relit frame by frame toward the background."""
        if self.relighter is None:
            return harmonize_frames(composite, mask, background)
        self.relighter.reset()  # every item is a clip of its own
        return self.relighter.process(composite, mask, background)

    def __getitem__(self, index: int) -> Dict[str, object]:
        if not 0 <= index < self.items:
            raise IndexError(index)
        rng = random.Random(self.seed * 1_000_003 + index)
        path = self.path_of(index)
        frames, mask = self._portrait(rng)
        if path == "real_to_synthetic":
            entry = rng.choice(self.manifest.role("background"))
            background, _ = self.reader.read(entry, self.reader.random_start(entry.path, rng))
            composite = alpha_over(frames, background, mask)
            harmonized = self._relit(composite, mask, background)
            target = deflicker(harmonized, reference=composite, mask=mask)
            return dict(path=path, target=target, composite=composite, background=background, mask=mask)
        alpha = pseudo_alpha(frames, mask)
        if path == "deflicker":
            composite = alpha_over(recolour(frames, rng, self.luts, per_frame=True), frames, alpha)
            return dict(path=path, target=frames, composite=composite, background=composite, mask=alpha)
        plate = remove_person(frames, mask)
        under = plate if path == "synthetic_to_real" else frames
        composite = alpha_over(recolour(frames, rng, self.luts), under, alpha)
        return dict(path=path, target=frames, composite=composite, background=plate, mask=alpha)

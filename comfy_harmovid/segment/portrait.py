"""The built-in portrait segmenter: MediaPipe selfie segmentation, made temporally stable.

The network runs on a small copy of each frame (its own input is 256 pixels wide, so a bigger copy
adds nothing), the temporal stabiliser works at that size too, and only the final mask is scaled
back to the frame size. That keeps it fast at 720p and 1080p.
"""

from typing import Optional

import cv2
import numpy as np
import torch

from ..errors import HarmoVidError
from ..flow import GREY_WEIGHTS
from ..progress import ProgressCallback, report
from ..validate import check_frames
from .mediapipe_model import SelfieModel, require_mediapipe
from .prompts import Prompts, check_prompt_frame
from .selection import select_prompted_people
from .temporal import MaskStabilizer

DEFAULT_THRESHOLD = 0.5
DEFAULT_TEMPORAL_SMOOTHING = 0.6
# "auto": MediaPipe's landscape model (144x256 input) for frames at least as wide as tall, the
# general one (256x256) for portrait-orientation frames: the landscape model flickers less on 16:9
# footage and is as accurate on square clips (docs/benchmarks.md, "Portrait segmenter model").
DEFAULT_MODEL = "auto"
# Longest side of the working copy of each frame.
WORK_SIZE = 384


def check_threshold(threshold: float) -> float:
    if not 0.0 < threshold < 1.0:
        raise HarmoVidError(f"threshold must be between 0 and 1 (exclusive), got {threshold}. 0.5 is a good start.")
    return float(threshold)


def check_temporal_smoothing(temporal_smoothing: float) -> float:
    if not 0.0 <= temporal_smoothing < 1.0:
        raise HarmoVidError(
            f"temporal_smoothing must be in [0, 1): 0 = off, 0.6 = default, got {temporal_smoothing}."
        )
    return float(temporal_smoothing)


def work_shape(height: int, width: int, work_size: int = WORK_SIZE):
    """(h, w) of the working copy: the frame scaled down so its longest side is ``work_size``."""
    scale = min(1.0, work_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


class PortraitSegmenter:
    """Streaming portrait masks: call ``process(chunk)`` on consecutive chunks of one clip.

    The temporal state carries over from one call to the next, so a long video can be segmented
    chunk by chunk with bounded memory and the same result as segmenting it whole. Call ``reset()``
    before starting another clip.
    """

    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        temporal_smoothing: float = DEFAULT_TEMPORAL_SMOOTHING,
        soft: bool = False,
        model: str = DEFAULT_MODEL,
    ):
        self.threshold = check_threshold(threshold)
        self.temporal_smoothing = check_temporal_smoothing(temporal_smoothing)
        self.soft = bool(soft)
        if model != "auto":
            SelfieModel.check_name(model)
        require_mediapipe()
        self.model = model
        self._model = None  # made on the first frame, when the orientation is known
        self._stabilizer = MaskStabilizer(smoothing=self.temporal_smoothing, threshold=self.threshold)

    def reset(self) -> None:
        self._stabilizer.reset()

    def close(self) -> None:
        if self._model is not None:
            self._model.close()
            self._model = None

    def _network(self, height: int, width: int) -> SelfieModel:
        if self._model is None:
            name = self.model
            if name == "auto":
                name = "landscape" if width >= height else "general"
            self._model = SelfieModel(name)
        return self._model

    def process(self, frames: torch.Tensor) -> torch.Tensor:
        """``[T, H, W, 3]`` frames in 0..1 -> ``[T, H, W]`` float32 mask (binary, or soft if ``soft``)."""
        frames = check_frames(frames)
        height, width = frames.shape[1:3]
        small_h, small_w = work_shape(height, width)
        network = self._network(height, width)
        masks = torch.empty(frames.shape[:3], dtype=torch.float32)
        for index, frame in enumerate(frames.detach().to("cpu", torch.float32).numpy()):
            small = cv2.resize(frame, (small_w, small_h), interpolation=cv2.INTER_AREA)
            small_uint8 = np.clip(small * 255.0 + 0.5, 0, 255).astype(np.uint8)
            probability = network.predict(small_uint8)
            smoothed, threshold_map = self._stabilizer.step(small @ GREY_WEIGHTS, probability)
            masks[index] = torch.from_numpy(self._full_size_mask(smoothed, threshold_map, width, height))
        return masks.to(frames.device)

    def _full_size_mask(self, smoothed, threshold_map, width: int, height: int) -> np.ndarray:
        up_smoothed = cv2.resize(smoothed, (width, height), interpolation=cv2.INTER_LINEAR)
        if self.soft:
            return np.clip(up_smoothed, 0.0, 1.0)
        up_threshold = cv2.resize(threshold_map, (width, height), interpolation=cv2.INTER_LINEAR)
        return (up_smoothed > up_threshold).astype(np.float32)


def segment_portrait(
    frames: torch.Tensor,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    temporal_smoothing: float = DEFAULT_TEMPORAL_SMOOTHING,
    soft: bool = False,
    model: str = DEFAULT_MODEL,
    prompts: Optional[Prompts] = None,
    prompt_frame: int = 0,
    progress: ProgressCallback = None,
    chunk_size: int = 16,
) -> torch.Tensor:
    """Portrait mask of a whole clip, ``[T, H, W]`` float32, 1 = person.

    Binary by default (the rough mask the Pseudo-Alpha step refines); ``soft=True`` returns the
    temporally smoothed probability instead. ``temporal_smoothing`` in [0, 1) is the weight of the
    motion-compensated history (0 = each frame on its own). ``model`` is "auto" (by orientation),
    "general" or "landscape" (MediaPipe's two selfie models). ``prompts`` (points and box on
    ``prompt_frame``) keep only the people they pick, followed through the clip
    (``selection.select_prompted_people``); without them every person is masked.
    """
    frames = check_frames(frames)
    if prompts:
        prompts.check_frame(*frames.shape[1:3])
        check_prompt_frame(prompt_frame, frames.shape[0])
    segmenter = PortraitSegmenter(
        threshold=threshold, temporal_smoothing=temporal_smoothing, soft=soft, model=model
    )
    try:
        total = frames.shape[0]
        chunks = []
        for start in range(0, total, chunk_size):
            chunks.append(segmenter.process(frames[start : start + chunk_size]))
            report(progress, min(start + chunk_size, total), total)
        masks = torch.cat(chunks)
    finally:
        segmenter.close()
    return select_prompted_people(masks, prompts, prompt_frame, threshold=threshold, soft=soft)

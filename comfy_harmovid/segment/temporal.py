"""Temporal stabilisation of per-frame foreground probabilities.

A per-frame segmenter flickers: the probability near the boundary (hair, shoulders, hands) wobbles
from frame to frame and a fixed threshold turns that wobble into a crawling edge. ``MaskStabilizer``
fixes that in three steps per frame, all at a small working resolution:

1. Motion-compensated averaging: the previous smoothed probability is warped onto the current
   frame with optical flow and blended with the new prediction, ``s_t = (1 - w) p_t + w warp(s_t-1)``.
2. The blend weight ``w`` is ``smoothing`` where the warp is trusted and falls to 0 where the warped
   previous frame does not match the current one (occlusions, flow failures), so fast motion follows
   the new prediction instead of leaving a ghost. A shot cut (the whole frame mismatches) resets it.
3. Hysteresis: a pixel that was foreground stays so until ``s`` drops below ``threshold - h``, and
   background needs ``s > threshold + h`` to turn, so values hovering at the threshold do not toggle.
"""

from typing import Optional, Tuple

import cv2
import numpy as np

from ..flow import dis_flow, warp

# Per-pixel warp mismatch (grey levels 0..1) at which the history weight has fallen to 1/e.
MISMATCH_SCALE = 0.06
# Mean warp mismatch over the frame above which the frame is treated as a new shot.
CUT_MISMATCH = 0.12
# Hysteresis half-width per unit of smoothing.
HYSTERESIS_PER_SMOOTHING = 0.2


class MaskStabilizer:
    """Stateful: feed frames in order with ``step``; ``reset`` forgets the history (new clip)."""

    def __init__(self, *, smoothing: float, threshold: float):
        self.smoothing = float(smoothing)
        self.threshold = float(threshold)
        margin = min(self.threshold, 1.0 - self.threshold) * 0.9
        self.hysteresis = min(HYSTERESIS_PER_SMOOTHING * self.smoothing, margin)
        self.reset()

    def reset(self) -> None:
        self._grey: Optional[np.ndarray] = None
        self._smoothed: Optional[np.ndarray] = None
        self._foreground: Optional[np.ndarray] = None

    def step(self, grey: np.ndarray, probability: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """One frame: ``grey`` and ``probability`` are ``[h, w]`` float32 in 0..1.

        Returns ``(smoothed, threshold_map)``: foreground is ``smoothed > threshold_map``.
        """
        smoothed = probability
        threshold_map = np.full_like(probability, self.threshold)
        if self.smoothing > 0.0 and self._grey is not None and self._grey.shape == grey.shape:
            flow = dis_flow(grey, self._grey, preset="fast")  # current -> previous
            history = np.stack([self._grey, self._smoothed, self._foreground], -1)
            warped_grey, previous, was_foreground = np.moveaxis(warp(history, flow).numpy(), -1, 0)
            mismatch = cv2.blur(np.abs(grey - warped_grey), (5, 5))
            if float(mismatch.mean()) <= CUT_MISMATCH:  # else a new shot: start afresh
                weight = self.smoothing * np.exp(-((mismatch / MISMATCH_SCALE) ** 2))
                smoothed = (1.0 - weight) * probability + weight * previous
                # Was foreground -> lower bar; was background -> higher bar.
                threshold_map = self.threshold + self.hysteresis * (1.0 - 2.0 * was_foreground)
        self._grey = grey
        self._smoothed = smoothed.astype(np.float32)
        threshold_map = threshold_map.astype(np.float32)
        self._foreground = (self._smoothed > threshold_map).astype(np.float32)
        return self._smoothed, threshold_map


def mask_flicker(masks, frames, *, flow_scale: float = 0.5) -> float:
    """How much a mask flickers: the mean motion-compensated change between consecutive frames.

    Each previous mask is warped onto the next frame with optical flow of the frames, so an edge
    that follows the person's motion counts as stable and only changes the motion does not explain
    (a crawling or blinking edge) count. ``masks`` ``[T, H, W]``, ``frames`` ``[T, H, W, 3]``; the
    result is the average per-pixel absolute change (0 = perfectly stable).
    """
    changes = []
    for t in range(1, masks.shape[0]):
        flow = dis_flow(frames[t], frames[t - 1], preset="medium", scale=flow_scale)  # t -> t-1
        previous = warp(masks[t - 1], flow).numpy()
        changes.append(float(np.abs(masks[t].detach().cpu().float().numpy() - previous).mean()))
    return float(np.mean(changes)) if changes else 0.0

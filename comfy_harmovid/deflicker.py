"""Built-in Lighting Deflicker: flow-guided temporal consistency of a processed video.

In the spirit of Bonneel et al. 2015 ("Blind video temporal consistency"): the output keeps the
processed frame's detail and follows the previous output, carried along by optical flow, wherever
the flow can be trusted. Per frame:

1. Work at a reduced resolution (short side about ``work_size`` pixels): the flicker that per-frame
   processing causes is mostly low-frequency (global and local colour, exposure, shadows).
2. Flow from this frame to the previous one, computed on the *reference* video when there is one
   (motion only: its colours are never used), else on the processed frames' structure (grey minus
   its regional light, which the flicker leaves alone). Forward-backward occlusion, and whether the
   guide's band-pass structure matches after warping, give where the previous output can be
   trusted; a frame where almost nothing can be matched is a shot cut, and the filter starts afresh.
3. Temporal target: ``target = processed + weight * (warped previous output - processed)``,
   with ``weight = history * visible * (foreground in both frames)``. This is a running mean along the
   motion, anchored on the shot's first frame (it counts as ``1 + anchor_frames`` frames, so the early
   frames settle on it instead of swinging with each new frame), that turns into an exponential moving
   average of weight ``temporal_weight`` once the shot is long enough: slow intended changes pass and
   frame-to-frame flicker does not. With a reference, a change of the reference's own light between
   the two frames (beyond ``light_tolerance``) also lowers the weight there, so an intended light
   change (a lamp switched on, a cloud) passes at once instead of lagging; only the reference's
   *change* is looked at, never its colours.
4. A local affine colour map ``a * processed + b`` (per channel, per window, ``a`` pulled toward 1) is
   fitted from the processed frame to the target, smoothed, brought to full resolution and applied.
   Because it is a smooth map applied to the full-resolution frame, edges and texture (gradients)
   of the processed frame are kept, as in Bonneel's gradient-domain formulation, at a fraction of
   the cost of a Poisson solve.
5. With a mask the map is fitted on the foreground only and applied through the soft mask, so a
   background that was never processed stays untouched.
"""

from typing import Optional

import cv2
import numpy as np
import torch

from .errors import HarmoVidError
from .flow import GREY_WEIGHTS, dis_flow, occlusion_mask, warp
from .progress import ProgressCallback, report
from .validate import check_frames, check_mask, check_same_length, check_same_size, check_strength



def _detail(grey: np.ndarray) -> np.ndarray:
    """Structure of a grey image at a few pixels' scale (a band-pass): flicker leaves it alone, and
    sub-pixel flow errors on fine texture barely touch it."""
    return cv2.GaussianBlur(grey, (0, 0), 1.5) - cv2.GaussianBlur(grey, (0, 0), 4.0)


def _low_pass(grey: np.ndarray) -> np.ndarray:
    """Light at the scale of regions (a few percent of the frame), where light changes live; broad
    enough that motion the flow got slightly wrong barely moves it."""
    return cv2.GaussianBlur(grey, (0, 0), 8.0)


def _box(image: np.ndarray, radius: int) -> np.ndarray:
    return cv2.boxFilter(image, -1, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def fit_local_affine(source, target, weight, *, radius: int, regularization: float, max_gain: float = 2.0):
    """Per-window, per-channel ``a, b`` with ``a * source + b ~ target`` over pixels weighted by ``weight``.

    ``source``/``target`` are ``[h, w, 3]``, ``weight`` ``[h, w]``. ``a`` is pulled toward 1 by
    ``regularization`` (a variance), so flat windows get a plain offset, and windows without weight
    get the identity (``a = 1, b = 0``). Returns smoothed ``a, b`` (guided-filter style).
    """
    w = weight[..., None]
    w_sum = _box(weight, radius)[..., None]
    safe = np.maximum(w_sum, 1e-6)
    mean_s = _box(w * source, radius) / safe
    mean_t = _box(w * target, radius) / safe
    var_s = _box(w * source * source, radius) / safe - mean_s * mean_s
    cov = _box(w * source * target, radius) / safe - mean_s * mean_t
    a = np.clip((cov + regularization) / (np.maximum(var_s, 0.0) + regularization), 1.0 / max_gain, max_gain)
    b = mean_t - a * mean_s
    # Windows that hardly see any weighted pixel fall back to the identity map.
    confidence = np.clip(w_sum / 0.05, 0.0, 1.0)
    a = 1.0 + confidence * (a - 1.0)
    b = confidence * b
    return _box(a, radius), _box(b, radius)


class Deflicker:
    """Streaming deflicker: feed consecutive chunks to :meth:`process`; state carries across calls.

    ``strength`` 0..1 scales how strongly each frame follows the previous output (0 = unchanged).
    """

    def __init__(
        self,
        strength: float = 1.0,
        *,
        temporal_weight: float = 0.95,
        anchor_frames: float = 1.0,
        work_size: int = 180,
        radius: int = 2,
        regularization: float = 3e-4,
        flow_preset: str = "balanced",
        cut_visible_fraction: float = 0.3,
        detail_tolerance: float = 0.03,
        light_tolerance: float = 0.06,
    ):
        self.strength = check_strength(strength)
        self.temporal_weight = temporal_weight
        self.anchor_frames = anchor_frames
        self.light_tolerance = light_tolerance
        self.work_size = work_size
        self.radius = radius
        self.regularization = regularization
        self.flow_preset = flow_preset
        self.cut_visible_fraction = cut_visible_fraction
        self.detail_tolerance = detail_tolerance
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (the next frame starts a new shot)."""
        self._previous = None  # (guide grey, output, mask) at work resolution
        self._offset = None  # full-resolution scratch buffer
        self._uses_reference = None
        self.cuts = []  # frame indices (since construction) where a shot cut was detected
        self._index = 0
        self._run = 0  # frames followed since the start of the shot

    def _work_shape(self, height: int, width: int):
        scale = min(1.0, self.work_size / min(height, width))
        return max(8, round(height * scale)), max(8, round(width * scale))

    def process(self, frames_chunk, reference_chunk=None, mask_chunk=None) -> torch.Tensor:
        """Deflicker the next ``[T, H, W, 3]`` frames; optional reference frames and mask of the same size."""
        frames = check_frames(frames_chunk, "frames")
        if reference_chunk is not None:
            reference_chunk = check_frames(reference_chunk, "reference")
            check_same_size(frames, reference_chunk, "frames", "reference")
            check_same_length(frames, reference_chunk, "frames", "reference")
        if mask_chunk is not None:
            mask_chunk = check_mask(mask_chunk, "mask")
            check_same_size(frames, mask_chunk, "frames", "mask")
            check_same_length(frames, mask_chunk, "frames", "mask")
        uses_reference = reference_chunk is not None
        if self._uses_reference is not None and uses_reference != self._uses_reference:
            raise HarmoVidError(
                "deflicker: give the reference video for every chunk or for none (the flow would change source)."
            )
        self._uses_reference = uses_reference
        out = torch.empty(frames.shape, dtype=torch.float32)
        for t in range(frames.shape[0]):
            reference = reference_chunk[t] if uses_reference else None
            mask = mask_chunk[t] if mask_chunk is not None else None
            self._frame(frames[t], reference, mask, out[t].numpy())
        return out.to(frames.device)

    def _frame(self, frame, reference, mask, result: np.ndarray) -> None:
        """Deflicker one frame into ``result`` (``[H, W, 3]`` float32, written in place)."""
        processed = np.ascontiguousarray(frame.detach().to("cpu", torch.float32).numpy())
        height, width = processed.shape[:2]
        work_h, work_w = self._work_shape(height, width)
        small = cv2.resize(processed, (work_w, work_h), interpolation=cv2.INTER_AREA)
        guide_source = small if reference is None else cv2.resize(
            np.ascontiguousarray(reference.detach().to("cpu", torch.float32).numpy()), (work_w, work_h),
            interpolation=cv2.INTER_AREA,
        )
        guide = guide_source @ GREY_WEIGHTS
        if reference is None:
            # The guide is the flickering frame itself: take the motion from its structure (grey minus
            # its regional light), which flicker leaves alone, so the flow does not chase the flicker.
            guide = guide - _low_pass(guide) + 0.5
        if mask is None:
            mask_full = None
            mask_small = np.ones((work_h, work_w), np.float32)
        else:
            mask_full = np.ascontiguousarray(mask.detach().to("cpu", torch.float32).numpy())
            mask_small = cv2.resize(mask_full, (work_w, work_h), interpolation=cv2.INTER_AREA)

        follow = self._temporal_weight(guide, mask_small)
        if follow is None:  # first frame or shot cut: nothing to follow
            output_small = small
            result[...] = processed
        else:
            weight, flow = follow
            target = small + weight[..., None] * (warp(self._previous[1], flow).numpy() - small)
            a, b = fit_local_affine(small, target, mask_small, radius=self.radius, regularization=self.regularization)
            output_small = np.clip(a * small + b, 0.0, 1.0)
            # Full resolution: a few in-place passes (this is most of the cost at 720p and above), into
            # buffers that are reused: a fresh large array costs its page faults again every frame.
            if self._offset is None or self._offset.shape != result.shape:
                self._offset = np.empty_like(result)
            cv2.resize(a, (width, height), dst=result, interpolation=cv2.INTER_LINEAR)
            result *= processed
            result += cv2.resize(b, (width, height), dst=self._offset, interpolation=cv2.INTER_LINEAR)
            np.clip(result, 0.0, 1.0, out=result)
            if mask_full is not None:
                result -= processed
                result *= mask_full[..., None]
                result += processed
                output_small = small + mask_small[..., None] * (output_small - small)
        self._previous = (guide, output_small.astype(np.float32), mask_small)
        self._index += 1

    def _temporal_weight(self, guide: np.ndarray, mask_small: np.ndarray):
        """``(weight, flow)``: per-pixel weight of the previous output and the flow that carries it onto
        this frame; None at the first frame and at shot cuts."""
        if self._previous is None or self._previous[0].shape != guide.shape or self.strength == 0.0:
            return None
        previous_guide, _, previous_mask = self._previous
        flow_back = dis_flow(guide, previous_guide, preset=self.flow_preset)
        flow_forward = dis_flow(previous_guide, guide, preset=self.flow_preset)
        visible = occlusion_mask(flow_back, flow_forward, motion_boundaries=False).numpy()
        if visible.mean() < self.cut_visible_fraction:
            self.cuts.append(self._index)
            self._run = 0
            return None
        # Where the flow is consistent but wrong (fast, thin motion), the warped detail does not match:
        # compare the guide's high frequencies, which brightness flicker leaves alone.
        warped_guide = warp(previous_guide, flow_back).numpy()
        mismatch = _detail(warped_guide) - _detail(guide)
        visible *= np.exp(-(mismatch / self.detail_tolerance) ** 2)
        if self._uses_reference:
            # The unprocessed video's own light changed here: the processed frame's change is intended.
            light_change = _low_pass(warped_guide) - _low_pass(guide)
            visible *= np.exp(-(light_change / self.light_tolerance) ** 2)
        # Soften the occlusion edges so the correction does not step at them.
        visible = cv2.GaussianBlur(visible, (0, 0), 1.0)
        foreground_both = mask_small * warp(previous_mask, flow_back).numpy()
        # Running mean anchored on the shot's first frame, then an exponential moving average.
        self._run += 1
        anchored = self._run + self.anchor_frames
        history = min(self.temporal_weight, anchored / (anchored + 1.0))
        weight = history * self.strength * visible * np.clip(foreground_both * 2.0, 0.0, 1.0)
        return weight, flow_back


def deflicker(
    frames: torch.Tensor,
    *,
    reference: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
    strength: float = 1.0,
    progress: ProgressCallback = None,
    chunk_frames: int = 16,
) -> torch.Tensor:
    """Remove lighting flicker from processed ``frames`` ``[T, H, W, 3]``; returns the same shape.

    ``reference``: the unprocessed video, used for motion only (optional). ``mask`` ``[T, H, W]``,
    1 = foreground: restrict the correction to the foreground (optional). ``strength`` 0..1.
    """
    frames = check_frames(frames, "frames")
    # Check whole clips up front: a length mismatch would otherwise surface only in the last chunk.
    if reference is not None:
        reference = check_frames(reference, "reference")
        check_same_length(frames, reference, "frames", "reference")
    if mask is not None:
        mask = check_mask(mask, "mask")
        check_same_length(frames, mask, "frames", "mask")
    engine = Deflicker(strength)
    total = frames.shape[0]
    outputs = []
    for start in range(0, total, chunk_frames):
        stop = min(start + chunk_frames, total)
        outputs.append(
            engine.process(
                frames[start:stop],
                None if reference is None else reference[start:stop],
                None if mask is None else mask[start:stop],
            )
        )
        report(progress, stop, total)
    return torch.cat(outputs)

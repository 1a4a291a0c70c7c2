"""Optical flow (OpenCV DIS), backward warping and forward-backward occlusion.

Conventions: a flow is ``[H, W, 2]`` float32 in pixels, channel 0 = x (columns), channel 1 = y (rows).
``dis_flow(a, b)`` gives, for each pixel x of frame ``a``, where it went in frame ``b``: ``x + flow(x)``.
So ``warp(b, dis_flow(a, b))`` is frame ``b`` moved onto frame ``a``.
"""

import cv2
import numpy as np
import torch

from .errors import HarmoVidError
from .filters import float_array

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    # "fast" carried down to medium's finest scale (half resolution instead of a quarter) with fewer
    # refinement iterations: most of medium's accuracy on small frames at about half its cost.
    "balanced": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def _dis(preset: str):
    dis = cv2.DISOpticalFlow_create(PRESETS[preset])
    if preset == "balanced":
        dis.setFinestScale(1)
        dis.setVariationalRefinementIterations(3)
    return dis


GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601 luma


def to_grey_uint8(frame) -> np.ndarray:
    """``[H, W, 3]`` or ``[H, W]`` float 0..1 (tensor or array) -> ``[H, W]`` uint8 luma."""
    image = float_array(frame)
    if image.ndim == 3:
        if image.shape[-1] != 3:
            raise HarmoVidError(f"flow: expected a frame [H, W, 3] or [H, W], got shape {image.shape}.")
        image = image @ GREY_WEIGHTS
    elif image.ndim != 2:
        raise HarmoVidError(f"flow: expected a frame [H, W, 3] or [H, W], got shape {image.shape}.")
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def dis_flow(frame_a, frame_b, *, preset: str = "medium", scale: float = 1.0) -> torch.Tensor:
    """Dense flow from ``frame_a`` to ``frame_b`` in pixels, ``[H, W, 2]`` float32.

    ``preset`` is one of "ultrafast", "fast", "balanced", "medium" (OpenCV DIS). ``scale`` < 1 computes
    the flow on frames resized by that factor (much faster) and scales it back to full resolution.
    """
    if preset not in PRESETS:
        raise HarmoVidError(f"flow: unknown preset {preset!r}; use one of {', '.join(PRESETS)}.")
    if not 0.0 < scale <= 1.0:
        raise HarmoVidError(f"flow: scale must be in (0, 1], got {scale}.")
    grey_a, grey_b = to_grey_uint8(frame_a), to_grey_uint8(frame_b)
    if grey_a.shape != grey_b.shape:
        raise HarmoVidError(f"flow: frames differ in size ({grey_a.shape} vs {grey_b.shape}); resize one to match.")
    height, width = grey_a.shape
    if scale < 1.0:
        small = (max(8, round(width * scale)), max(8, round(height * scale)))
        grey_a = cv2.resize(grey_a, small, interpolation=cv2.INTER_AREA)
        grey_b = cv2.resize(grey_b, small, interpolation=cv2.INTER_AREA)
    flow = _dis(preset).calc(grey_a, grey_b, None)
    if scale < 1.0:
        small_h, small_w = grey_a.shape
        flow = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
        flow[..., 0] *= width / small_w
        flow[..., 1] *= height / small_h
    return torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32))


def _sample_maps(flow: np.ndarray):
    height, width = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return xs + flow[..., 0], ys + flow[..., 1]


def warp(image, flow) -> torch.Tensor:
    """Backward warp: ``out(x) = image(x + flow(x))``, bilinear, edges repeated.

    ``image`` is ``[H, W, C]`` (any C) or ``[H, W]``; ``flow`` is ``[H, W, 2]``. Returns a float32 tensor
    of the image's shape.
    """
    source, flow_np = float_array(image), float_array(flow)
    if flow_np.ndim != 3 or flow_np.shape[-1] != 2:
        raise HarmoVidError(f"warp: expected a flow [H, W, 2], got shape {flow_np.shape}.")
    if source.shape[:2] != flow_np.shape[:2]:
        raise HarmoVidError(f"warp: image {source.shape[:2]} and flow {flow_np.shape[:2]} differ in size.")
    map_x, map_y = _sample_maps(flow_np)
    # cv2.remap takes at most 4 channels at once: warp wider images in groups.
    if source.ndim == 2 or source.shape[-1] <= 4:
        out = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out = out.reshape(source.shape)
    else:
        parts = [
            cv2.remap(np.ascontiguousarray(source[..., c : c + 4]), map_x, map_y, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REPLICATE).reshape(*source.shape[:2], -1)
            for c in range(0, source.shape[-1], 4)
        ]
        out = np.concatenate(parts, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def _squared_length(vectors: np.ndarray) -> np.ndarray:
    """``|v|^2`` of 2-vectors ``[H, W, 2]``: the same sum as ``(v**2).sum(-1)``, about 20x faster (numpy's
    reductions over a last axis of 2 are slow)."""
    return vectors[..., 0] ** 2 + vectors[..., 1] ** 2


def occlusion_mask(
    flow_forward,
    flow_backward,
    *,
    consistency: float = 0.01,
    slack: float = 0.5,
    motion_boundaries: bool = True,
) -> torch.Tensor:
    """Where ``flow_forward`` (a -> b) can be trusted, ``[H, W]`` float32, 1 = visible in both frames.

    Forward-backward consistency (Sundaram et al. 2010): a pixel is occluded when
    ``|w + w^|^2 > consistency * (|w|^2 + |w^|^2) + slack``, with ``w^`` the backward flow (b -> a)
    sampled where the forward flow lands. With ``motion_boundaries`` it is also dropped where the
    forward flow's gradient is large (``|grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002``). Pixels that
    flow outside the frame are not visible.
    """
    forward, backward = float_array(flow_forward), float_array(flow_backward)
    if forward.shape != backward.shape or forward.ndim != 3 or forward.shape[-1] != 2:
        raise HarmoVidError(
            f"occlusion_mask: expected two flows [H, W, 2] of the same size, got {forward.shape} and {backward.shape}."
        )
    backward_at_target = warp(backward, forward).numpy()
    sum_sq = _squared_length(forward + backward_at_target)
    magnitude_sq = _squared_length(forward) + _squared_length(backward_at_target)
    visible = sum_sq <= consistency * magnitude_sq + slack
    if motion_boundaries:
        grad_sq = np.zeros(forward.shape[:2], dtype=np.float32)
        for c in range(2):
            gy, gx = np.gradient(forward[..., c])
            grad_sq += gx**2 + gy**2
        visible &= grad_sq <= 0.01 * _squared_length(forward) + 0.002
    height, width = forward.shape[:2]
    target_x, target_y = _sample_maps(forward)
    visible &= (target_x >= 0) & (target_x <= width - 1) & (target_y >= 0) & (target_y <= height - 1)
    return torch.from_numpy(visible.astype(np.float32))

"""Detail transfer: keep the composite's own pixels and add only the light change the model made.

A video VAE loses fine detail (skin texture, hair, text) and shifts colours a little on its round trip,
so a decoded HarmoVid result is softer than its composite, and the tiny VAEs of CPU smoke runs lose far
more. HarmoVid's job is the light, not the content, so the change it made can be read off the decoded
frames and put back on the untouched composite::

    result = composite + smooth(decoded - decode(encode(composite)))

Subtracting the VAE's reconstruction of the composite (not the composite itself) cancels the VAE's own
loss and colour shift: what remains is what the model changed. ``smooth`` (a Gaussian of ``radius``
pixels) drops the VAE's remaining high-frequency noise; the light the model changes is smooth at that
scale. The change is brought to the composite's size, so a clip can be sampled at a low resolution and
its light applied to the full-resolution composite.
"""

from typing import Optional

import cv2
import numpy as np
import torch

from ..errors import HarmoVidError
from ..filters import float_array
from ..progress import ProgressCallback, report
from ..validate import check_frames, check_same_length, check_same_size

# How far the composite's aspect ratio may differ from the sampled frames' (rounding to the VAE's
# multiple of 8 changes it by up to a few percent at small sizes).
ASPECT_TOLERANCE = 0.05


def _check_aspect(sampled: torch.Tensor, composite: torch.Tensor) -> None:
    sampled_height, sampled_width = sampled.shape[1:3]
    height, width = composite.shape[1:3]
    ratio = (width / height) / (sampled_width / sampled_height)
    if abs(ratio - 1.0) > ASPECT_TOLERANCE:
        raise HarmoVidError(
            f"detail transfer: the composite is {width}x{height} but the harmonized frames are "
            f"{sampled_width}x{sampled_height}, a different shape. Give the composite that was encoded, or the "
            "same clip at a higher resolution with the same aspect ratio."
        )


def transfer_light(
    harmonized: torch.Tensor,
    reconstruction: torch.Tensor,
    composite: torch.Tensor,
    *,
    radius: float = 4.0,
    out: Optional[torch.Tensor] = None,
    progress: ProgressCallback = None,
) -> torch.Tensor:
    """``composite + smooth(harmonized - reconstruction)``, ``[T, H, W, 3]`` float32 0..1 on the CPU.

    ``harmonized``: the decoded HarmoVid frames; ``reconstruction``: the same VAE's decoding of the
    composite's own latent (both ``[T, h, w, 3]``); ``composite``: the composite ``[T, H, W, 3]`` at the
    sampled size or larger, with the same aspect. ``radius``: Gaussian sigma in sampled pixels (0 = none).
    ``out``: a CPU float32 tensor of the composite's shape to write into instead of a new one; it may be
    ``reconstruction`` itself (each frame is read before it is written), which saves a copy of the clip.
    The other inputs are left unchanged.
    """
    harmonized = check_frames(harmonized, "harmonized frames")
    reconstruction = check_frames(reconstruction, "reconstruction")
    composite = check_frames(composite, "composite")
    check_same_size(harmonized, reconstruction, "harmonized frames", "reconstruction")
    check_same_length(harmonized, reconstruction, "harmonized frames", "reconstruction")
    check_same_length(harmonized, composite, "harmonized frames", "composite")
    _check_aspect(harmonized, composite)
    if not radius >= 0.0:
        raise HarmoVidError(f"detail transfer: radius must be 0 or more pixels, got {radius}.")
    frame_count, height, width = composite.shape[:3]
    same_size = tuple(harmonized.shape[1:3]) == (height, width)
    if out is None:
        out = torch.empty(composite.shape, dtype=torch.float32)
    elif out.shape != composite.shape or out.dtype != torch.float32 or out.device.type != "cpu":
        raise HarmoVidError(
            f"detail transfer: out must be a CPU float32 tensor of the composite's shape {tuple(composite.shape)}, "
            f"got {out.dtype} {tuple(out.shape)} on {out.device}."
        )
    for t in range(frame_count):
        change = float_array(harmonized[t]) - float_array(reconstruction[t])
        if radius > 0:
            change = cv2.GaussianBlur(change, (0, 0), radius)
        if not same_size:
            change = cv2.resize(change, (width, height), interpolation=cv2.INTER_LINEAR)
        frame = out[t].numpy()
        frame[...] = float_array(composite[t])
        frame += change
        np.clip(frame, 0.0, 1.0, out=frame)
        report(progress, t + 1, frame_count)
    return out

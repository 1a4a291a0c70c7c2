"""How pixel-space clips map onto the latent grid: the pad-and-trim policy and the mask folding.

Pad-and-trim policy (shared by the VAE and the model, so a mask always lines up with its latents):

- Frames: the CogVideoX VAE maps ``4k + 1`` frames to ``k + 1`` latent frames (the first frame alone,
  then groups of 4). A clip of any other length is padded at the end by repeating its last frame up to
  the next ``4k + 1``; after decoding, the caller trims back to the original count. Repeating the last
  frame (rather than zeros or a mirror) adds no new motion or light for the causal VAE to encode.
- Height and width: padded at the bottom and right by repeating the last row and column up to a
  multiple of ``spatial_compression_ratio * patch_size`` (16 for CogVideoX), so every latent is
  patchable; decoding crops back. Replicated edges keep the padding from looking like a hard border.
"""

import math

import torch

from ..errors import HarmoVidError


def padded_frame_count(frames: int, temporal_compression: int = 4) -> int:
    """The smallest ``temporal_compression * k + 1`` that is >= ``frames``."""
    if frames < 1:
        raise HarmoVidError("A clip needs at least one frame.")
    return math.ceil((frames - 1) / temporal_compression) * temporal_compression + 1


def latent_frame_count(frames: int, temporal_compression: int = 4) -> int:
    """Latent frames T' for a clip of ``frames`` frames after padding: ``(T - 1) / 4 + 1``."""
    return (padded_frame_count(frames, temporal_compression) - 1) // temporal_compression + 1


def pixel_frame_count(latent_frames: int, temporal_compression: int = 4) -> int:
    """Pixel frames covered by ``latent_frames`` latent frames: ``4 (T' - 1) + 1``."""
    return (latent_frames - 1) * temporal_compression + 1


def padded_size(size: int, multiple: int) -> int:
    """``size`` rounded up to a multiple of ``multiple``."""
    return math.ceil(size / multiple) * multiple


def pad_by_repeating(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Pad ``x`` along ``dim`` to ``size`` by repeating its last slice (no copy when nothing is padded)."""
    missing = size - x.shape[dim]
    if missing <= 0:
        return x
    last = x.narrow(dim, x.shape[dim] - 1, 1)
    repeat_shape = list(x.shape)
    repeat_shape[dim] = missing
    return torch.cat([x, last.expand(repeat_shape)], dim=dim)


def fold_mask(
    mask: torch.Tensor,
    latent_frames: int,
    latent_height: int,
    latent_width: int,
    temporal_compression: int = 4,
    spatial_compression: int = 8,
) -> torch.Tensor:
    """Bring a pixel-resolution mask ``[B, 1, T, H, W]`` onto the latent grid ``[B, M, T', h, w]``.

    Each latent cell covers ``temporal_compression`` frames x ``spatial_compression``^2 pixels; their
    alpha values become its ``M`` channels, unchanged (soft values kept, nothing averaged away). The
    first latent frame covers frame 0 alone (the VAE's causal layout), so frame 0 fills all its
    temporal slots. A mask shorter or smaller than the latent grid is padded by the policy above.
    """
    if mask.ndim == 4:
        mask = mask.unsqueeze(1)
    if mask.ndim != 5 or mask.shape[1] != 1:
        raise HarmoVidError(
            f"mask: expected [B, 1, T, H, W] at pixel resolution, got shape {tuple(mask.shape)}. "
            "A ComfyUI MASK [T, H, W] becomes mask[None, None]."
        )
    t, s = temporal_compression, spatial_compression
    frames, height, width = pixel_frame_count(latent_frames, t), latent_height * s, latent_width * s
    if mask.shape[2] > frames or mask.shape[3] > height or mask.shape[4] > width:
        raise HarmoVidError(
            f"mask is {mask.shape[2]} frames of {mask.shape[4]}x{mask.shape[3]} but the latents cover at most "
            f"{frames} frames of {width}x{height}. Encode the clip and its mask with the same frames and size."
        )
    batch = mask.shape[0]
    mask = pad_by_repeating(mask, 2, frames)
    mask = pad_by_repeating(mask, 3, height)
    mask = pad_by_repeating(mask, 4, width)  # [B, 1, 4(T'-1)+1, h*8, w*8]
    first = mask[:, :, :1].expand(-1, -1, t - 1, -1, -1)
    mask = torch.cat([first, mask], dim=2)  # [B, 1, 4 T', h*8, w*8]
    mask = mask.reshape(batch, latent_frames, t, latent_height, s, latent_width, s)
    mask = mask.permute(0, 2, 4, 6, 1, 3, 5)  # [B, 4, 8, 8, T', h, w]
    return mask.reshape(batch, t * s * s, latent_frames, latent_height, latent_width)  # [B, M, T', h, w]

"""Checks on tensors coming from users and other nodes, each failing with one clear message."""

import torch

from .errors import HarmoVidError


def _all_finite(tensor: torch.Tensor) -> bool:
    # One summing pass is much cheaper than an elementwise isfinite on a whole clip; only when the
    # sum is not finite (NaN/inf inside, or an overflow) is the exact check needed.
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def check_frames(frames: torch.Tensor, name: str = "frames", *, finite: bool = True) -> torch.Tensor:
    """Frames must be ``[T, H, W, 3]`` float, finite, with at least one frame. ``finite=False`` leaves the
    finiteness check to a caller that makes it more cheaply on what it computes anyway."""
    if not isinstance(frames, torch.Tensor):
        raise HarmoVidError(f"{name}: expected a torch tensor [T, H, W, 3], got {type(frames).__name__}.")
    if frames.ndim == 3 and frames.shape[-1] == 3:
        frames = frames.unsqueeze(0)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        hint = ""
        if frames.ndim == 4 and frames.shape[1] == 3:
            hint = " It looks channels-first [T, 3, H, W]; permute it to [T, H, W, 3]."
        elif frames.ndim == 4 and frames.shape[-1] == 4:
            hint = " It has 4 channels (RGBA); drop the alpha channel and pass it as a MASK instead."
        elif frames.ndim == 4 and frames.shape[-1] == 1:
            hint = " It has 1 channel; repeat it to 3 channels, or pass it as a MASK."
        raise HarmoVidError(f"{name}: expected IMAGE frames [T, H, W, 3], got shape {tuple(frames.shape)}.{hint}")
    if frames.shape[0] == 0:
        raise HarmoVidError(f"{name}: the clip has no frames. Check the input video or frame range.")
    if not frames.is_floating_point():
        raise HarmoVidError(
            f"{name}: expected float frames in 0..1, got {frames.dtype}. Convert with frames.float() / 255."
        )
    if finite and not _all_finite(frames):
        raise HarmoVidError(f"{name}: contains NaN or infinite values. Fix the node that produced them.")
    return frames


def check_mask(mask: torch.Tensor, name: str = "mask", *, finite: bool = True) -> torch.Tensor:
    """Masks must be ``[T, H, W]`` float in 0..1 (1 = foreground), finite (see ``check_frames``)."""
    if not isinstance(mask, torch.Tensor):
        raise HarmoVidError(f"{name}: expected a torch tensor [T, H, W], got {type(mask).__name__}.")
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim == 4 and mask.shape[-1] in (1, 3):
        raise HarmoVidError(
            f"{name}: expected a MASK [T, H, W], got IMAGE-like shape {tuple(mask.shape)}. "
            "Convert the image to a mask first (e.g. ComfyUI's 'Convert Image to Mask')."
        )
    if mask.ndim != 3:
        raise HarmoVidError(f"{name}: expected a MASK [T, H, W], got shape {tuple(mask.shape)}.")
    if mask.shape[0] == 0:
        raise HarmoVidError(f"{name}: the mask has no frames.")
    if not mask.is_floating_point():
        if mask.dtype == torch.bool:
            mask = mask.float()
        else:
            raise HarmoVidError(f"{name}: expected float values in 0..1, got {mask.dtype}. Divide by 255.")
    if finite and not _all_finite(mask):
        raise HarmoVidError(f"{name}: contains NaN or infinite values. Fix the node that produced it.")
    return mask


def check_same_size(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Frames/masks must share height and width."""
    size_a, size_b = tuple(a.shape[1:3]), tuple(b.shape[1:3])
    if size_a != size_b:
        raise HarmoVidError(
            f"{name_a} is {size_a[1]}x{size_a[0]} but {name_b} is {size_b[1]}x{size_b[0]}. "
            f"Resize one to match (e.g. ComfyUI's 'Upscale Image'), or use the Composite node, which places "
            "clips of different sizes."
        )


def check_same_length(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Frames/masks must have the same frame count."""
    if a.shape[0] != b.shape[0]:
        raise HarmoVidError(
            f"{name_a} has {a.shape[0]} frames but {name_b} has {b.shape[0]}. Trim them to the same length, "
            "or use the Composite node's length policy."
        )


def check_not_empty(mask: torch.Tensor, name: str = "mask") -> None:
    """A foreground mask that selects nothing cannot guide harmonization."""
    if float(mask.max()) <= 0.0:
        raise HarmoVidError(
            f"{name} is empty (all zero): nothing is marked as foreground. Check the segmentation, "
            "and remember MASK uses 1 = foreground (ComfyUI's LoadImage gives 1 - alpha: invert it)."
        )


def check_strength(strength: float, name: str = "strength") -> float:
    """A blend strength: 0 leaves the input unchanged, 1 applies the method fully."""
    if not 0.0 <= float(strength) <= 1.0:
        raise HarmoVidError(f"{name} must be between 0 and 1, got {strength}.")
    return float(strength)

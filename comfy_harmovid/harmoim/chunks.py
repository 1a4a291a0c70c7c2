"""What both per-frame harmonizers (statistics and learned) do with a chunk before harmonizing it."""

import numpy as np
import torch

from ..errors import HarmoVidError
from ..validate import check_frames, check_mask, check_same_length, check_same_size


def checked_chunk(composite_chunk, alpha_chunk, *, finite: bool = True):
    """The composite ``[T, H, W, 3]`` and alpha ``[T, H, W]`` chunk a harmonizer gets, validated together
    (``finite=False``: all but their finiteness, which the caller checks)."""
    composite = check_frames(composite_chunk, "composite", finite=finite)
    alpha = check_mask(alpha_chunk, "alpha", finite=finite)
    check_same_size(composite, alpha, "composite", "alpha")
    check_same_length(composite, alpha, "composite", "alpha")
    return composite, alpha


def output_buffer(out, composite: torch.Tensor) -> torch.Tensor:
    """Where a harmonizer writes the chunk: the caller's ``out`` once checked, else a new tensor.

    A buffer reused from chunk to chunk saves allocating a new chunk each time (at 720p and above a
    fresh chunk costs a page fault per 4 KiB touched, about as much as harmonizing it).
    """
    if out is None:
        return torch.empty(composite.shape, dtype=torch.float32)
    if not isinstance(out, torch.Tensor):
        raise HarmoVidError(f"out: expected a torch tensor to write the harmonized frames into, got {type(out).__name__}.")
    if tuple(out.shape) != tuple(composite.shape) or out.dtype != torch.float32:
        raise HarmoVidError(
            f"out: expected a float32 tensor of the composite chunk's shape {tuple(composite.shape)}, got "
            f"{out.dtype} {tuple(out.shape)}. Slice a reused buffer to the chunk's length (buffer[:T])."
        )
    if out.device.type != "cpu" or composite.device.type != "cpu" or not out.is_contiguous():
        raise HarmoVidError("out: a reusable output buffer works for CPU chunks only, and must be contiguous.")
    # Only a float32 composite is read in place (any other is converted to a float32 copy first).
    if composite.dtype == torch.float32 and np.may_share_memory(out.numpy(), composite.detach().numpy()):
        raise HarmoVidError("out must not overlap the composite chunk: harmonizing reads it while writing out.")
    return out

"""Quality metrics for harmonized and deflickered clips.

Frame metrics compare an output clip with a reference clip (IMAGE ``[T, H, W, 3]``, 0..1): PSNR,
SSIM, RMSE, and the harmonization literature's foreground-only fMSE and fPSNR, each averaged over
frames (PSNR and fPSNR from the frames' mean MSE). Temporal metrics follow Lai et al. 2018 (warping error) and the paper's Table 1 (motion
preservation); both take their flow and occlusion from the clean/reference clip. Boundary sharpness is
the paper's Table 4: Laplacian variance and Tenengrad in a thin band around the alpha boundary.
"""

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import torch

from ..errors import HarmoVidError
from ..flow import dis_flow, occlusion_mask, warp
from ..progress import ProgressCallback, report
from ..validate import check_frames, check_mask, check_same_length, check_same_size


def _pair(output: torch.Tensor, reference: torch.Tensor):
    output, reference = check_frames(output, "output"), check_frames(reference, "reference")
    check_same_size(output, reference, "output", "reference")
    check_same_length(output, reference, "output", "reference")
    return output.float(), reference.float()


def _frame_mask(mask: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    mask = check_mask(mask, "mask")
    check_same_size(frames, mask, "frames", "mask")
    check_same_length(frames, mask, "frames", "mask")
    return mask.float().clamp(0.0, 1.0)


def mse_to_psnr(mse: torch.Tensor, max_value: float = 1.0) -> float:
    """PSNR of a clip from its per-frame MSEs: 10 log10(max^2 / mean MSE); inf only if every frame is exact.

    Pooling the MSE (rather than averaging per-frame PSNRs) keeps one untouched frame, whose PSNR is
    infinite, from making the whole clip's score infinite.
    """
    mean = float(mse.double().mean())
    return math.inf if mean <= 0 else 10.0 * math.log10(max_value**2 / mean)


def mse_per_frame(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each frame over all pixels and channels, ``[T]``."""
    output, reference = _pair(output, reference)
    return ((output - reference) ** 2).mean(dim=(1, 2, 3))


def psnr(output: torch.Tensor, reference: torch.Tensor, max_value: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of the clip (MSE pooled over frames; inf for identical clips)."""
    return mse_to_psnr(mse_per_frame(output, reference), max_value)


def rmse(output: torch.Tensor, reference: torch.Tensor) -> float:
    """Root mean squared error on the 0..1 scale, averaged over frames (the paper's Table 1)."""
    return float(mse_per_frame(output, reference).sqrt().mean())


def foreground_mse(output: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-frame MSE over foreground pixels (mask-weighted), for frames whose mask is not empty."""
    output, reference = _pair(output, reference)
    weights = _frame_mask(mask, output)
    area = weights.sum(dim=(1, 2))
    if float(area.max()) <= 0:
        raise HarmoVidError("fMSE/fPSNR: the mask is empty in every frame, so there is no foreground to score.")
    squared = ((output - reference) ** 2).mean(dim=-1)
    per_frame = (squared * weights).sum(dim=(1, 2)) / area.clamp(min=1e-8)
    return per_frame[area > 0]


def fmse(output: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor, scale: float = 255.0) -> float:
    """Foreground MSE: MSE over the mask's pixels, averaged over frames.

    Reported on the 0..``scale`` range; the default 255 matches the image harmonization literature
    (iHarmony4 / DoveNet report fMSE on 8-bit values). Soft masks weight pixels by their alpha.
    """
    return float(foreground_mse(output, reference, mask).mean()) * scale**2


def fpsnr(output: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> float:
    """Foreground PSNR in dB: PSNR of the foreground MSE, pooled over frames."""
    return mse_to_psnr(foreground_mse(output, reference, mask), 1.0)


def ssim(
    output: torch.Tensor, reference: torch.Tensor, *, window: int = 11, sigma: float = 1.5, max_value: float = 1.0
) -> float:
    """Structural similarity (Wang et al. 2004): Gaussian 11x11 window (sigma 1.5), K1 = 0.01,
    K2 = 0.03, computed per channel over the valid region, averaged over channels and frames."""
    output, reference = _pair(output, reference)
    if min(output.shape[1:3]) < window:
        raise HarmoVidError(f"ssim: frames of {tuple(output.shape[1:3])} are smaller than the {window}px window.")
    c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
    crop = window // 2  # keep only windows that lie fully inside the frame ("valid"), as Wang et al.

    def blur(image):
        return cv2.GaussianBlur(image, (window, window), sigma)[crop:-crop, crop:-crop]

    scores = []
    for out_frame, ref_frame in zip(output.cpu().numpy(), reference.cpu().numpy()):
        x, y = out_frame.astype(np.float64), ref_frame.astype(np.float64)
        mu_x, mu_y = blur(x), blur(y)
        var_x = blur(x * x) - mu_x**2
        var_y = blur(y * y) - mu_y**2
        cov = blur(x * y) - mu_x * mu_y
        ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
        scores.append(float(ssim_map.mean()))
    return float(np.mean(scores))


# ---------------------------------------------------------------------------------------------
# Temporal metrics
# ---------------------------------------------------------------------------------------------


@dataclass
class ClipFlow:
    """Flow between consecutive frames of a clip: ``forward[t]`` is frame t -> t+1 (``[T-1, H, W, 2]``);
    ``visible[t]`` is 1 where that flow passes the forward-backward occlusion check (``[T-1, H, W]``)."""

    forward: torch.Tensor
    visible: torch.Tensor


def clip_flow(
    frames: torch.Tensor, *, preset: str = "medium", scale: float = 1.0, progress: ProgressCallback = None
) -> ClipFlow:
    """Forward flow and visibility between each pair of consecutive frames (OpenCV DIS)."""
    frames = check_frames(frames, "frames")
    pairs = frames.shape[0] - 1
    if pairs < 1:
        raise HarmoVidError("temporal metrics need at least two frames; the clip has one.")
    forward, visible = [], []
    for t in range(pairs):
        flow_ab = dis_flow(frames[t], frames[t + 1], preset=preset, scale=scale)
        flow_ba = dis_flow(frames[t + 1], frames[t], preset=preset, scale=scale)
        forward.append(flow_ab)
        visible.append(occlusion_mask(flow_ab, flow_ba))
        report(progress, t + 1, pairs)
    return ClipFlow(torch.stack(forward), torch.stack(visible))


def _reference_flow(frames, reference, flows) -> ClipFlow:
    if flows is not None:
        if flows.forward.shape[0] != frames.shape[0] - 1 or flows.forward.shape[1:3] != frames.shape[1:3]:
            raise HarmoVidError(
                f"the given flows cover {flows.forward.shape[0] + 1} frames of {tuple(flows.forward.shape[1:3])}, "
                f"but the clip has {frames.shape[0]} frames of {tuple(frames.shape[1:3])}. Compute them with "
                "clip_flow on the clip's own reference."
            )
        return flows
    if reference is not None:
        reference = check_frames(reference, "reference")
        check_same_size(frames, reference, "frames", "reference")
        check_same_length(frames, reference, "frames", "reference")
    return clip_flow(frames if reference is None else reference)


def warp_residual(frames: torch.Tensor, flows: ClipFlow) -> torch.Tensor:
    """``[T-1, H, W]``: squared colour difference (summed over RGB) between frame t and frame t+1
    warped onto it with ``flows`` (of the clean clip). The per-pixel term of the warping error."""
    frames = check_frames(frames, "frames").float().cpu()  # flow and warping run in OpenCV, on the CPU
    _reference_flow(frames, None, flows)  # checks that the flows fit the clip
    return torch.stack(
        [((warp(frames[t + 1], flows.forward[t]) - frames[t]) ** 2).sum(dim=-1) for t in range(frames.shape[0] - 1)]
    )


def masked_pair_mean(residual: torch.Tensor, flows: ClipFlow, mask: Optional[torch.Tensor] = None) -> float:
    """Mean over pairs of ``residual`` averaged over visible pixels (inside ``mask`` of frame t if given);
    pairs with no such pixel are skipped."""
    weights = flows.visible if mask is None else flows.visible * mask[:-1].float().cpu()
    area = weights.sum(dim=(1, 2))
    keep = area > 0
    if not bool(keep.any()):
        raise HarmoVidError("warping_error: no pixel is visible (and inside the mask) in any pair of frames.")
    return float(((residual * weights).sum(dim=(1, 2))[keep] / area[keep]).mean())


def warping_error(
    frames: torch.Tensor,
    reference: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
    *,
    flows: Optional[ClipFlow] = None,
) -> float:
    """Temporal warping error (Lai et al. 2018), lower is steadier.

    For each pair t, t+1: frame t+1 of ``frames`` is warped onto frame t with the flow of the clean
    ``reference`` clip (or ``frames`` itself when no reference is given; or precomputed ``flows``), and
    the squared colour difference (summed over RGB) is averaged over pixels that pass the
    forward-backward occlusion check, and also lie inside ``mask`` (frame t) if one is given. The
    result is the mean over pairs (pairs with no such pixel are skipped).
    """
    frames = check_frames(frames, "frames").float()
    flows = _reference_flow(frames, reference, flows)
    if mask is not None:
        mask = _frame_mask(mask, frames)
    return masked_pair_mean(warp_residual(frames, flows), flows, mask)


def motion_preservation(
    frames: torch.Tensor,
    reference: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    *,
    reference_flows: Optional[ClipFlow] = None,
    preset: str = "medium",
) -> float:
    """Mean end-point distance (pixels) between the consecutive-frame flows of ``frames`` and of
    ``reference`` (the paper's Table 1; lower keeps the reference's motion better). With ``mask``,
    only pixels inside the mask of frame t count (the paper's Table 2 uses the foreground)."""
    frames, reference = _pair(frames, reference)
    reference_flow = _reference_flow(frames, reference, reference_flows).forward
    weights = None if mask is None else _frame_mask(mask, frames)[:-1].cpu()
    distances = []
    for t in range(frames.shape[0] - 1):
        flow = dis_flow(frames[t], frames[t + 1], preset=preset)
        distance = (flow - reference_flow[t]).norm(dim=-1)
        if weights is None:
            distances.append(float(distance.mean()))
        elif float(weights[t].sum()) > 0:
            distances.append(float((distance * weights[t]).sum() / weights[t].sum()))
    if not distances:
        raise HarmoVidError("motion_preservation: the mask is empty in every frame.")
    return float(np.mean(distances))


# ---------------------------------------------------------------------------------------------
# Boundary sharpness (reference-free)
# ---------------------------------------------------------------------------------------------


def boundary_band(alpha: torch.Tensor, band: int = 5, threshold: float = 0.5) -> torch.Tensor:
    """``[T, H, W]`` bool: pixels within ``band`` px of the alpha boundary (dilation minus erosion)."""
    alpha = check_mask(alpha, "alpha")
    if band < 1:
        raise HarmoVidError(f"boundary band must be at least 1 pixel wide, got {band}.")
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    bands = []
    for frame_alpha in alpha:
        binary = (frame_alpha.cpu().numpy() >= threshold).astype(np.uint8)
        bands.append(cv2.dilate(binary, kernel) > cv2.erode(binary, kernel))
    return torch.from_numpy(np.stack(bands))


def boundary_sharpness(frames: torch.Tensor, alpha: torch.Tensor, band: int = 5) -> dict:
    """Laplacian variance and Tenengrad inside the band around the alpha boundary (the paper's Table 4).

    Both are computed on 8-bit luma (0..255, as the paper's magnitudes suggest): Laplacian variance is
    the variance of the 3x3 Laplacian over band pixels; Tenengrad the mean squared 3x3 Sobel gradient
    magnitude over band pixels. Averaged over frames whose band is not empty. Higher = sharper.
    """
    frames = check_frames(frames, "frames").float().cpu()
    bands = boundary_band(alpha, band)
    check_same_size(frames, bands, "frames", "alpha")
    check_same_length(frames, bands, "frames", "alpha")
    luma_weights = torch.tensor([0.299, 0.587, 0.114])
    laplacian_vars, tenengrads = [], []
    for frame, frame_band in zip(frames, bands.numpy()):
        if not frame_band.any():
            continue
        grey = (frame @ luma_weights).mul(255.0).numpy().astype(np.float64)
        laplacian = cv2.Laplacian(grey, cv2.CV_64F, ksize=1)
        grad_x = cv2.Sobel(grey, cv2.CV_64F, 1, 0, ksize=3)
        grad_y = cv2.Sobel(grey, cv2.CV_64F, 0, 1, ksize=3)
        laplacian_vars.append(float(laplacian[frame_band].var()))
        tenengrads.append(float((grad_x**2 + grad_y**2)[frame_band].mean()))
    if not laplacian_vars:
        raise HarmoVidError("boundary_sharpness: alpha has no boundary (it is empty or full in every frame).")
    return {"laplacian_variance": float(np.mean(laplacian_vars)), "tenengrad": float(np.mean(tenengrads))}

"""Metric values on cases with known answers."""

import math

import cv2
import numpy as np
import pytest
import torch

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.evaluation.metrics import (
    boundary_sharpness,
    clip_flow,
    fmse,
    fpsnr,
    motion_preservation,
    psnr,
    rmse,
    ssim,
    warping_error,
)


def random_clip(frames=3, height=32, width=40, seed=0):
    return torch.rand(frames, height, width, 3, generator=torch.Generator().manual_seed(seed))


def panning_clip(frames=5, height=64, width=80, step=2, seed=0):
    """A smooth texture sliding right by ``step`` px per frame (pure translation)."""
    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.random((height, width + step * frames, 3)).astype(np.float32), (0, 0), 2.5)
    return torch.stack([torch.from_numpy(big[:, step * (frames - t) : step * (frames - t) + width]) for t in range(frames)])


def test_identical_clips_score_perfectly():
    clip = random_clip()
    mask = torch.ones(clip.shape[:3])
    assert psnr(clip, clip) == math.inf and fpsnr(clip, clip, mask) == math.inf
    assert rmse(clip, clip) == 0.0 and fmse(clip, clip, mask) == 0.0
    assert ssim(clip, clip) == pytest.approx(1.0, abs=1e-9)


def test_psnr_and_rmse_of_a_known_error():
    clip = torch.full((2, 16, 16, 3), 0.5)
    off = clip + 0.1  # MSE 0.01 -> 20 dB
    assert psnr(off, clip) == pytest.approx(20.0, abs=1e-4)
    assert rmse(off, clip) == pytest.approx(0.1, abs=1e-6)


def test_psnr_of_gaussian_noise_matches_its_variance():
    clip = torch.full((2, 64, 64, 3), 0.5)
    noise = torch.randn(clip.shape, generator=torch.Generator().manual_seed(0)) * 0.05
    expected = 10 * math.log10(1 / 0.05**2)  # 26.02 dB
    assert psnr(clip + noise, clip) == pytest.approx(expected, abs=0.15)


def test_foreground_metrics_ignore_the_background():
    clip = torch.full((2, 10, 10, 3), 0.5)
    mask = torch.zeros(2, 10, 10)
    mask[:, :5] = 1
    out = clip.clone()
    out[:, :5] += 0.1  # foreground off by 0.1
    out[:, 5:] = 0.0  # background wrecked, must not count
    assert fpsnr(out, clip, mask) == pytest.approx(20.0, abs=1e-4)
    assert fmse(out, clip, mask) == pytest.approx(0.01 * 255**2, rel=1e-4), "fMSE is on the 0..255 scale"
    assert fmse(out, clip, mask, scale=1.0) == pytest.approx(0.01, rel=1e-4)
    with pytest.raises(HarmoVidError, match="empty"):
        fpsnr(out, clip, torch.zeros(2, 10, 10))


def test_ssim_drops_with_noise_and_blur():
    clip = panning_clip(frames=2)
    noisy = (clip + torch.randn(clip.shape, generator=torch.Generator().manual_seed(1)) * 0.1).clamp(0, 1)
    slightly = (clip + torch.randn(clip.shape, generator=torch.Generator().manual_seed(1)) * 0.02).clamp(0, 1)
    assert 1.0 > ssim(slightly, clip) > ssim(noisy, clip) > 0.0, "SSIM should fall as noise grows"
    # SSIM ignores a uniform brightness offset much less than it punishes structure loss.
    assert ssim((clip + 0.02).clamp(0, 1), clip) > ssim(noisy, clip)


def test_metrics_reject_mismatched_clips():
    with pytest.raises(HarmoVidError, match="frames"):
        psnr(random_clip(frames=3), random_clip(frames=2))
    with pytest.raises(HarmoVidError):
        ssim(random_clip(width=40), random_clip(width=30))


def test_warping_error_near_zero_for_pure_translation_and_positive_with_flicker():
    clip = panning_clip()
    steady = warping_error(clip)
    gains = torch.tensor([1.0, 0.8, 1.15, 0.85, 1.1]).view(-1, 1, 1, 1)
    flickering = (clip * gains).clamp(0, 1)
    flicker = warping_error(flickering, reference=clip)
    assert steady < 2e-4, f"warping error of a pure pan should be ~0, got {steady:.2e}"
    assert flicker > 20 * steady and flicker > 1e-3, f"flicker {flicker:.2e} not clearly above steady {steady:.2e}"


def test_warping_error_inside_a_mask_only_counts_the_masked_flicker():
    clip = panning_clip()
    mask = torch.zeros(clip.shape[:3])
    mask[:, :, :36] = 1  # 2 px/frame motion: keep clear of the flickering half
    flickering = clip.clone()
    flickering[1::2, :, 40:] *= 0.7  # flicker only outside the mask
    flows = clip_flow(clip)
    inside = warping_error(flickering, mask=mask, flows=flows)
    whole = warping_error(flickering, flows=flows)
    assert inside < 1e-4 and whole > 1e-2, f"masked error {inside:.2e} should stay small while whole {whole:.2e} grows"


def test_motion_preservation_zero_for_same_motion_and_positive_for_frozen_clip():
    clip = panning_clip()
    assert motion_preservation(clip, clip) == pytest.approx(0.0, abs=1e-6)
    frozen = clip[:1].expand_as(clip).contiguous()
    assert motion_preservation(frozen, clip) > 1.0, "a frozen clip should lose the 2 px/frame motion"


def test_boundary_sharpness_higher_for_hard_edge_than_blurred():
    height, width = 64, 64
    alpha = torch.zeros(1, height, width)
    alpha[:, 16:48, 16:48] = 1
    hard = torch.stack([alpha[0]] * 3, dim=-1).unsqueeze(0) * 0.8 + 0.1
    blurred = torch.from_numpy(cv2.GaussianBlur(hard[0].numpy(), (0, 0), 3.0)).unsqueeze(0)
    sharp_scores = boundary_sharpness(hard, alpha, band=4)
    soft_scores = boundary_sharpness(blurred, alpha, band=4)
    for key in ("laplacian_variance", "tenengrad"):
        assert sharp_scores[key] > 2 * soft_scores[key] > 0, f"{key}: hard {sharp_scores[key]} vs blurred {soft_scores[key]}"
    with pytest.raises(HarmoVidError, match="no boundary"):
        boundary_sharpness(hard, torch.zeros(1, height, width))


def test_one_exact_frame_does_not_make_psnr_infinite():
    clip = torch.full((2, 8, 8, 3), 0.5)
    out = clip.clone()
    out[1] += 0.1  # frame 0 exact, frame 1 off by 0.1: pooled MSE 0.005
    assert psnr(out, clip) == pytest.approx(10 * math.log10(1 / 0.005), abs=1e-4)

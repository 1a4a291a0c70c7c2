"""Optical flow, warping and occlusion on small synthetic images."""

import numpy as np
import pytest
import torch

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.flow import dis_flow, occlusion_mask, warp


def smooth_texture(height=96, width=128, seed=0):
    """A smooth random texture (blurred noise) that DIS can track."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.random((height, width, 3)).astype(np.float32)
    return torch.from_numpy(cv2.GaussianBlur(noise, (0, 0), 2.0))


def shifted(image, dx, dy):
    """Content moved by (dx, dy) pixels: out(x) = image(x - d)."""
    return torch.roll(image, shifts=(dy, dx), dims=(0, 1))


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_dis_flow_finds_a_translation(scale):
    a = smooth_texture()
    b = shifted(a, 3, -2)
    flow = dis_flow(a, b, scale=scale)
    assert flow.shape == (96, 128, 2) and flow.dtype == torch.float32
    inner = flow[16:-16, 16:-16].reshape(-1, 2).median(0).values
    assert torch.allclose(inner, torch.tensor([3.0, -2.0]), atol=0.3), f"median flow {inner.tolist()} != (3, -2)"


def test_warp_round_trip_restores_translated_image():
    a = smooth_texture()
    b = shifted(a, 4, 3)
    flow = dis_flow(a, b)
    back = warp(b, flow)
    error = (back - a)[16:-16, 16:-16].abs().mean().item()
    assert error < 0.01, f"warping b back onto a leaves mean error {error:.4f}"


def test_warp_exact_for_integer_flow_and_any_channel_count():
    image = torch.rand(20, 30, 7)
    flow = torch.zeros(20, 30, 2)
    flow[..., 0] = 2.0  # out(x) = image(x + 2)
    out = warp(image, flow)
    assert out.shape == image.shape
    assert torch.allclose(out[:, :-2], image[:, 2:]), "integer flow should shift channels exactly"
    grey = warp(image[..., 0], flow)
    assert grey.shape == (20, 30) and torch.allclose(grey[:, :-2], image[:, 2:, 0])


def test_occlusion_mask_flags_inconsistent_and_out_of_frame_pixels():
    flow_forward = torch.zeros(40, 40, 2)
    flow_backward = torch.zeros(40, 40, 2)
    flow_forward[..., 0] = 3.0
    flow_backward[..., 0] = -3.0
    flow_backward[10:20, 10:20, 0] = 5.0  # disagrees with the forward flow there
    visible = occlusion_mask(flow_forward, flow_backward, motion_boundaries=False)
    assert visible.shape == (40, 40)
    assert visible[30, 5] == 1.0, "consistent pixel marked occluded"
    assert visible[15, 10] == 0.0, "inconsistent pixel marked visible"
    assert visible[5, 38] == 0.0, "pixel flowing out of the frame marked visible"


def test_occlusion_mask_of_real_flows_is_mostly_visible_for_a_pure_translation():
    a = smooth_texture()
    b = shifted(a, 2, 1)
    visible = occlusion_mask(dis_flow(a, b), dis_flow(b, a))
    assert visible[16:-16, 16:-16].mean() > 0.9, "a translation should be visible almost everywhere"


def test_flow_rejects_mismatched_frames_and_bad_preset():
    with pytest.raises(HarmoVidError, match="differ in size"):
        dis_flow(torch.rand(10, 10, 3), torch.rand(12, 10, 3))
    with pytest.raises(HarmoVidError, match="preset"):
        dis_flow(torch.rand(10, 10, 3), torch.rand(10, 10, 3), preset="slow")
    with pytest.raises(HarmoVidError, match="flow"):
        warp(torch.rand(10, 10, 3), torch.rand(10, 10))


def test_balanced_preset_tracks_a_small_rotation_far_better_than_fast():
    import cv2

    a = smooth_texture(90, 160, seed=2)
    turn = cv2.getRotationMatrix2D((80, 45), 3.0, 1.02)  # content at x in a lands at turn @ x in b
    b = torch.from_numpy(cv2.warpAffine(a.numpy(), turn, (160, 90), borderMode=cv2.BORDER_REFLECT))
    ys, xs = np.mgrid[0:90, 0:160].astype(np.float32)
    true = np.stack([turn[0, 0] * xs + turn[0, 1] * ys + turn[0, 2] - xs,
                     turn[1, 0] * xs + turn[1, 1] * ys + turn[1, 2] - ys], -1)

    def end_point_error(preset):
        flow = dis_flow(a, b, preset=preset).numpy()
        return float(np.linalg.norm(flow - true, axis=-1)[12:-12, 12:-12].mean())

    fast, balanced = end_point_error("fast"), end_point_error("balanced")
    assert balanced < 0.15 and balanced < fast / 2, f"end-point error: balanced {balanced:.3f} px, fast {fast:.3f} px"

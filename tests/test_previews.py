"""Previews the nodes show after a run: a few frames spread over the clip (masks drawn over them), and
the layers the SAM2 Mask and Composite widgets draw. Saved only where ComfyUI has a temp folder."""

import cv2
import numpy as np
import pytest
import torch

from comfy_harmovid.alpha import pseudo_alpha
from comfy_harmovid.previews import OVERLAY_COLOUR, cutout, mask_overlay, preview_frames, preview_indices
from conftest import make_portrait_clip
from nodes import comfy_adapter
from nodes.compositing import HarmoVidComposite, HarmoVidPseudoAlpha


def test_preview_indices_spread_over_the_clip_with_both_ends():
    assert preview_indices(5, 24) == [0, 1, 2, 3, 4]
    chosen = preview_indices(300, 24)
    assert len(chosen) == 24 and chosen[0] == 0 and chosen[-1] == 299 and chosen == sorted(set(chosen))
    gaps = np.diff(chosen)
    assert gaps.max() - gaps.min() <= 1, f"uneven spread {gaps.tolist()}"


def test_preview_frames_are_scaled_down_and_masks_tint_them():
    frames = torch.rand(3, 600, 1200, 3)
    mask = torch.zeros(3, 600, 1200)
    mask[:, :, :600] = 1
    indices, pictures = preview_frames(frames, mask, max_side=300)
    assert indices == [0, 1, 2] and pictures[0].shape == (150, 300, 3) and pictures[0].dtype == np.uint8
    tinted = mask_overlay(frames[0], mask[0])
    assert np.allclose(tinted[:, 600:], frames[0, :, 600:].numpy()), "the overlay changed pixels outside the mask"
    assert np.abs(tinted[:, :600].mean((0, 1)) - OVERLAY_COLOUR).sum() < np.abs(frames[0, :, :600].numpy().mean((0, 1)) - OVERLAY_COLOUR).sum()


def test_cutout_carries_the_alpha():
    frame, alpha = torch.rand(40, 60, 3), torch.rand(40, 60)
    rgba = cutout(frame, alpha)
    assert rgba.shape == (40, 60, 4)
    assert np.abs(rgba[..., 3] / 255.0 - alpha.numpy()).max() <= 0.5 / 255 + 1e-6


def test_nodes_return_plain_results_outside_comfyui(portrait_clip):
    frames, mask, _ = portrait_clip
    result = HarmoVidPseudoAlpha().make_alpha(frames, mask, 4, 1.0, 0.5)
    assert isinstance(result, tuple) and result[0].shape == mask.shape


@pytest.fixture
def preview_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(comfy_adapter, "preview_directory", lambda: tmp_path)
    return tmp_path


def read(folder, reference):
    assert reference["type"] == "temp" and "/" not in reference["filename"]
    return cv2.imread(str(folder / reference["subfolder"] / reference["filename"]), cv2.IMREAD_UNCHANGED)


def test_pseudo_alpha_node_shows_its_alpha_over_the_frames(preview_folder, portrait_clip):
    frames, mask, _ = portrait_clip
    output = HarmoVidPseudoAlpha().make_alpha(frames, mask, 4, 1.0, 0.5)
    (alpha,) = output["result"]
    assert torch.equal(alpha, pseudo_alpha(frames, mask, band_width=4, edge_awareness=1.0, temporal_smoothing=0.5))
    ui = output["ui"]
    assert ui["harmovid_preview_index"] == list(range(frames.shape[0]))
    pictures = [read(preview_folder, reference) for reference in ui["harmovid_preview"]]
    assert len(pictures) == frames.shape[0] and pictures[0].shape == (*frames.shape[1:3], 3)


def test_composite_node_shows_the_result_and_the_layers_to_place_by_hand(preview_folder):
    foreground, mask, _ = make_portrait_clip(frames=4, height=48, width=40)
    background = torch.rand(6, 64, 96, 3)
    output = HarmoVidComposite().composite(foreground, background, mask, 0.8, 0.1, 0.0, "bottom-center", "shortest", 0.0, 0.0, True)
    composite, _, _ = output["result"]
    ui = output["ui"]
    assert len(ui["harmovid_preview"]) == composite.shape[0]
    person = read(preview_folder, ui["harmovid_foreground"][0])
    assert person.shape == (48, 40, 4), "the foreground layer is not the first foreground frame with its alpha"
    assert np.abs(person[..., 3] / 255.0 - mask[0].numpy()).max() <= 1 / 255
    assert read(preview_folder, ui["harmovid_background"][0]).shape == (64, 96, 3)


def test_sam2_mask_node_shows_the_prompt_frame_and_its_mask(preview_folder, monkeypatch):
    from nodes import masks

    frames = torch.rand(4, 48, 64, 3)
    known = torch.zeros(4, 48, 64)
    known[2, 10:30, 20:40] = 1  # a person only on the prompt frame
    monkeypatch.setattr(masks, "segment_portrait", lambda frames, **_: known)
    output = masks.HarmoVidSAM2Mask().segment(frames, masks.BUILTIN, 2, 0.5, 0.6)
    (mask,) = output["result"]
    assert torch.equal(mask, known)
    ui = output["ui"]
    assert ui["harmovid_prompt_index"] == [2] and ui["harmovid_prompt_size"] == [frames.shape[2], frames.shape[1]]
    layer = read(preview_folder, ui["harmovid_prompt_mask"][0])
    assert layer.shape == (*frames.shape[1:3], 4)
    assert np.array_equal(layer[..., 3] > 0, mask[2].numpy() > 0.5), "the mask layer is not the prompt frame's mask"

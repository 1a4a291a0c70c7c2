"""The built-in portrait segmenter, its temporal stabiliser, and the green-screen keyer."""

import sys

import numpy as np
import pytest
import torch

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.io import read_video
from comfy_harmovid.segment import PortraitSegmenter, segment_portrait
from comfy_harmovid.segment.chroma import chroma_key, despill, picture_area
from comfy_harmovid.segment.temporal import MaskStabilizer, mask_flicker
from conftest import make_portrait_clip


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / (a | b).sum())


def test_builtin_mask_matches_chroma_key_on_green_screen_clip(dev_data):
    frames = read_video(dev_data / "people/lp_d0.mp4", max_frames=12).frames
    rows, cols = picture_area(frames)  # the clip has a black letterbox bar at the bottom
    frames = frames[:, rows, cols]
    key = chroma_key(frames)
    mask = segment_portrait(frames)
    score = iou(mask, key)
    assert score > 0.97, f"built-in mask IoU against the chroma key is only {score:.3f}"


def test_temporal_smoothing_reduces_mask_flicker_on_real_clip(dev_data):
    frames = read_video(dev_data / "people/lav_woman.mp4").frames
    raw = mask_flicker(segment_portrait(frames, temporal_smoothing=0.0), frames)
    smoothed = mask_flicker(segment_portrait(frames), frames)
    assert smoothed < 0.6 * raw, f"smoothing left the flicker at {smoothed:.2e} (unsmoothed {raw:.2e})"


@pytest.mark.parametrize("soft", [False, True])
def test_streaming_in_chunks_equals_whole_clip(soft):
    frames, _, _ = make_portrait_clip(frames=7, height=96, width=128)
    whole = segment_portrait(frames, soft=soft)
    segmenter = PortraitSegmenter(soft=soft)
    chunks = torch.cat([segmenter.process(frames[i : i + 3]) for i in range(0, 7, 3)])
    segmenter.close()
    assert torch.equal(whole, chunks), "chunked segmentation differs from whole-clip segmentation"


def test_mask_is_binary_by_default_and_probability_when_soft():
    frames, _, _ = make_portrait_clip(frames=3, height=96, width=128)
    binary = segment_portrait(frames)
    soft = segment_portrait(frames, soft=True)
    assert binary.shape == soft.shape == frames.shape[:3] and binary.dtype == soft.dtype == torch.float32
    assert set(binary.unique().tolist()) <= {0.0, 1.0}, "default mask is not binary"
    assert soft.min() >= 0 and soft.max() <= 1, "soft mask leaves 0..1"
    assert not set(soft.unique().tolist()) <= {0.0, 1.0}, "soft mask has no intermediate values"


def test_stabilizer_follows_new_shot_after_a_cut():
    rng = np.random.default_rng(0)
    shot_a, shot_b = rng.random((2, 48, 64), dtype=np.float32)
    stabilizer = MaskStabilizer(smoothing=0.8, threshold=0.5)
    for _ in range(3):
        stabilizer.step(shot_a, np.ones((48, 64), np.float32))
    held, _ = stabilizer.step(shot_a, np.zeros((48, 64), np.float32))
    assert held.mean() > 0.7, "on a still shot the history should dominate with smoothing 0.8"
    after_cut, threshold = stabilizer.step(shot_b, np.zeros((48, 64), np.float32))
    assert after_cut.max() == 0.0, "after a cut the old shot's mask leaked into the new one"
    assert np.all(threshold == 0.5), "hysteresis kept state across a cut"


def test_hysteresis_keeps_foreground_hovering_at_the_threshold():
    grey = np.random.default_rng(1).random((32, 32), dtype=np.float32)
    stabilizer = MaskStabilizer(smoothing=0.5, threshold=0.5)
    stabilizer.step(grey, np.ones((32, 32), np.float32))
    # The smoothed value dips a little under 0.5 but stays above 0.5 - hysteresis.
    smoothed, threshold = stabilizer.step(grey, np.full((32, 32), 0.05, np.float32))
    assert (smoothed < 0.55).all() and (smoothed > threshold).all(), "a foreground pixel flipped at the first dip"


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"threshold": 1.5}, "threshold"),
        ({"temporal_smoothing": 1.0}, "temporal_smoothing"),
        ({"model": "portrait"}, "auto, general, landscape"),
    ],
)
def test_bad_settings_raise_clear_errors(kwargs, words):
    frames, _, _ = make_portrait_clip(frames=1)
    with pytest.raises(HarmoVidError, match=words):
        segment_portrait(frames, **kwargs)


def test_channels_first_frames_are_refused():
    with pytest.raises(HarmoVidError, match="permute"):
        segment_portrait(torch.rand(2, 3, 32, 32))


def test_missing_mediapipe_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)
    with pytest.raises(HarmoVidError, match=r"pip install --no-deps mediapipe==0\.10\.14.*protobuf"):
        PortraitSegmenter()


def green_screen_clip():
    frames = torch.empty(2, 40, 60, 3)
    frames[...] = torch.tensor([0.2, 0.7, 0.3])
    frames[:, 10:30, 20:40] = torch.tensor([0.5, 0.45, 0.4])  # a skin-ish, slightly green-spilled patch
    return frames


def test_chroma_key_separates_subject_from_green_screen():
    alpha = chroma_key(green_screen_clip())
    assert torch.all(alpha[:, 10:30, 20:40] == 1), "subject not fully opaque"
    assert torch.all(alpha[:, :10] == 0) and torch.all(alpha[:, :, :20] == 0), "screen not fully transparent"


def test_despill_limits_green_to_red_or_blue():
    cleaned = despill(green_screen_clip())
    assert torch.all(cleaned[..., 1] <= torch.maximum(cleaned[..., 0], cleaned[..., 2]))
    assert torch.equal(cleaned[:, 10:30, 20:40], green_screen_clip()[:, 10:30, 20:40]), "unspilled pixels changed"


def test_chroma_key_without_green_screen_says_so():
    with pytest.raises(HarmoVidError, match="no green screen"):
        chroma_key(torch.full((1, 8, 8, 3), 0.5))


def test_picture_area_drops_letterbox_bars():
    frames = torch.rand(2, 20, 30, 3) * 0.8 + 0.2
    frames[:, :3] = 0.0
    frames[:, 17:] = 0.02
    rows, cols = picture_area(frames)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (3, 17, 0, 30)


def test_sam2_mask_node_with_builtin_model_returns_float_mask(portrait_clip):
    from nodes.masks import BUILTIN, HarmoVidSAM2Mask

    frames = portrait_clip[0]
    inputs = HarmoVidSAM2Mask.INPUT_TYPES()
    for group in inputs.values():
        for name, (_, options) in group.items():
            assert options.get("tooltip"), f"input {name} has no tooltip"
    (mask,) = HarmoVidSAM2Mask().segment(frames, BUILTIN, 0, 0.5, 0.6)
    assert mask.shape == frames.shape[:3] and mask.dtype == torch.float32, f"got {tuple(mask.shape)} {mask.dtype}"
    assert torch.equal(mask, segment_portrait(frames)), "node result differs from segment_portrait"


def test_points_and_box_text_is_parsed():
    from comfy_harmovid.segment.prompts import parse_box, parse_points

    assert parse_points("10,20; 30.5, 40\n50 60") == [(10, 20), (30.5, 40), (50, 60)]
    assert parse_points('[{"x": 1, "y": 2}]') == [(1, 2)]
    assert parse_points("  ") == [] and parse_box("") is None
    assert parse_box("1,2,3,4") == (1, 2, 3, 4)
    with pytest.raises(HarmoVidError, match="'x,y; x,y'"):
        parse_points("10,20,30")
    with pytest.raises(HarmoVidError, match="x1,y1,x2,y2"):
        parse_box("1,2,3")


def test_bench_masks_scores_every_alpha_against_the_key(dev_data, tmp_path):
    import json

    from comfy_harmovid.cli import main as harmovid

    out = tmp_path / "masks.json"
    assert harmovid(["bench", "masks", "--frames", "4", "--size", "128", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"built-in, no smoothing", "built-in", "pseudo-alpha of built-in", "chroma key (reference)"}
    assert results["chroma key (reference)"]["iou"] == 1.0 and results["chroma key (reference)"]["mae"] == 0.0
    assert results["built-in"]["iou"] > 0.95, f"built-in IoU {results['built-in']['iou']:.3f} at 128 px"
    for name, values in results.items():
        assert values["edge_tenengrad"] > 0 and values["flicker"] >= 0, f"{name}: {values}"

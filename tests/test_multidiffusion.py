"""MultiDiffusion: window layout, weights, one-window equality with plain sampling, seams."""

import pytest
import torch

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.sampling import HarmoVidCondition, MultiDiffusion, sample, seam_report, span_weights, split_axis
from test_sampling import TinyDenoiser, make_condition


def test_split_axis_covers_the_clip_with_the_last_window_aligned_to_the_end():
    spans = split_axis(30, 10, 3)
    assert spans[0] == (0, 10) and spans[-1] == (20, 30), f"spans {spans} must start at 0 and end at 30"
    assert all(stop - start == 10 for start, stop in spans), f"every window must be 10 long: {spans}"
    for (_, stop), (start, _) in zip(spans, spans[1:]):
        assert stop - start >= 3, f"neighbours {spans} must share at least the overlap of 3"
    assert split_axis(8, 10, 3) == [(0, 8)], "a window longer than the clip must become one window over it"


@pytest.mark.parametrize("weighting", ["flat", "pyramid", "overlap-linear"])
def test_overlapping_weights_normalise_to_one_everywhere(weighting):
    md = MultiDiffusion(window=6, overlap=2, weighting=weighting, tile=4, tile_overlap=1)
    windows = md.layout((1, 4, 15, 7, 9))
    assert len(windows) > 3, "the test needs several windows and tiles"
    total = torch.zeros(15, 7, 9)
    for window in windows:
        weight = window.weight()
        assert (weight > 0).all(), f"{weighting}: a window weight is zero somewhere; its prediction would be lost"
        total[window.index] += weight
    normalised = torch.zeros(15, 7, 9)
    for window in windows:
        normalised[window.index] += window.weight() / total[window.index]
    assert torch.allclose(normalised, torch.ones_like(normalised), atol=1e-6), (
        f"{weighting}: normalised weights sum to {normalised.min():.4f}..{normalised.max():.4f}, not 1"
    )


def test_flat_weights_are_all_one():
    for weight in span_weights([(0, 6), (4, 10), (8, 14)], "flat"):
        assert torch.equal(weight, torch.ones(6)), f"flat weight {weight} must be all ones"


def test_pyramid_weights_peak_in_the_middle_and_stay_flat_at_the_clip_edges():
    first, middle, last = span_weights([(0, 8), (6, 14), (12, 20)], "pyramid")
    assert torch.equal(first[:4], torch.ones(4)), f"the first window's clip-edge side must stay 1: {first}"
    assert (first[4:].diff() < 0).all(), f"the first window must fall towards its neighbour: {first}"
    assert (middle[:4].diff() > 0).all() and (middle[4:].diff() < 0).all(), f"middle window not a triangle: {middle}"
    assert torch.allclose(middle, middle.flip(0)), f"the middle triangle must be symmetric: {middle}"
    assert torch.equal(last[4:], torch.ones(4)), f"the last window's clip-edge side must stay 1: {last}"


def test_overlap_linear_ramps_only_across_the_shared_frames_and_neighbours_add_to_one():
    first, second = span_weights([(0, 8), (5, 13)], "overlap-linear")
    assert torch.equal(first[:5], torch.ones(5)), f"frames only the first window covers must weigh 1: {first}"
    assert torch.equal(second[3:], torch.ones(5)), f"frames only the second window covers must weigh 1: {second}"
    shared = first[5:] + second[:3]
    assert torch.allclose(shared, torch.ones(3)), f"ramps across the 3 shared frames must add to 1, got {shared}"
    assert (first[5:].diff() < 0).all() and (second[:3].diff() > 0).all(), "ramps must fall and rise linearly"


def test_windows_respect_the_15_layout_even_frame_multiple():
    windows = MultiDiffusion(window=7, overlap=2).layout((1, 4, 20, 4, 4), frame_multiple=2)
    lengths = {w.frames[1] - w.frames[0] for w in windows}
    assert lengths == {6}, f"with patch_size_t=2 windows must have an even length (6 from 7), got {lengths}"
    whole = MultiDiffusion(window=7, overlap=2).layout((1, 4, 7, 4, 4), frame_multiple=2)
    assert [w.frames for w in whole] == [(0, 7)], "a window as long as the clip must stay one window (the model pads)"


def test_bad_settings_raise_one_clear_error():
    with pytest.raises(HarmoVidError, match="overlap < window"):
        MultiDiffusion(window=4, overlap=4)
    with pytest.raises(HarmoVidError, match="Unknown weighting"):
        MultiDiffusion(weighting="gaussian")
    with pytest.raises(HarmoVidError, match="tile"):
        MultiDiffusion(tile=4, tile_overlap=4)


@pytest.mark.parametrize("weighting", ["flat", "pyramid", "overlap-linear"])
@pytest.mark.parametrize("scheduler", ["ddim", "dpm"])
def test_one_window_over_the_clip_equals_plain_sampling_bit_for_bit(weighting, scheduler):
    model, condition = TinyDenoiser(), make_condition(latent_frames=5)
    kwargs = dict(seed=3, steps=3, guidance=4.0, scheduler=scheduler)
    plain = sample(model, condition, **kwargs)
    windowed = sample(model, condition, multidiffusion=MultiDiffusion(window=5, overlap=2, weighting=weighting), **kwargs)
    assert torch.equal(plain, windowed), (
        f"one window covering the clip differs from plain sampling by {(plain - windowed).abs().max():.3g}"
    )


def test_windowed_sampling_sees_only_window_sized_inputs_and_covers_the_clip():
    model, condition = TinyDenoiser(), make_condition(latent_frames=9, height=8, width=8)
    seen = []
    model.register_forward_hook(lambda module, args, output: seen.append(tuple(args[0].shape[-3:])))
    md = MultiDiffusion(window=4, overlap=1, tile=4, tile_overlap=2)
    ticks = []
    result = sample(model, condition, steps=2, guidance=1.0, multidiffusion=md, progress=lambda d, t: ticks.append((d, t)))
    windows = md.layout(condition.composite_latent.shape)
    assert max(shape[0] for shape in seen) <= 4 and max(shape[1] for shape in seen) <= 4, (
        f"the model saw inputs larger than one 4x4x4 window: {sorted(set(seen))}"
    )
    assert len(seen) == 2 * len(windows), f"expected one call per window per step, got {len(seen)}"
    assert ticks[-1] == (2 * len(windows), 2 * len(windows)), f"progress must tick per window per step: {ticks[-3:]}"
    assert result.shape == condition.composite_latent.shape and torch.isfinite(result).all()


def test_window_mask_crop_matches_the_vae_frame_grid():
    condition = make_condition(latent_frames=6, height=4, width=4)
    mask_frames = torch.arange(condition.mask.shape[2], dtype=torch.float32)
    condition = HarmoVidCondition(
        condition.composite_latent,
        condition.background_latent,
        mask_frames.view(1, 1, -1, 1, 1).expand_as(condition.mask),
        condition.frame_count,
    )
    window = MultiDiffusion(window=3, overlap=1, tile=2, tile_overlap=0).layout(condition.composite_latent.shape)[-1]
    cropped = condition.crop(window)
    a, b = window.frames
    assert cropped.mask.shape[-3:] == (4 * (b - a - 1) + 1, 16, 16), f"bad mask crop shape {tuple(cropped.mask.shape)}"
    assert cropped.mask[0, 0, 0, 0, 0] == 4 * a, "a window over latent frames [a, b) must start at mask frame 4a"
    assert cropped.composite_latent.shape[-3:] == (b - a, 2, 2)


def test_seam_report_finds_a_jump_at_a_window_border():
    windows = MultiDiffusion(window=6, overlap=2, weighting="flat").layout((1, 1, 10, 2, 2))
    smooth = torch.linspace(0, 1, 10).view(1, 1, 10, 1, 1).expand(1, 1, 10, 2, 2).clone()
    assert abs(seam_report(smooth, windows)["ratio"] - 1.0) < 1e-5, "an even ramp has no seam"
    border = windows[1].frames[0]
    smooth[:, :, border:] += 1.0
    report = seam_report(smooth, windows)
    assert report["ratio"] > 3, f"a step at the window border must show as a seam, report {report}"


@pytest.mark.parametrize("card", ["tiny.json", "tiny-1.5.json"])
def test_one_window_equals_plain_sampling_with_the_real_transformer(card):
    from comfy_harmovid.locations import shipped_path
    from comfy_harmovid.model import HarmoVidConfig, HarmoVidTransformer

    torch.manual_seed(0)
    config = HarmoVidConfig.from_json(shipped_path("configs", "models", card))
    model = HarmoVidTransformer(config).eval()
    condition = make_condition(latent_frames=5, height=4, width=6)  # odd T': the 1.5 layout pads it itself
    plain = sample(model, condition, seed=5, steps=2, guidance=3.0)
    windowed = sample(model, condition, seed=5, steps=2, guidance=3.0, multidiffusion=MultiDiffusion(window=5, overlap=1))
    assert torch.equal(plain, windowed), f"{card}: one window differs from plain by {(plain - windowed).abs().max():.3g}"
    split = sample(model, condition, seed=5, steps=2, guidance=3.0, multidiffusion=MultiDiffusion(window=3, overlap=1))
    assert torch.isfinite(split).all() and not torch.equal(plain, split), f"{card}: split windows were not used"


def test_blended_windows_hide_the_seams_that_flat_averaging_shows():
    from comfy_harmovid.bench.diffusion import seam_runs

    ratios = {row["weighting"]: row["ratio"] for row in seam_runs("tiny", 32, 32, dict(window=7, overlap=2))}
    assert ratios["none (one pass)"] == pytest.approx(1.0, abs=1e-3), f"one pass cannot have seams: {ratios}"
    assert ratios["flat"] > 1.15, f"the stand-in's window disagreement must show with flat weights: {ratios}"
    assert ratios["pyramid"] < 1.05 and ratios["overlap-linear"] < ratios["flat"], f"blending left seams: {ratios}"

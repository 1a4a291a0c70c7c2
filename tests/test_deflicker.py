"""Built-in Lighting Deflicker: engine, node and command on small synthetic clips."""

import cv2
import numpy as np
import pytest
import torch

from comfy_harmovid.cli import main as harmovid
from comfy_harmovid.deflicker import Deflicker, DeflickerSettings, apply_colour_map, deflicker, fit_local_colour_map
from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.io import read_video, write_video
from comfy_harmovid.evaluation.metrics import warping_error
from nodes.harmonization import HarmoVidLightingDeflicker

from conftest import make_portrait_clip


def texture(height=72, width=96, seed=0, blur=2.0):
    rng = np.random.default_rng(seed)
    noise = rng.random((height, width, 3)).astype(np.float32)
    return torch.from_numpy(cv2.GaussianBlur(noise, (0, 0), blur)) * 0.6 + 0.2


def moving_clip(frames=10, step=2, seed=0):
    """A texture sliding right by ``step`` pixels per frame (a crop of a wider image)."""
    wide = texture(72, 96 + step * frames, seed)
    return torch.stack([wide[:, step * (frames - t) : step * (frames - t) + 96] for t in range(frames)])


def flicker_gains(frames, amount=0.15, seed=1):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(1.0 + amount * rng.uniform(-1, 1, frames).astype(np.float32))


def test_deflicker_steadies_brightness_flicker_on_a_still_clip():
    still = texture()[None].repeat(12, 1, 1, 1)
    flickering = (still * flicker_gains(12).view(-1, 1, 1, 1)).clamp(0, 1)
    out = deflicker(flickering)
    before = flickering.mean(dim=(1, 2, 3)).diff().abs().mean()
    after = out[1:].mean(dim=(1, 2, 3)).diff().abs().mean()  # frame 0 has no history to follow
    assert after < before / 4, f"frame-to-frame brightness change only went from {before:.4f} to {after:.4f}"


def test_look_ahead_steadies_the_first_frames_that_a_causal_filter_cannot():
    # A causal filter knows only the frames before: a shot's first frames swing with the flicker. The
    # whole-clip deflicker also follows the frames after each one.
    still = texture()[None].repeat(12, 1, 1, 1)
    flickering = (still * flicker_gains(12).view(-1, 1, 1, 1)).clamp(0, 1)
    causal_engine = Deflicker()
    causal = torch.cat([causal_engine.process(flickering[t : t + 1]) for t in range(12)])
    both_ways = deflicker(flickering)
    spread_causal = causal.mean(dim=(1, 2, 3)).std()
    spread_both = both_ways.mean(dim=(1, 2, 3)).std()
    assert spread_both < spread_causal / 5, (
        f"frame brightness spread {spread_both:.4f} with look-ahead vs {spread_causal:.4f} causal: no steadier"
    )


def test_fit_local_colour_map_recovers_a_grade_that_mixes_channels():
    source = texture(seed=2, blur=1.0).numpy()
    matrix = np.array([[0.9, 0.15, 0.0], [0.05, 1.1, -0.1], [0.0, 0.2, 0.8]], np.float32)
    target = source @ matrix.T + np.float32(0.03)
    coefficients = fit_local_colour_map(source, target, np.ones(source.shape[:2], np.float32), radius=2,
                                        regularization=1e-6)
    error = np.abs(apply_colour_map(coefficients, source) - target)[4:-4, 4:-4].max()
    assert error < 2e-3, f"a colour matrix + offset is not recovered (max error {error:.4f})"


def test_windows_without_weight_take_the_map_fitted_over_the_whole_frame():
    # A large hole in the weights (a region whose target cannot be trusted) must get the frame's grade,
    # not the identity nor a neighbouring window's map extrapolated to colours it never saw.
    source = texture(seed=2, blur=1.0).numpy()
    matrix = np.array([[0.9, 0.15, 0.0], [0.05, 1.1, -0.1], [0.0, 0.2, 0.8]], np.float32)
    target = source @ matrix.T + np.float32(0.03)
    weight = np.ones(source.shape[:2], np.float32)
    weight[16:56, 20:76] = 0.0
    coefficients = fit_local_colour_map(source, target, weight, radius=2, regularization=1e-6)
    error = np.abs(apply_colour_map(coefficients, source) - target)[24:48, 28:68].max()
    assert error < 5e-3, f"the grade is not carried into the unweighted region (max error {error:.4f})"


def test_deflicker_corrects_a_region_whose_motion_cannot_be_followed():
    # A patch that shows new content in a new place every frame (nothing a flow can follow) inside a
    # steady picture, all under one per-frame gain flicker: the patch must get the frame's correction,
    # not keep its own flicker because its running mean holds only itself.
    frames, height, width = 12, 72, 96
    rng = np.random.default_rng(0)
    clean, patches = [], []
    for t in range(frames):
        frame = texture(height, width, seed=4).clone()
        y, x = int(rng.integers(4, height - 44)), int(rng.integers(4, width - 44))
        frame[y : y + 40, x : x + 40] = texture(40, 40, seed=10 + t, blur=1.0)
        clean.append(frame)
        patches.append((slice(y + 8, y + 32), slice(x + 8, x + 32)))
    clean = torch.stack(clean)
    flickering = (clean * flicker_gains(frames, amount=0.15, seed=2).view(-1, 1, 1, 1)).clamp(0, 1)
    out = deflicker(flickering, reference=clean)

    def patch_gains(video):
        return torch.stack([video[t][rows, cols].mean() / clean[t][rows, cols].mean()
                            for t, (rows, cols) in enumerate(patches)])

    spread_in, spread_out = patch_gains(flickering).std(), patch_gains(out).std()
    assert spread_out < spread_in / 5, f"the patch still flickers: gain spread {spread_in:.3f} -> {spread_out:.3f}"


def test_deflicker_undoes_flicker_that_mixes_colour_channels():
    # A per-frame grade such as a LUT mixes the channels (here a random colour matrix per frame): per-channel
    # gains cannot undo it, a local colour matrix can.
    clean = moving_clip(frames=10, step=1)
    rng = np.random.default_rng(0)
    matrices = torch.from_numpy((np.eye(3) + rng.uniform(-0.15, 0.15, (10, 3, 3))).astype(np.float32))
    flickering = torch.einsum("thwj,tij->thwi", clean, matrices).clamp(0, 1)
    out = deflicker(flickering, reference=clean)
    error_in, error_out = warping_error(flickering, clean), warping_error(out, clean)
    assert error_out < error_in / 500, f"warping error {error_in:.2e} -> {error_out:.2e}: channel mixing left"


def test_deflicker_steadies_a_soft_edge_that_flickers_through_alpha():
    # The person is recoloured frame by frame and blended through a soft alpha (as HarmoIm and the jitter
    # protocol do): at the edge the change is alpha times the person's, and must be removed as such.
    clean, mask, _ = make_portrait_clip(frames=1, height=64, width=80)
    clean, mask = clean.repeat(10, 1, 1, 1), mask.repeat(10, 1, 1)
    alpha = torch.from_numpy(np.stack([cv2.GaussianBlur(m.numpy(), (0, 0), 2.0) for m in mask]))
    gains = torch.from_numpy(np.random.default_rng(0).uniform(0.8, 1.2, (10, 1, 1, 3)).astype(np.float32))
    flickering = clean + alpha[..., None] * ((clean * gains).clamp(0, 1) - clean)
    out = deflicker(flickering, reference=clean, mask=alpha)
    edge = (alpha[0] > 0.05) & (alpha[0] < 0.95)

    def change(frames):
        return (frames[1:] - frames[:-1])[:, edge].abs().mean()

    assert change(out) < change(flickering) / 5, (
        f"the soft edge still changes {change(out):.4f} per frame (input {change(flickering):.4f})"
    )


def test_deflicker_keeps_a_moving_clip_moving_and_steadies_it():
    clean = moving_clip()
    flickering = (clean * flicker_gains(clean.shape[0]).view(-1, 1, 1, 1)).clamp(0, 1)
    out = deflicker(flickering, reference=clean)
    error_in, error_out = warping_error(flickering, clean), warping_error(out, clean)
    assert error_out < error_in / 3, f"warping error {error_in:.2e} -> {error_out:.2e}: flicker not removed"
    # The content must still move with the reference (not be frozen on an earlier frame).
    shift = (out[-1, :, 10:-10] - clean[-1, :, 10:-10] * out[-1].mean() / clean[-1].mean()).abs().mean()
    frozen = (out[-1, :, 10:-10] - out[0, :, 10:-10]).abs().mean()
    assert shift < frozen / 3, f"last frame does not follow the motion (error {shift:.4f} vs change {frozen:.4f})"


def test_deflicker_keeps_processed_gradients():
    still = texture(seed=3, blur=1.0)[None].repeat(8, 1, 1, 1)
    offsets = torch.linspace(-0.1, 0.1, 8)[torch.randperm(8, generator=torch.Generator().manual_seed(0))]
    processed = still + offsets.view(-1, 1, 1, 1)
    out = deflicker(processed)

    def grad(x):
        return torch.cat([x.diff(dim=1).flatten(), x.diff(dim=2).flatten()])

    change = (grad(out) - grad(processed)).abs().mean() / grad(processed).abs().mean()
    assert change < 0.1, f"deflicker changed the frames' gradients by {change:.1%} (should keep the detail)"
    spread = out.mean(dim=(1, 2, 3))[1:].std()
    assert spread < offsets[1:].std() / 3, "the additive flicker was not removed"


def jittered_portrait(frames: int, amplitude: float, seed: int):
    """``(clean, mask, jittered)``: a synthetic portrait whose foreground gets its own random colour cast
    (up to ``amplitude`` per channel) in every frame."""
    clean, mask, _ = make_portrait_clip(frames=frames, height=64, width=80)
    rng = np.random.default_rng(seed)
    casts = torch.from_numpy(rng.uniform(-amplitude, amplitude, (frames, 1, 1, 3)).astype(np.float32))
    return clean, mask, (clean + casts * mask[..., None]).clamp(0, 1)


def test_deflicker_reduces_foreground_warping_error_on_synthetic_flicker():
    clean, mask, jittered = jittered_portrait(10, 0.08, seed=0)
    out = deflicker(jittered, reference=clean, mask=mask)
    error_in = warping_error(jittered, clean, mask)
    error_out = warping_error(out, clean, mask)
    error_clean = warping_error(clean, clean, mask)
    assert error_out < error_in / 3, f"foreground warping error {error_in:.2e} -> {error_out:.2e}"
    assert error_out < 3 * error_clean + 1e-4, f"still far from the clean clip's {error_clean:.2e}: {error_out:.2e}"


def test_deflicker_brings_flickering_frames_closer_to_the_clean_clip():
    # Each frame's foreground gets its own random colour cast (the jitter protocol in small): the
    # output must be steadier than the input without drifting further from the clean clip.
    clean, mask, jittered = jittered_portrait(16, 0.1, seed=3)
    out = deflicker(jittered, reference=clean, mask=mask)
    inside = mask[..., None].expand_as(clean) > 0.5
    error_in = (jittered - clean)[inside].pow(2).mean()
    error_out = (out - clean)[inside].pow(2).mean()
    assert error_out < error_in, f"foreground error against the clean clip grew: {error_in:.2e} -> {error_out:.2e}"
    steadiness_in = jittered[1:][inside[1:]].view(-1).std()
    frame_means = torch.stack([out[t][inside[t]].mean() for t in range(1, 16)])
    input_means = torch.stack([jittered[t][inside[t]].mean() for t in range(1, 16)])
    assert frame_means.diff().abs().mean() < input_means.diff().abs().mean() / 8, (
        f"foreground brightness still jumps {frame_means.diff().abs().mean():.4f} per frame "
        f"(input {input_means.diff().abs().mean():.4f}; total spread {steadiness_in:.3f})"
    )


def test_deflicker_lets_a_light_change_in_the_reference_pass_at_once():
    # The unprocessed video brightens at frame 6 (a lamp switched on): the processed frames follow it,
    # and so must the output, instead of lagging on the old light for many frames.
    clean = moving_clip(frames=10, step=1, seed=4) * 0.6
    clean[6:] = (clean[6:] * 1.5).clamp(0, 1)
    processed = (clean * torch.tensor([1.0, 0.9, 0.8])).clamp(0, 1)  # a constant processed look
    out = deflicker(processed, reference=clean)
    step = processed[6].mean() - processed[5].mean()
    followed = out[6].mean() - out[5].mean()
    assert followed > 0.8 * step, f"the output rose {followed:.3f} where the processed video rose {step:.3f}"
    # Without a reference nothing tells a light change from flicker: the change is held back.
    held = deflicker(processed)
    assert held[6].mean() - held[5].mean() < 0.5 * step, "without a reference the step should be smoothed"


def test_deflicker_without_reference_takes_the_motion_despite_local_flicker():
    # A light gradient that tilts differently every frame fools brightness-based flow on the processed
    # frames; the flow from their structure must do about as well as the clean reference's flow.
    clean = moving_clip(frames=12, step=2, seed=5)
    rng = np.random.default_rng(0)
    tilt = torch.from_numpy(rng.uniform(-0.25, 0.25, 12).astype(np.float32)).view(-1, 1, 1, 1)
    flickering = (clean * (1 + tilt * torch.linspace(-1, 1, 96).view(1, 1, 96, 1))).clamp(0, 1)
    self_flow = warping_error(deflicker(flickering), clean)
    reference_flow = warping_error(deflicker(flickering, reference=clean), clean)
    assert self_flow < 2 * reference_flow, (
        f"without a reference the warping error is {self_flow:.2e}, with it {reference_flow:.2e}: "
        "the flow followed the flicker"
    )


def test_deflicker_never_pulls_colours_from_the_reference():
    clean = moving_clip(frames=8)
    processed = (clean * flicker_gains(8, 0.05).view(-1, 1, 1, 1)).clamp(0, 1)
    reference = clean.clone()
    reference[..., 2] = (reference[..., 2] + 0.3).clamp(0, 1)  # a strongly blue reference
    reference[..., 0] *= 0.5
    out = deflicker(processed, reference=reference)
    colour_out = out.mean(dim=(0, 1, 2))
    colour_in = processed.mean(dim=(0, 1, 2))
    assert (colour_out - colour_in).abs().max() < 0.02, (
        f"output colour {colour_out.tolist()} moved away from the processed {colour_in.tolist()} toward the reference"
    )


@pytest.mark.parametrize("look_ahead", [False, True])
def test_deflicker_starts_afresh_at_a_shot_cut(look_ahead):
    shot_a = texture(seed=1)[None].repeat(4, 1, 1, 1) * 0.6
    shot_b = texture(seed=7)[None].repeat(4, 1, 1, 1).flip(1)
    clip = torch.cat([shot_a, shot_b])
    engine = Deflicker(look_ahead=look_ahead)
    out = engine.process(clip)
    assert engine.cuts == [4], f"expected one cut at frame 4, found {engine.cuts}"
    assert torch.allclose(out[4], clip[4], atol=1e-5), "the first frame after a cut must not carry the old shot"
    assert (out[5:] - clip[5:]).abs().mean() < 0.01, "frames after the cut drifted toward the old shot"
    # Looking ahead must stop at the cut too: the old shot's frames do not take the new shot's colours.
    assert (out[:4] - clip[:4]).abs().mean() < 0.01, "frames before the cut drifted toward the new shot"


def test_causal_streaming_in_chunks_equals_the_whole_clip():
    clean, mask, _ = make_portrait_clip(frames=9, height=48, width=64)
    jittered = (clean * flicker_gains(9).view(-1, 1, 1, 1)).clamp(0, 1)
    whole = Deflicker().process(jittered, mask_chunk=mask, reference_chunk=clean)
    engine = Deflicker()
    parts = [engine.process(jittered[i : i + 4], mask_chunk=mask[i : i + 4], reference_chunk=clean[i : i + 4])
             for i in range(0, 9, 4)]
    assert torch.equal(torch.cat(parts), whole), "chunked streaming differs from the whole clip"


def test_deflicker_leaves_pixels_outside_the_mask_and_strength_zero_untouched():
    clean, mask, _ = make_portrait_clip(frames=6, height=48, width=64)
    jittered = (clean * flicker_gains(6).view(-1, 1, 1, 1)).clamp(0, 1)
    out = deflicker(jittered, mask=mask)
    outside = mask == 0
    assert torch.equal(out[outside], jittered[outside]), "pixels outside the mask were changed"
    # Also with a reference that differs from the processed frames outside the mask.
    out = deflicker(jittered, reference=clean, mask=mask)
    assert torch.equal(out[outside], jittered[outside]), "pixels outside the mask were changed (with a reference)"
    assert torch.equal(deflicker(jittered, strength=0.0), jittered), "strength 0 must return the input"


def test_deflicker_rejects_bad_input_with_clear_errors():
    frames = torch.rand(4, 16, 16, 3)
    with pytest.raises(HarmoVidError, match="reference has 3"):
        deflicker(frames, reference=torch.rand(3, 16, 16, 3))
    with pytest.raises(HarmoVidError, match="mask"):
        deflicker(frames, mask=torch.rand(4, 8, 8))
    with pytest.raises(HarmoVidError, match="strength"):
        deflicker(frames, strength=1.5)
    engine = Deflicker()
    engine.process(frames[:2], reference_chunk=frames[:2])
    with pytest.raises(HarmoVidError, match="every chunk"):
        engine.process(frames[2:])


def test_lighting_deflicker_node_runs_on_a_small_clip():
    clean, mask, _ = make_portrait_clip(frames=5, height=40, width=48)
    jittered = (clean * flicker_gains(5).view(-1, 1, 1, 1)).clamp(0, 1)
    node = HarmoVidLightingDeflicker()
    inputs = HarmoVidLightingDeflicker.INPUT_TYPES()
    for group in inputs.values():
        for name, (_, options) in group.items():
            assert options.get("tooltip"), f"input {name} has no tooltip"
    (out,) = getattr(node, node.FUNCTION)(jittered, 1.0, reference=clean, mask=mask)
    assert out.shape == jittered.shape and out.dtype == torch.float32
    assert torch.allclose(out, deflicker(jittered, reference=clean, mask=mask)), "node output differs from the engine"


def test_deflicker_command_writes_a_steadier_video(tmp_path):
    clean = moving_clip(frames=6)
    flickering = (clean * flicker_gains(6).view(-1, 1, 1, 1)).clamp(0, 1)
    write_video(tmp_path / "in.mkv", flickering, 12)
    write_video(tmp_path / "ref.mkv", clean, 12)
    out_path = tmp_path / "out.mkv"
    code = harmovid(["deflicker", "--input", str(tmp_path / "in.mkv"), "--reference", str(tmp_path / "ref.mkv"),
                     "-o", str(out_path)])
    assert code == 0 and out_path.exists()
    out = read_video(out_path).frames
    assert out.shape == flickering.shape
    assert warping_error(out, clean) < warping_error(flickering, clean) / 2, "the command did not deflicker"
    assert harmovid(["deflicker", "--input", str(tmp_path / "in.mkv"), "-o", str(out_path)]) == 2, (
        "an existing output must be refused without --overwrite"
    )


def test_settings_reach_the_engine_and_the_streaming_order_is_frames_mask_reference():
    clean, mask, _ = make_portrait_clip(frames=4, height=48, width=64)
    jittered = (clean * flicker_gains(4).view(-1, 1, 1, 1)).clamp(0, 1)
    default = Deflicker().process(jittered, mask, clean)
    same = Deflicker(settings=DeflickerSettings()).process(jittered, mask_chunk=mask, reference_chunk=clean)
    assert torch.equal(default, same), "positional (frames, mask, reference) differs from the keywords"
    coarse = Deflicker(settings=DeflickerSettings(work_size=16, motion_size=16)).process(jittered, mask, clean)
    assert not torch.equal(coarse, default), "the settings did not reach the engine"
    with pytest.raises(HarmoVidError, match="reference|mask"):
        Deflicker().process(jittered, clean, mask)  # the old (frames, reference, mask) order fails loudly


def test_deflicker_in_place_writes_what_it_would_return():
    frames, mask, _ = make_portrait_clip(frames=6, height=48, width=64, seed=7)
    gains = torch.tensor([1.0, 1.2, 0.9, 1.15, 0.85, 1.1])[:, None, None, None]
    flickering = (frames * gains).clamp(0, 1)
    expected = Deflicker().process(flickering, mask_chunk=mask, reference_chunk=frames)
    buffer = flickering.clone()
    result = Deflicker().process(buffer, mask_chunk=mask, reference_chunk=frames, out=buffer)
    assert result.data_ptr() == buffer.data_ptr() and torch.equal(result, expected), "in place must change nothing"
    with pytest.raises(HarmoVidError, match="reference"):
        Deflicker().process(flickering, reference_chunk=frames, out=frames)

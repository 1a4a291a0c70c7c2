"""Statistics HarmoIm: engine, node and command on small synthetic composites."""

import dataclasses

import pytest
import torch

from comfy_harmovid.cli import main as harmovid
from comfy_harmovid.color import rgb_to_lab
from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.harmoim import StatisticsHarmonizer, StatisticsSettings, harmonize_frames
from comfy_harmovid.io import read_video, write_video
from nodes.harmonization import HarmoVidHarmoImFrames

from conftest import make_portrait_clip


def foreground_lab(frames, mask):
    return rgb_to_lab(frames[mask > 0.5]).median(0).values


def shifted_composite(shift_rgb, frames=4):
    """A person lit like their (near-neutral) surroundings whose colours got shifted by ``shift_rgb``.

    Returns (composite, alpha, original).
    """
    clip, mask, _ = make_portrait_clip(frames=frames, height=48, width=64)
    generator = torch.Generator().manual_seed(1)
    scene = 0.5 + 0.15 * (torch.rand(1, 48, 64, 3, generator=generator) - 0.5)
    person = 0.45 + 0.2 * (torch.rand(1, 48, 64, 3, generator=generator) - 0.5) + 0.3 * (clip - clip.mean())
    clean = scene + (person - scene) * mask[..., None]
    shifted = (clean + torch.tensor(shift_rgb) * mask[..., None]).clamp(0, 1)
    return shifted, mask, clean


def test_harmonize_moves_a_colour_cast_foreground_toward_the_original_light():
    composite, alpha, clean = shifted_composite([-0.06, -0.02, 0.08])  # a blue cast on the person
    out = harmonize_frames(composite, alpha)
    before = (foreground_lab(composite, alpha) - foreground_lab(clean, alpha))[1:].norm()
    after = (foreground_lab(out, alpha) - foreground_lab(clean, alpha))[1:].norm()
    # The method is deliberately cautious: a tenth of the cast (it must not hurt people whose own colour
    # differs from their surroundings), held back when estimates disagree.
    assert after < 0.97 * before, f"cast error went from {before:.2f} to {after:.2f} Lab units (should shrink)"


def test_harmonize_brightens_an_underexposed_foreground():
    composite, alpha, clean = shifted_composite([-0.25, -0.25, -0.25])
    out = harmonize_frames(composite, alpha)
    gain = foreground_lab(out, alpha)[0] - foreground_lab(composite, alpha)[0]
    assert gain > 1.0, f"the dark person was brightened by only {gain:.2f} L"
    assert foreground_lab(out, alpha)[0] <= foreground_lab(clean, alpha)[0] + 1.0, "it overshot the original"


def test_a_person_who_already_fits_is_left_nearly_alone():
    """Moved by less than a just-noticeable difference (1 Lab unit)."""
    _, alpha, clean = shifted_composite([0.0, 0.0, 0.0])
    change = (foreground_lab(harmonize_frames(clean, alpha), alpha) - foreground_lab(clean, alpha)).norm()
    assert change < 1.0, f"an ungraded person was moved by {change:.2f} Lab units"


def test_harmonize_is_identity_at_strength_zero_and_outside_the_alpha():
    composite, alpha, _ = shifted_composite([-0.06, -0.02, 0.08])
    assert torch.equal(harmonize_frames(composite, alpha, strength=0.0), composite), "strength 0 changed pixels"
    # A soft edge inside the person; still exactly 0 outside.
    soft = alpha * torch.nn.functional.avg_pool2d(alpha[:, None], 7, 1, 3)[:, 0]
    out = harmonize_frames(composite, soft)
    outside = soft == 0
    assert torch.equal(out[outside], composite[outside]), "pixels with alpha 0 were changed"
    assert not torch.equal(out[soft > 0.5], composite[soft > 0.5]), "the foreground was not harmonized at all"


def test_harmonize_uses_the_background_plate_when_given():
    composite, alpha, clean = shifted_composite([0.0, 0.0, 0.0])
    plate = composite.clone()
    plate[..., 0] -= 0.06  # the same scene, bluer
    plate[..., 2] += 0.08
    without_plate = harmonize_frames(composite, alpha)
    with_plate = harmonize_frames(composite, alpha, plate)
    shift = (foreground_lab(with_plate, alpha) - foreground_lab(without_plate, alpha))[2]
    assert shift < -0.2, f"a blue background plate should make the person bluer (b moved {shift:+.2f})"


def test_streaming_in_chunks_equals_the_whole_clip_and_smooths_over_time():
    composite, alpha, _ = shifted_composite([0.05, 0.0, -0.08], frames=7)
    whole = harmonize_frames(composite, alpha)
    harmonizer = StatisticsHarmonizer()
    parts = [harmonizer.process(composite[i : i + 3], alpha[i : i + 3]) for i in range(0, 7, 3)]
    assert torch.allclose(torch.cat(parts), whole, atol=1e-6), "chunked streaming differs from the whole clip"


def test_statistics_settings_are_the_harmonizer_s_knobs():
    defaults = StatisticsSettings()
    assert dataclasses.astuple(defaults) == (0.1, 4.0, (15.0, 25.0), 0.25, 20.0, 5.0, (30.0, 40.0), 0.0, 0.3, 1.25, 0.8)
    assert StatisticsHarmonizer().settings == defaults
    composite, alpha, _ = shifted_composite([0.0, 0.0, 0.12])
    default_out = StatisticsHarmonizer().process(composite, alpha)
    no_cast = StatisticsHarmonizer(settings=dataclasses.replace(defaults, cast_shrink=0.0)).process(composite, alpha)
    assert not torch.equal(default_out, no_cast), "cast_shrink 0 should take the colour cast away"
    with pytest.raises(HarmoVidError, match="temporal_smoothing"):
        StatisticsSettings(temporal_smoothing=1.0)
    with pytest.raises(HarmoVidError, match="StatisticsSettings"):
        StatisticsHarmonizer(settings={"cast_shrink": 0.2})


def test_harmonize_rejects_bad_input_with_clear_errors():
    composite, alpha, _ = shifted_composite([0.0, 0.0, 0.1])
    with pytest.raises(HarmoVidError, match="unknown harmonization method"):
        harmonize_frames(composite, alpha, method="magic")
    with pytest.raises(HarmoVidError, match="empty"):
        harmonize_frames(composite, torch.zeros_like(alpha))
    with pytest.raises(HarmoVidError, match="alpha"):
        harmonize_frames(composite, alpha[:, :20])
    with pytest.raises(HarmoVidError, match="background"):
        harmonize_frames(composite, alpha, composite[:2])
    with pytest.raises(HarmoVidError, match="strength"):
        harmonize_frames(composite, alpha, strength=-0.1)


def test_harmoim_frames_node_runs_on_a_small_clip():
    composite, alpha, _ = shifted_composite([0.0, -0.05, 0.1])
    inputs = HarmoVidHarmoImFrames.INPUT_TYPES()
    for group in inputs.values():
        for name, (_, options) in group.items():
            assert options.get("tooltip"), f"input {name} has no tooltip"
    node = HarmoVidHarmoImFrames()
    (out,) = getattr(node, node.FUNCTION)(composite, alpha, "statistics", 1.0)
    assert out.shape == composite.shape and out.dtype == torch.float32
    assert torch.allclose(out, harmonize_frames(composite, alpha)), "node output differs from the engine"


def test_harmonize_frames_command_writes_the_harmonized_video(tmp_path):
    composite, alpha, _ = shifted_composite([0.0, -0.05, 0.12], frames=3)
    write_video(tmp_path / "comp.mkv", composite, 12)
    write_video(tmp_path / "alpha.mkv", alpha, 12)
    out_path = tmp_path / "out.mkv"
    code = harmovid(["harmonize-frames", "--composite", str(tmp_path / "comp.mkv"), "--mask",
                     str(tmp_path / "alpha.mkv"), "-o", str(out_path)])
    assert code == 0 and out_path.exists()
    out = read_video(out_path).frames
    # The command's default is "auto": the learned method when its weights are present.
    expected = harmonize_frames(read_video(tmp_path / "comp.mkv").frames, alpha, method="auto")
    assert (out - expected).abs().mean() < 0.002, "the command's output differs from the library's"
    code = harmovid(["harmonize-frames", "--composite", str(tmp_path / "comp.mkv"), "--mask",
                     str(tmp_path / "alpha.mkv"), "--method", "magic", "-o", str(tmp_path / "x.mkv")])
    assert code == 2, "an unknown method must fail with a clean error"

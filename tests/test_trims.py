"""Person trims (exposure, white balance, saturation after the HarmoIm): engine, node and commands."""

import pytest
import torch

from comfy_harmovid.cli import main as harmovid
from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.harmoim import PersonTrims, StatisticsHarmonizer, harmonize_frames, make_harmonizer
from comfy_harmovid.harmoim.grades import linear_gains, scale_saturation
from comfy_harmovid.harmoim.transform import LUMA
from comfy_harmovid.harmoim.trims import TrimmedFrames, TrimmedHarmonizer
from comfy_harmovid.io import read_mask, read_video, write_video
from nodes.harmonization import HarmoVidHarmoImFrames

from conftest import make_portrait_clip

# The tone tables' stated error (trims.TABLE_SIZE): under 1e-3 with every trim at its limit.
TABLE_TOLERANCE = 1e-3


def trimmed(trims, frame, alpha):
    out = frame.clone()
    TrimmedFrames(trims).apply(out.numpy(), alpha.numpy())
    return out


def grey_person(level=0.4):
    frame = torch.full((8, 10, 3), 0.7)
    alpha = torch.zeros(8, 10)
    alpha[2:6, 3:8] = 1.0
    frame[alpha > 0] = level
    return frame, alpha


@pytest.mark.parametrize("trims", [
    PersonTrims(exposure=1.3, temperature=4200, tint=0.2, saturation=1.4),
    PersonTrims(exposure=4, temperature=2000, tint=-0.5, saturation=2),
    PersonTrims(exposure=-4, temperature=15000, tint=0.5, saturation=0),
    PersonTrims(saturation=0.5),
    PersonTrims(exposure=-0.7),
])
def test_trims_are_the_grade_operations_within_the_tables_tolerance(trims):
    generator = torch.Generator().manual_seed(0)
    frame = 1.2 * torch.rand(64, 80, 3, generator=generator) - 0.1  # a little outside 0..1 too
    expected = scale_saturation(linear_gains(frame.clamp(0, 1), trims.gains()), trims.saturation).clamp(0, 1)
    out = trimmed(trims, frame, torch.ones(64, 80))
    assert (out - expected).abs().max() < TABLE_TOLERANCE


def test_each_trim_moves_the_person_the_way_it_says():
    frame, alpha = grey_person()
    person = alpha > 0

    def colour(**values):
        return trimmed(PersonTrims(**values), frame, alpha)[person].mean(0)

    linear = lambda rgb: rgb.clamp(min=0) ** 2.2  # noqa: E731 (near enough to sRGB's curve for a ratio)
    assert torch.allclose(linear(colour(exposure=1.0)) / linear(frame[person][0]), torch.full((3,), 2.0), rtol=0.06)
    red, green, blue = colour(temperature=4000)
    assert blue > green > red, "a lower temperature must cool the person"
    red, green, blue = colour(temperature=9000)
    assert red > green > blue, "a higher temperature must warm the person"
    red, green, blue = colour(tint=0.2)
    assert green < min(red, blue), "+ tint goes toward magenta"
    red, green, blue = colour(tint=-0.2)
    assert green > max(red, blue), "- tint goes toward green"
    coloured = frame.clone()
    coloured[person] = torch.tensor([0.6, 0.4, 0.3])
    grey = trimmed(PersonTrims(saturation=0.0), coloured, alpha)[person]
    assert torch.allclose(grey, (coloured[person] @ LUMA)[:, None].expand(-1, 3), atol=1e-6)


def test_trims_change_nothing_outside_the_alpha_and_blend_through_it():
    frame, alpha = grey_person()
    alpha[2, 3] = 0.5
    out = trimmed(PersonTrims(exposure=1.0), frame, alpha)
    assert torch.equal(out[alpha == 0], frame[alpha == 0])
    full = trimmed(PersonTrims(exposure=1.0), frame, torch.ones_like(alpha))
    assert torch.allclose(out[2, 3], (frame[2, 3] + full[2, 3]) / 2, atol=1e-6)
    assert torch.equal(trimmed(PersonTrims(exposure=1.0), frame, torch.zeros_like(alpha)), frame)


def test_default_trims_leave_the_harmonizer_as_it_was():
    assert type(make_harmonizer("statistics", trims=PersonTrims())) is StatisticsHarmonizer
    assert type(make_harmonizer("statistics", trims=PersonTrims(tint=0.1))) is TrimmedHarmonizer
    composite, alpha, _ = make_portrait_clip(frames=3, height=32, width=40)
    assert torch.equal(harmonize_frames(composite, alpha, trims=PersonTrims()), harmonize_frames(composite, alpha))


@pytest.mark.parametrize("method", ["statistics", "learned"])
def test_trims_follow_the_automatic_change_and_apply_alone_at_strength_zero(method):
    composite, alpha, _ = make_portrait_clip(frames=5, height=32, width=40)
    alpha[:, :4] = 0.5  # a soft edge
    trims = PersonTrims(exposure=0.8, temperature=5000, saturation=1.3)

    def by_frame(frames):
        return torch.stack([trimmed(trims, frames[t], alpha[t]) for t in range(frames.shape[0])])

    automatic = harmonize_frames(composite, alpha, method=method)
    assert torch.allclose(harmonize_frames(composite, alpha, method=method, trims=trims), by_frame(automatic), atol=1e-6)
    alone = harmonize_frames(composite, alpha, method=method, strength=0.0, trims=trims)
    assert torch.allclose(alone, by_frame(composite), atol=1e-6)
    buffer = torch.empty_like(composite)
    harmonizer = make_harmonizer(method, trims=trims)
    written = harmonizer.process(composite, alpha, out=buffer)
    assert written.data_ptr() == buffer.data_ptr()
    assert torch.allclose(written, harmonize_frames(composite, alpha, method=method, trims=trims), atol=1e-6)


@pytest.mark.parametrize("values, name", [
    ({"exposure": 4.5}, "exposure"), ({"temperature": 1000}, "temperature"), ({"tint": float("nan")}, "tint"),
    ({"saturation": "high"}, "saturation"), ({"saturation": True}, "saturation"), ({"exposure": float("inf")}, "exposure"),
])
def test_bad_trims_name_the_trim_and_its_range(values, name):
    with pytest.raises(HarmoVidError, match=f"person {name} must be between"):
        PersonTrims(**values)


def test_harmoim_frames_node_trims_the_person():
    composite, alpha, _ = make_portrait_clip(frames=3, height=32, width=40)
    node = HarmoVidHarmoImFrames()
    (out,) = node.harmonize(composite, alpha, "statistics", 1.0, person_exposure=-1.0, person_temperature=5500,
                            person_tint=0.1, person_saturation=0.8)
    expected = harmonize_frames(composite, alpha, trims=PersonTrims(-1.0, 5500, 0.1, 0.8))
    assert torch.allclose(out, expected, atol=1e-6)
    person = alpha > 0.5
    assert out[person].mean() < harmonize_frames(composite, alpha)[person].mean() - 0.05, "one stop down must darken"
    with pytest.raises(HarmoVidError, match="person tint"):
        node.harmonize(composite, alpha, "statistics", 1.0, person_tint=0.9)


def test_harmonize_frames_command_takes_person_trims(tmp_path, capsys):
    composite, alpha, _ = make_portrait_clip(frames=3, height=32, width=40)
    write_video(tmp_path / "comp.mkv", composite, 12)
    write_video(tmp_path / "alpha.mkv", alpha, 12)
    arguments = ["harmonize-frames", "--composite", str(tmp_path / "comp.mkv"), "--mask", str(tmp_path / "alpha.mkv"),
                 "--method", "statistics"]
    assert harmovid(arguments + ["--person-exposure", "0.5", "--person-saturation", "0", "-o", str(tmp_path / "out.mkv")]) == 0
    out = read_video(tmp_path / "out.mkv").frames
    stored = read_video(tmp_path / "comp.mkv").frames, read_mask(tmp_path / "alpha.mkv")
    expected = harmonize_frames(*stored, trims=PersonTrims(exposure=0.5, saturation=0.0))
    assert (out - expected).abs().mean() < 0.002, "the command's output differs from the library's"
    person = stored[1] > 0.99
    assert (out[person].max(-1).values - out[person].min(-1).values).max() < 0.02, "saturation 0 must leave grey"
    assert harmovid(arguments + ["--person-tint", "2", "-o", str(tmp_path / "bad.mkv")]) == 2
    assert "person tint must be between -0.5 and 0.5" in capsys.readouterr().err
    assert not (tmp_path / "bad.mkv").exists()

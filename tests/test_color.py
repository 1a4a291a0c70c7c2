"""Colour spaces and .cube LUTs on small hand-made data."""

import pytest
import torch

from comfy_harmovid.color import (
    Lut,
    apply_lut,
    blend_luts,
    identity_lut,
    lab_to_rgb,
    linear_to_srgb,
    read_cube,
    rgb_to_lab,
    srgb_to_linear,
    write_cube,
)
from comfy_harmovid.errors import HarmoVidError


def test_srgb_linear_round_trip_and_known_values():
    x = torch.linspace(0, 1, 101)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5), "sRGB <-> linear is not invertible"
    assert abs(float(srgb_to_linear(torch.tensor(0.5))) - 0.21404) < 1e-4, "sRGB 0.5 should be 0.214 linear"


def test_lab_of_known_colours_and_round_trip():
    white = rgb_to_lab(torch.tensor([1.0, 1.0, 1.0]))
    red = rgb_to_lab(torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(white, torch.tensor([100.0, 0.0, 0.0]), atol=0.05), f"white -> {white.tolist()}"
    assert torch.allclose(red, torch.tensor([53.24, 80.09, 67.20]), atol=0.1), f"red -> {red.tolist()}"
    clip = torch.rand(2, 8, 9, 3, generator=torch.Generator().manual_seed(0))
    assert (lab_to_rgb(rgb_to_lab(clip)) - clip).abs().max() < 1e-4, "RGB -> Lab -> RGB changed colours"


def test_identity_lut_leaves_frames_unchanged():
    clip = torch.rand(3, 10, 12, 3, generator=torch.Generator().manual_seed(1))
    out = apply_lut(clip, identity_lut(17))
    assert out.shape == clip.shape
    assert (out - clip).abs().max() < 1e-5, "an identity LUT changed the frames"


def swap_red_blue_lut(size=9) -> Lut:
    table = identity_lut(size).table.flip(-1)  # out = (b, g, r)
    return Lut(table, torch.zeros(3), torch.ones(3), "swap")


def test_cube_file_round_trip_and_known_lut_moves_colours(tmp_path):
    path = tmp_path / "swap.cube"
    write_cube(path, swap_red_blue_lut())
    lut = read_cube(path)
    assert lut.size == 9 and lut.is_3d and lut.title == "swap"
    colour = torch.tensor([[[[0.9, 0.3, 0.1]]]])
    out = apply_lut(colour, lut)
    assert torch.allclose(out.flatten(), torch.tensor([0.1, 0.3, 0.9]), atol=1e-4), (
        f"a red/blue swap LUT gave {out.flatten().tolist()} for (0.9, 0.3, 0.1)"
    )
    half = apply_lut(colour, lut, strength=0.5)
    assert torch.allclose(half.flatten(), torch.tensor([0.5, 0.3, 0.5]), atol=1e-4), "strength 0.5 is not halfway"


def test_cube_with_comments_title_and_domain(tmp_path):
    # A 2^3 LUT over the domain 0..2 that halves every value: x in 0..2 -> x/2 ... stored as the output grid.
    lines = ["# made by hand", 'TITLE "half #1"', "DOMAIN_MIN 0 0 0", "DOMAIN_MAX 2 2 2", "LUT_3D_SIZE 2", ""]
    for b in (0, 1):
        for g in (0, 1):
            for r in (0, 1):
                lines.append(f"{r} {g} {b}  # corner")
    path = tmp_path / "half.cube"
    path.write_text("\n".join(lines))
    lut = read_cube(path)
    assert lut.title == "half #1" and lut.domain_max.tolist() == [2.0, 2.0, 2.0]
    out = apply_lut(torch.full((1, 1, 1, 3), 0.8), lut)
    assert torch.allclose(out, torch.full((1, 1, 1, 3), 0.4), atol=1e-5), f"domain 0..2 mapping gave {out.flatten()}"


def test_one_dimensional_cube_applies_per_channel_curve(tmp_path):
    path = tmp_path / "curve.cube"
    path.write_text("LUT_1D_SIZE 3\n0 0 0\n0.25 0.5 0.5\n1 1 1\n")
    out = apply_lut(torch.tensor([[[[0.5, 0.25, 1.0]]]]), read_cube(path))
    assert torch.allclose(out.flatten(), torch.tensor([0.25, 0.25, 1.0]), atol=1e-5), f"1D LUT gave {out.flatten()}"


@pytest.mark.parametrize(
    "text, problem",
    [
        ("0 0 0\n1 1 1\n", "no LUT_3D_SIZE"),
        ("LUT_3D_SIZE 2\n0 0 0\n1 1 1\n", "needs 8 colour lines"),
        ("LUT_3D_SIZE two\n", "not a whole number"),
        ("LUT_3D_SIZE 2\n" + "0 0 zero\n" * 8, "not a list of numbers"),
        ("LUT_3D_SIZE 2\n" + "0 0\n" * 8, "expected three numbers"),
        ("FOO 1\nLUT_3D_SIZE 2\n" + "0 0 0\n" * 8, "unknown keyword"),
    ],
)
def test_malformed_cube_gives_clear_error(tmp_path, text, problem):
    path = tmp_path / "bad.cube"
    path.write_text(text)
    with pytest.raises(HarmoVidError, match=problem):
        read_cube(path)


def test_missing_cube_file_names_the_path(tmp_path):
    with pytest.raises(HarmoVidError, match="not found"):
        read_cube(tmp_path / "nope.cube")


def test_blend_of_two_luts_is_their_average():
    clip = torch.rand(1, 6, 7, 3, generator=torch.Generator().manual_seed(2))
    blended = blend_luts([identity_lut(5), swap_red_blue_lut(9)], [1.0, 1.0])
    expected = 0.5 * clip + 0.5 * clip.flip(-1)
    assert (apply_lut(clip, blended) - expected).abs().max() < 1e-4, "blending two LUTs is not their average"
    with pytest.raises(HarmoVidError, match="one weight per LUT"):
        blend_luts([identity_lut(5)], [1.0, 2.0])


def test_real_dev_luts_parse(dev_data):
    for path in sorted((dev_data / "luts").glob("*.cube")):
        lut = read_cube(path)
        assert lut.is_3d and torch.isfinite(lut.table).all(), f"{path.name} did not parse to a finite 3D LUT"

"""Compositing: placement, length/frame-rate schedule, decontamination, alpha-over, errors, node."""

import pytest
import torch

from comfy_harmovid.composite import (
    ANCHORS,
    Placement,
    alpha_over,
    composite,
    composite_chunk,
    decontaminate_foreground,
    frame_schedule,
)
from comfy_harmovid.errors import HarmoVidError
from conftest import make_portrait_clip

EXPECTED_TOP_LEFT = {  # a 20x30 foreground placed at its own size on a 40x60 background
    "top-left": (0, 0),
    "top-center": (0, 15),
    "top-right": (0, 30),
    "center-left": (10, 0),
    "center": (10, 15),
    "center-right": (10, 30),
    "bottom-left": (20, 0),
    "bottom-center": (20, 15),
    "bottom-right": (20, 30),
}


def marked_foreground():
    """A 20x30 foreground, black with one white pixel at (row 2, col 3), and a full alpha."""
    frames = torch.zeros(1, 20, 30, 3)
    frames[0, 2, 3] = 1.0
    return frames, torch.ones(1, 20, 30)


@pytest.mark.parametrize("anchor", list(ANCHORS))
def test_a_known_pixel_lands_where_the_anchor_puts_it(anchor):
    frames, alpha = marked_foreground()
    # The fit size is 40x60 (twice the foreground), so scale 0.5 places it pixel for pixel.
    placement = Placement((20, 30), (40, 60), scale=0.5, anchor=anchor)
    top, left = EXPECTED_TOP_LEFT[anchor]
    placed = placement.place_frames(frames)
    found = (placed[0, ..., 0] == 1).nonzero().tolist()
    assert found == [[top + 2, left + 3]], f"{anchor}: marked pixel at {found}, expected {[top + 2, left + 3]}"
    placed_alpha = placement.place_alpha(alpha)[0]
    assert placed_alpha.sum() == 20 * 30 and placed_alpha[top : top + 20, left : left + 30].all()


def test_offsets_move_by_fractions_of_the_background_and_crop_at_the_edge():
    frames, alpha = marked_foreground()
    placement = Placement((20, 30), (40, 60), scale=0.5, x=0.25, y=-0.5, anchor="center")
    assert (placement.top, placement.left) == (10 - 20, 15 + 15)
    placed_alpha = placement.place_alpha(alpha)[0]
    # rows -10..9 of which 0..9 are visible; cols 30..59 all visible
    assert placed_alpha.sum() == 10 * 30, f"expected the visible 10x30 part, got {placed_alpha.sum()} pixels"
    assert placement.place_frames(frames)[0, ..., 0].sum() == 0, "the marked pixel (row -8) should be cropped away"


def test_scale_one_fits_a_portrait_to_the_background_height():
    placement = Placement((100, 50), (60, 120), scale=1.0)
    assert placement.size == (60, 30)
    assert (placement.top, placement.left) == (0, 45), "bottom-center should centre it on the bottom edge"
    wide = Placement((50, 200), (60, 120), scale=1.0)
    assert wide.size == (30, 120), "a foreground wider than the background fits its width instead"


@pytest.mark.parametrize(
    "fg, bg, kwargs, expected",
    [
        (3, 5, {}, [(0, 0), (1, 1), (2, 2)]),
        (3, 5, {"length_policy": "loop"}, [(0, 0), (1, 1), (2, 2), (0, 3), (1, 4)]),
        (3, 7, {"length_policy": "ping-pong"}, [(0, 0), (1, 1), (2, 2), (1, 3), (0, 4), (1, 5), (2, 6)]),
        (3, 5, {"length_policy": "hold"}, [(0, 0), (1, 1), (2, 2), (2, 3), (2, 4)]),
        (5, 2, {"length_policy": "hold"}, [(0, 0), (1, 1), (2, 1), (3, 1), (4, 1)]),
        (4, 2, {"length_policy": "loop"}, [(0, 0), (1, 1), (2, 0), (3, 1)]),
        (1, 3, {"length_policy": "ping-pong"}, [(0, 0), (0, 1), (0, 2)]),
        # 30 fps foreground over a 15 fps background: every other foreground frame
        (6, 10, {"foreground_fps": 30, "background_fps": 15}, [(0, 0), (2, 1), (4, 2)]),
        (6, 5, {"foreground_fps": 30, "background_fps": 15, "length_policy": "loop"},
         [(0, 0), (2, 1), (4, 2), (0, 3), (2, 4)]),
        # 10 fps foreground over 20 fps: each foreground frame shown twice; then hold the background
        (3, 4, {"foreground_fps": 10, "background_fps": 20, "length_policy": "hold"},
         [(0, 0), (0, 1), (1, 2), (1, 3), (2, 3), (2, 3)]),
        # 25 fps over 24 fps: the frame on screen at each output time
        (5, 10, {"foreground_fps": 25, "background_fps": 24}, [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)]),
        (26, 30, {"foreground_fps": 25, "background_fps": 24}, [(j * 25 // 24, j) for j in range(25)]),
        # output at another rate than the background
        (4, 4, {"foreground_fps": 10, "background_fps": 10, "output_fps": 20},
         [(0, 0), (0, 0), (1, 1), (1, 1), (2, 2), (2, 2), (3, 3), (3, 3)]),
        # an unknown rate means frame by frame
        (3, 3, {"foreground_fps": 30, "background_fps": None}, [(0, 0), (1, 1), (2, 2)]),
    ],
)
def test_frame_schedule_is_exact_for_each_policy_and_rate(fg, bg, kwargs, expected):
    assert frame_schedule(fg, bg, **kwargs) == expected


def green_screen_edge():
    """A red person on a green screen with a soft edge: (frames, alpha, true foreground colour)."""
    width = 64
    alpha = torch.zeros(1, 32, width)
    ramp = torch.linspace(1, 0, 12)
    alpha[..., :26] = 1
    alpha[..., 26:38] = ramp
    person = torch.tensor([0.8, 0.35, 0.3]).expand(1, 32, width, 3)
    screen = torch.tensor([0.1, 0.9, 0.2]).expand(1, 32, width, 3)
    frames = alpha[..., None] * person + (1 - alpha[..., None]) * screen
    return frames, alpha, person


def test_decontamination_removes_the_green_fringe():
    frames, alpha, person = green_screen_edge()
    new_background = torch.full_like(frames, 0.3)
    truth = alpha_over(person, new_background, alpha)
    band = (alpha > 0) & (alpha < 1)
    plain = composite(frames, new_background, alpha, decontaminate=False).composite
    clean = composite(frames, new_background, alpha, decontaminate=True).composite
    plain_error = (plain - truth).abs().sum(-1)[band].mean()
    clean_error = (clean - truth).abs().sum(-1)[band].mean()
    assert clean_error < 0.25 * plain_error, f"edge colour error {clean_error:.3f} decontaminated vs {plain_error:.3f}"
    green_excess = (clean[..., 1] - truth[..., 1])[band].max()
    assert green_excess < 0.05, f"green still leaks into the edge by {green_excess:.3f}"


def test_decontamination_keeps_the_solid_foreground_untouched(portrait_clip):
    frames, mask, _ = portrait_clip
    cleaned = decontaminate_foreground(frames, mask)
    assert torch.equal(cleaned[mask == 1], frames[mask == 1])


def test_composite_outputs_have_background_size_and_schedule_length(portrait_clip):
    frames, mask, _ = portrait_clip  # 8 frames, 64x80
    background = torch.rand(5, 48, 120, 3)
    result = composite(frames, background, mask, length_policy="ping-pong", foreground_fps=30, background_fps=30)
    assert result.composite.shape == (8, 48, 120, 3)
    assert result.alpha.shape == (8, 48, 120)
    assert result.background.shape == (8, 48, 120, 3)
    assert torch.equal(result.background[5], background[3]) and torch.equal(result.background[7], background[1])
    outside = result.alpha == 0
    assert torch.equal(result.composite[outside], result.background[outside]), "background must show where alpha is 0"
    comp, alpha, bg = result  # unpacks as three outputs
    assert comp is result.composite


def test_alpha_over_blends_linearly():
    fg, bg = torch.ones(1, 2, 2, 3), torch.zeros(1, 2, 2, 3)
    alpha = torch.tensor([[[0.0, 0.25], [0.5, 1.0]]])
    assert torch.allclose(alpha_over(fg, bg, alpha)[..., 0], alpha)


def test_composite_reports_progress_to_the_end(portrait_clip):
    frames, mask, background = portrait_clip
    calls = []
    composite(frames, background, mask, progress=lambda done, total: calls.append((done, total)), chunk_frames=3)
    assert calls[-1] == (8, 8) and len(calls) == 3


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda f, m, b: composite(f, b, m[:, :, :-4]), "foreground is"),
        (lambda f, m, b: composite(f, b, m[:-2]), "foreground has"),
        (lambda f, m, b: composite(f.permute(0, 3, 1, 2), b, m), "channels-first"),
        (lambda f, m, b: composite(f, b * float("nan"), m), "NaN"),
        (lambda f, m, b: composite(f, b, m, anchor="middle"), "anchor"),
        (lambda f, m, b: composite(f, b, m, length_policy="longest"), "length_policy"),
        (lambda f, m, b: composite(f, b, m, scale=0), "scale"),
        (lambda f, m, b: composite(f, b, m, foreground_fps=-1, background_fps=24), "foreground_fps"),
        (lambda f, m, b: composite(f, b[:0], m), "no frames"),
    ],
    ids=["size", "length", "layout", "nan", "anchor", "policy", "scale", "fps", "empty"],
)
def test_bad_input_gives_one_clear_error(portrait_clip, call, message):
    frames, mask, background = portrait_clip
    with pytest.raises(HarmoVidError, match=message):
        call(frames, mask, background)


def test_composite_node_returns_three_outputs_at_background_size(portrait_clip):
    from nodes.compositing import HarmoVidComposite

    frames, mask, _ = portrait_clip
    background = torch.rand(4, 40, 100, 3)
    inputs = HarmoVidComposite.INPUT_TYPES()["required"]
    assert all("tooltip" in options for _, options in inputs.values()), "every input needs a tooltip"
    settings = {name: options["default"] for name, (_, options) in inputs.items() if "default" in options}
    node = HarmoVidComposite()
    out = getattr(node, node.FUNCTION)(frames, background, mask, **settings)
    assert [tuple(t.shape) for t in out] == [(4, 40, 100, 3), (4, 40, 100), (4, 40, 100, 3)]
    assert len(out) == len(HarmoVidComposite.RETURN_TYPES) == len(HarmoVidComposite.OUTPUT_TOOLTIPS)


def test_decontamination_only_changes_pixels_near_the_foreground():
    frames = torch.rand(2, 96, 128, 3, generator=torch.Generator().manual_seed(3))
    alpha = torch.zeros(2, 96, 128)
    alpha[:, 40:56, 50:70] = 0.5
    cleaned = decontaminate_foreground(frames, alpha, radius=8)
    far = torch.ones(96, 128, dtype=torch.bool)
    far[40 - 24 : 56 + 24, 50 - 24 : 70 + 24] = False
    assert torch.equal(cleaned[:, far], frames[:, far]), "pixels far from any alpha changed"
    assert not torch.equal(cleaned[:, 40:56, 50:70], frames[:, 40:56, 50:70]), "the soft pixels were not cleaned"


def test_decontamination_removes_green_spill_from_a_real_green_screen_edge(dev_data):
    from comfy_harmovid.io import read_video
    from comfy_harmovid.segment.chroma import chroma_key, green_difference

    frames = read_video(dev_data / "people/lp_d0.mp4", max_frames=3).frames
    alpha = chroma_key(frames)
    background = torch.full_like(frames, 0.4)
    band = (alpha > 0.05) & (alpha < 0.95)

    def green_excess(decontaminate):
        out = composite(frames, background, alpha, decontaminate=decontaminate).composite
        return green_difference(out)[band].clamp(min=0).mean()

    plain, clean = green_excess(False), green_excess(True)
    assert clean < 0.5 * plain, f"green excess on the edge {clean:.4f} decontaminated vs {plain:.4f} plain"


def test_frames_without_foreground_composite_to_the_background(portrait_clip):
    frames, mask, background = portrait_clip
    alpha = torch.zeros_like(mask)
    assert torch.equal(decontaminate_foreground(frames, alpha), frames)
    assert torch.equal(composite(frames, background, alpha).composite, background)


def test_a_placement_rejects_chunks_of_another_size():
    placement = Placement((20, 30), (40, 60))
    with pytest.raises(HarmoVidError, match="new Placement"):
        placement.place_frames(torch.zeros(1, 10, 30, 3))
    with pytest.raises(HarmoVidError, match="new Placement"):
        placement.place_alpha(torch.zeros(1, 20, 31))


@pytest.mark.parametrize("scale, x, y", [(1.0, 0.0, 0.0), (0.7, 0.3, -0.2), (1.5, -0.4, 0.1)])
def test_placing_over_the_background_equals_alpha_over_the_placed_canvas(portrait_clip, scale, x, y):
    frames, mask, _ = portrait_clip
    background = torch.rand(8, 50, 120, 3, generator=torch.Generator().manual_seed(4))
    placement = Placement(frames.shape[1:3], background.shape[1:3], scale=scale, x=x, y=y)
    placed_alpha = placement.place_alpha(mask)
    expected = alpha_over(placement.place_frames(frames), background, placed_alpha)
    over = placement.over(frames, placed_alpha, background)
    assert torch.equal(over, expected), f"differs by up to {(over - expected).abs().max():.2e}"


def test_decontamination_paints_the_clear_background_next_to_the_person_in_the_person_colour():
    frames, alpha, person = green_screen_edge()
    cleaned = decontaminate_foreground(frames, alpha, radius=16)
    beside = cleaned[:, :, 38:42]  # alpha 0, just outside the soft edge (columns 26-37)
    to_person = (beside - person[:, :, 38:42]).abs().sum(-1).max()
    to_screen = (beside - frames[:, :, 38:42]).abs().sum(-1).min()
    assert to_person < 0.5 * to_screen, f"colour {to_person:.2f} from the person but {to_screen:.2f} from the screen"


@pytest.mark.parametrize("x, y", [(0.0, 0.0), (0.45, 0.0), (-0.3, 0.4)])
def test_a_chunk_at_its_own_size_composites_as_decontaminating_every_pixel_would(x, y):
    """Without resizing, the composite decontaminates only the soft edge: it must equal decontaminating the
    whole foreground and blending it, to float rounding (also with the person partly off the canvas)."""
    frames, mask, _ = make_portrait_clip(frames=4, height=64, width=80, seed=3)
    alpha = torch.nn.functional.avg_pool2d(mask[:, None], 7, stride=1, padding=3, count_include_pad=False)[:, 0]
    assert ((alpha > 0) & (alpha < 1)).any(), "the test needs a soft edge"
    background = torch.rand(4, 64, 120, 3, generator=torch.Generator().manual_seed(5))
    placement = Placement(frames.shape[1:3], background.shape[1:3], x=x, y=y)
    assert placement.size == placement.foreground_size
    expected = placement.over(decontaminate_foreground(frames, alpha), placement.place_alpha(alpha), background)
    result, _ = composite_chunk(frames, background.clone(), alpha, placement, in_place=True)
    assert (result - expected).abs().max() < 1e-6, f"differs by up to {(result - expected).abs().max():.2e}"
    copied, _ = composite_chunk(frames, background, alpha, placement)
    assert torch.equal(copied, result), "writing into a copy and into the background must give the same frames"

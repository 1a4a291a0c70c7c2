"""The learned HarmoIm: transform, network, weights files, training and the harmonizer, on tiny models."""

import json

import pytest
import torch
import yaml

from comfy_harmovid.cli import main as harmovid
from comfy_harmovid.color import identity_lut
from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.harmoim import HarmoImConfig, HarmoImNet, load_harmoim, save_harmoim
from comfy_harmovid.harmoim.grades import GradeOptions, random_grades
from comfy_harmovid.harmoim.training import FramePool, HarmoImTrainConfig, train_harmoim, training_step
from comfy_harmovid.harmoim.transform import apply_through_alpha, bounded_maps, parameter_count
from comfy_harmovid.harmoim.weights import training_record
from comfy_harmovid.harmoim import LearnedHarmonizer, StatisticsHarmonizer, harmonize_frames
from comfy_harmovid.io import write_video

from conftest import make_portrait_clip

TINY = HarmoImConfig(input_size=32, bands=3, widths=(8, 16), hidden=32)


def tiny_net(seed: int = 0, randomize_head: bool = True) -> HarmoImNet:
    """A tiny network; its last layer (zero at init, i.e. the identity) is randomized to make it act."""
    torch.manual_seed(seed)
    net = HarmoImNet(TINY)
    if randomize_head:
        torch.nn.init.normal_(net.head[-1].weight, std=0.5)
        torch.nn.init.normal_(net.head[-1].bias, std=0.5)
    return net.eval()


def test_zero_parameters_are_the_identity_and_any_parameters_stay_in_range():
    frames = torch.rand(2, 9, 11, 3)
    alpha = torch.ones(2, 9, 11)
    identity = bounded_maps(torch.zeros(2, parameter_count(4)), 4)
    assert torch.allclose(apply_through_alpha(frames, alpha, identity), frames, atol=1e-6), "zero params changed colours"
    wild = bounded_maps(torch.full((2, parameter_count(4)), 1e4), 4)
    out = apply_through_alpha(frames, alpha, wild)
    assert out.min() >= 0 and out.max() <= 1, "bounded maps left the 0..1 range"
    assert (wild - identity).abs().max() <= 0.6 + 1e-6, "a map entry moved further than its bound"


def test_transform_changes_nothing_where_alpha_is_zero():
    frames = torch.rand(1, 8, 8, 3)
    alpha = torch.zeros(1, 8, 8)
    alpha[:, 2:6, 2:6] = 1
    maps = bounded_maps(torch.randn(1, parameter_count(3)) * 3, 3)
    out = apply_through_alpha(frames, alpha, maps)
    assert torch.equal(out[alpha == 0], frames[alpha == 0]), "pixels outside the alpha changed"
    assert not torch.allclose(out[alpha == 1], frames[alpha == 1]), "the person was not changed at all"


def test_fast_frame_path_matches_the_differentiable_one():
    from comfy_harmovid.harmoim.transform import STRIP_ROWS, apply_to_frame

    # Taller than two strips, with a person that covers a different span of columns in each strip and
    # rows without anyone: the fast path maps only the person's columns of each strip.
    height = 2 * STRIP_ROWS + 9
    frame, alpha = torch.rand(1, height, 40, 3), torch.rand(1, height, 40)
    alpha[:, :, :5] = 0
    alpha[:, : STRIP_ROWS, 30:] = 0
    alpha[:, 2 * STRIP_ROWS :] = 0
    maps = bounded_maps(torch.randn(1, parameter_count(5)) * 2, 5)
    expected = apply_through_alpha(frame, alpha, maps, 0.8)[0]
    fast = torch.from_numpy(apply_to_frame(frame[0].numpy(), alpha[0].numpy(), maps[0], 0.8))
    assert torch.allclose(fast, expected, atol=1e-5), "the OpenCV path differs from the torch path"
    assert torch.equal(fast[alpha[0] == 0], frame[0][alpha[0] == 0]), "the fast path changed pixels without alpha"


@pytest.mark.parametrize("grey", [0.0, 0.3, 0.5, 1.0])
def test_fast_frame_path_on_flat_blocks_within_one_band(grey):
    """A block whose pixels all sit at one band position (on a band's centre at 0, 0.5 and 1) has no ramp
    to weigh: it must still get that position's map."""
    from comfy_harmovid.harmoim.transform import apply_to_frame

    frame, alpha = torch.full((1, 12, 16, 3), grey), torch.ones(1, 12, 16)
    maps = bounded_maps(torch.randn(1, parameter_count(5), generator=torch.Generator().manual_seed(1)) * 2, 5)
    expected = apply_through_alpha(frame, alpha, maps)[0]
    fast = torch.from_numpy(apply_to_frame(frame[0].numpy(), alpha[0].numpy(), maps[0]))
    assert torch.allclose(fast, expected, atol=1e-5), f"a flat grey {grey} frame was mapped differently"


def test_network_view_of_large_frames_is_the_area_average_within_a_tolerance():
    """Frames with a whole factor are first box-averaged by it (a faster path); the view stays within a
    small tolerance of one-step area averaging, and small frames (training crops) are shrunk in one step."""
    import cv2
    import numpy as np

    from comfy_harmovid.harmoim.learned import area_resize

    generator = np.random.default_rng(0)
    for height, width in [(720, 1280), (1080, 1920), (256, 256), (722, 1281)]:
        image = cv2.resize(generator.random((9, 16, 3), dtype=np.float32), (width, height),
                           interpolation=cv2.INTER_CUBIC)
        image += 0.05 * generator.random(image.shape, dtype=np.float32)  # detail finer than the view
        one_step = cv2.resize(image, (96, 96), interpolation=cv2.INTER_AREA)
        difference = np.abs(area_resize(image, 96) - one_step).max()
        if min(height, width) < 2 * 2 * 96 or height % 2 or width % 2:
            assert difference == 0, f"{height}x{width} has no whole factor to average by, yet its view changed"
        else:
            assert difference < 0.01, f"the {height}x{width} view is {difference:.4f} off the area average"


def test_fast_frame_path_writes_into_a_view_exactly_as_it_allocates():
    from comfy_harmovid.harmoim.transform import apply_to_frame

    frame, alpha = torch.rand(30, 40, 3).numpy(), torch.rand(30, 40).numpy()
    maps = bounded_maps(torch.randn(1, parameter_count(5)) * 2, 5)[0]
    image = torch.zeros(50, 60, 3).numpy()
    written = apply_to_frame(frame, alpha, maps, 0.7, out=image[5:35, 10:50])
    assert written.base is not None and (image[5:35, 10:50] == written).all(), "out= did not write into the view"
    assert (image[5:35, 10:50] == apply_to_frame(frame, alpha, maps, 0.7)).all(), "out= changed the result"
    assert not image[:5].any() and not image[:, :10].any(), "out= wrote outside its view"


def test_the_networks_view_shows_a_nan_or_inf_at_any_pixel_of_a_larger_frame():
    """``view_shows_all_finite`` stands in for a pass over the whole chunk only if one bad value anywhere
    reaches the area-averaged view; a frame smaller than the view (interpolated up) never counts as proof."""
    import numpy as np
    from comfy_harmovid.harmoim.learned import network_view, view_shows_all_finite

    rng = np.random.default_rng(0)
    for height, width in [(37, 53), (48, 48), (20, 100)]:
        frame, alpha = rng.random((1, height, width, 3), dtype=np.float32), rng.random((1, height, width), dtype=np.float32)
        assert view_shows_all_finite(*network_view(frame, alpha, 16), (height, width))
        for y in range(height):
            for x in range(width):
                value = (np.nan, np.inf, -np.inf)[(x * 7 + y) % 3]
                bad, bad_alpha = frame.copy(), alpha.copy()
                bad[0, y, x, (x + y) % 3] = bad_alpha[0, y, x] = value
                assert not view_shows_all_finite(*network_view(bad, alpha, 16), (height, width)), (height, width, y, x)
                assert not view_shows_all_finite(*network_view(frame, bad_alpha, 16), (height, width)), (y, x)
    small = rng.random((1, 8, 30, 3), dtype=np.float32), rng.random((1, 8, 30), dtype=np.float32)
    assert not view_shows_all_finite(*network_view(*small, 16), (8, 30)), "an enlarged view proves nothing"


@pytest.mark.parametrize("size", [(40, 56), (12, 20)])  # larger and smaller than the tiny network's view
@pytest.mark.parametrize("where", ["composite", "alpha"])
def test_learned_harmonizer_rejects_a_single_nan_or_inf_pixel(size, where):
    clip, mask, _ = make_portrait_clip(frames=3, height=size[0], width=size[1])
    harmonizer = LearnedHarmonizer(weights=tiny_net())
    for value in (float("nan"), float("inf")):
        frames, alpha = clip.clone(), mask.clone()
        if where == "composite":
            frames[2, -1, 0, 1] = value
        else:
            alpha[1, 0, -1] = value
        with pytest.raises(HarmoVidError, match=f"{where}: contains NaN or infinite values"):
            harmonizer.process(frames, alpha)


@pytest.mark.parametrize("method", ["statistics", "learned"])
def test_harmonizers_write_into_a_reused_buffer_exactly_as_they_allocate(method):
    clip, mask, background = make_portrait_clip(frames=5, height=40, width=56)
    mask[2] = 0  # a frame without the person
    make = {"statistics": StatisticsHarmonizer, "learned": lambda: LearnedHarmonizer(weights=tiny_net())}[method]
    allocating, buffered = make(), make()
    buffer = torch.full((3, 40, 56, 3), float("nan"))
    for start, stop in [(0, 3), (3, 5)]:  # the second chunk is shorter: a slice of the buffer
        expected = allocating.process(clip[start:stop], mask[start:stop], background[start:stop])
        out = buffer[: stop - start]
        result = buffered.process(clip[start:stop], mask[start:stop], background[start:stop], out=out)
        assert result.data_ptr() == out.data_ptr(), "the result is not the given buffer"
        assert torch.equal(result, expected), f"frames {start}:{stop} differ from the allocating path"
    with pytest.raises(HarmoVidError, match=r"composite chunk's shape \(2, 40, 56, 3\)"):
        make().process(clip[:2], mask[:2], out=buffer)
    with pytest.raises(HarmoVidError, match="float32"):
        make().process(clip[:2], mask[:2], out=torch.empty(2, 40, 56, 3, dtype=torch.float64))
    with pytest.raises(HarmoVidError, match="must not overlap"):
        make().process(clip[:2], mask[:2], out=clip[:2])


def test_exposure_limit_bounds_the_change_of_mean_luma_and_keeps_small_changes():
    from comfy_harmovid.harmoim.transform import LUMA, apply_maps, limit_exposure

    pixels, weights = 0.2 + 0.3 * torch.rand(2, 500, 3), torch.rand(2, 500)
    identity = bounded_maps(torch.zeros(2, parameter_count(3)), 3)
    brighten = identity.clone()
    brighten[:, :, 3, :] += torch.tensor([0.3, 0.02]).view(2, 1, 1)  # a large and a small exposure change

    def mean_luma(colours):
        return (colours @ LUMA * weights).sum(1) / weights.sum(1)

    limited = limit_exposure(brighten, pixels, weights, 0.05)
    change = mean_luma(apply_maps(pixels, limited).clamp(0, 1)) - mean_luma(pixels)
    assert abs(float(change[0]) - 0.05) < 1e-4, f"the large change became {float(change[0]):.4f}, not 0.05"
    assert torch.allclose(limited[1], brighten[1]), "a change within the limit was altered"
    assert torch.allclose(limit_exposure(identity, pixels, weights, 0.05), identity), "the identity was altered"


def test_scene_cast_restraint_stops_cooling_a_person_below_a_warm_rooms_cast():
    from comfy_harmovid.color import rgb_to_lab
    from comfy_harmovid.harmoim.transform import apply_maps, respect_scene_cast

    generator = torch.Generator().manual_seed(0)
    noise = 0.03 * torch.rand(3, 400, 3, generator=generator)
    scene = torch.tensor([[0.75, 0.55, 0.3], [0.75, 0.55, 0.3], [0.5, 0.5, 0.5]]).view(3, 1, 3)  # warm, warm, grey
    person = torch.tensor([0.6, 0.45, 0.3]).view(1, 1, 3)  # as warm as the warm rooms
    alpha = torch.cat([torch.ones(3, 200), torch.zeros(3, 200)], dim=1)
    pixels = torch.cat([person.expand(3, 200, 3), scene.expand(3, 200, 3)], dim=1) + noise
    identity = bounded_maps(torch.zeros(3, parameter_count(3)), 3)
    maps = identity.clone()
    maps[:, :, 3, :] += torch.tensor([[-0.08, 0.0, 0.1], [0.05, 0.0, -0.04], [-0.08, 0.0, 0.1]]).view(3, 1, 3)
    # [0] cools the person in a warm room, [1] warms them there, [2] cools them in a grey room.
    restrained = respect_scene_cast(maps, pixels, alpha)

    def person_b(colours):
        return rgb_to_lab(colours[:, :200])[..., 2].mean(1)

    before, cooled = person_b(pixels), person_b(apply_maps(pixels, maps).clamp(0, 1))
    after = person_b(apply_maps(pixels, restrained).clamp(0, 1))
    assert cooled[0] < before[0] - 5, "the test map does not cool the person"
    assert after[0] > before[0] - 1.5, f"in a warm room the person was still cooled from {before[0]:.1f} to {after[0]:.1f}"
    assert torch.allclose(restrained[1:], maps[1:]), "warming in a warm room, or cooling in a grey one, was changed"


def test_the_rules_read_only_the_pixels_they_weigh():
    """Both rules map only the pixels that count for them (speed): pixels of weight 0 for the exposure
    limit, and pixels neither person (alpha > 0.5) nor scene (alpha < 0.1) for the cast rule, may take
    any colour without changing what the rules decide; the pixels that count, in any image, still do."""
    from comfy_harmovid.harmoim.transform import limit_exposure, respect_scene_cast

    generator = torch.Generator().manual_seed(1)
    warm = torch.tensor([[0.6, 0.45, 0.3]] * 200 + [[0.5, 0.5, 0.5]] * 200 + [[0.75, 0.55, 0.3]] * 200)
    pixels = warm + 0.03 * torch.rand(2, 600, 3, generator=generator)  # a warm person in a warm room
    alpha = torch.cat([torch.ones(2, 200), torch.full((2, 200), 0.3), torch.zeros(2, 200)], dim=1)
    alpha[1, :100] = 0.3  # the images differ in which pixels are the person
    maps = bounded_maps(torch.zeros(2, parameter_count(3)), 3).clone()
    maps[:, :, 3, :] += torch.tensor([0.05, 0.15, 0.3])  # brighter and much cooler
    other = pixels.clone()
    other[:, 200:400] = torch.rand(2, 200, 3, generator=generator)  # only the in-between pixels differ
    other[0, :100] = torch.rand(100, 3, generator=generator)  # and pixels that count only in image 0
    limited, limited_other = (limit_exposure(maps, p, alpha * (alpha > 0.5), 0.05) for p in (pixels, other))
    assert not torch.allclose(limited, maps), "the test map is within the exposure limit"
    assert torch.allclose(limited[1], limited_other[1], atol=1e-6), "a pixel of weight 0 changed the exposure limit"
    assert not torch.allclose(limited[0], limited_other[0], atol=1e-4), "a pixel that counts was ignored"
    kept, kept_other = (respect_scene_cast(maps, p, alpha) for p in (pixels, other))
    assert not torch.allclose(kept, maps), "the cast rule did not act on the test map"
    assert torch.allclose(kept[1], kept_other[1], atol=1e-6), "a pixel neither person nor scene changed the cast rule"


def test_scene_cast_restraint_leaves_a_person_who_shows_little_of_the_rooms_cast():
    """Someone in front of a green screen is not lit green: a map that makes them a little less green is
    theirs to keep, as the same map is taken back for a person who shares the room's cast."""
    from comfy_harmovid.harmoim.transform import respect_scene_cast

    noise = 0.03 * torch.rand(2, 400, 3, generator=torch.Generator().manual_seed(0))
    scene = torch.tensor([0.2, 0.7, 0.25]).view(1, 1, 3)  # a strongly green room
    people = torch.tensor([[0.62, 0.5, 0.45], [0.35, 0.6, 0.35]]).view(2, 1, 3)  # neutral skin; green as the room
    alpha = torch.cat([torch.ones(2, 200), torch.zeros(2, 200)], dim=1)
    pixels = torch.cat([people.expand(2, 200, 3), scene.expand(2, 200, 3)], dim=1) + noise
    maps = bounded_maps(torch.zeros(2, parameter_count(3)), 3).clone()
    maps[:, :, 3, :] += torch.tensor([0.03, -0.02, 0.03])  # a little less green, a little brighter
    restrained = respect_scene_cast(maps, pixels, alpha)
    assert torch.allclose(restrained[0], maps[0]), "the map of a person without the room's cast was changed"
    assert not torch.allclose(restrained[1], maps[1]), "a person who shares the room's cast lost it"


def test_clarity_drops_changes_within_the_networks_error_and_grows_clear_ones():
    """A change of the person's colours about the size of the network's error is mostly dropped, a large
    one grown by the clear-change gain; pixels outside the person do not count."""
    from comfy_harmovid.harmoim.transform import CHANGE_NOISE, CLEAR_CHANGE_GAIN, apply_maps, clarity_factors, scale_change

    def sized(maps, pixels, alpha):
        return scale_change(maps, clarity_factors(maps, pixels, alpha))

    generator = torch.Generator().manual_seed(2)
    pixels = 0.3 + 0.4 * torch.rand(3, 600, 3, generator=generator)
    alpha = torch.cat([torch.ones(3, 300), torch.full((3, 100), 0.4), torch.zeros(3, 200)], dim=1)
    maps = bounded_maps(torch.zeros(3, parameter_count(3)), 3).clone()
    sizes = torch.tensor([0.3 * CHANGE_NOISE, CHANGE_NOISE, 8 * CHANGE_NOISE])  # small, at the error, large
    maps[:, :, 3, :] += sizes.view(3, 1, 1)  # an even offset: its RMS change is its size

    def rms_change(m):
        return ((apply_maps(pixels[:, :300], m) - pixels[:, :300]) ** 2).mean((1, 2)).sqrt()

    kept = rms_change(sized(maps, pixels, alpha)) / sizes
    expected = torch.tensor([0.09 / 1.09, 0.5, 64 / 65 * CLEAR_CHANGE_GAIN])  # m^2 / (m^2 + noise^2) x gain
    assert torch.allclose(kept, expected, atol=1e-3), f"changes kept by {kept.tolist()}, not {expected.tolist()}"
    other = pixels.clone()
    other[:, 300:] = torch.rand(3, 300, 3, generator=generator)  # only pixels outside the person differ
    assert torch.allclose(sized(maps, other, alpha), sized(maps, pixels, alpha), atol=1e-6)


def test_learned_harmonizer_keeps_a_grown_change_within_the_exposure_limit():
    from comfy_harmovid.harmoim.learned import MAX_EXPOSURE_CHANGE
    from comfy_harmovid.harmoim.transform import LUMA

    clip, mask, _ = make_portrait_clip(frames=2, height=40, width=56)
    net = tiny_net()
    with torch.no_grad():  # a network that brightens everyone strongly: clarity grows what the limit kept
        net.head[-1].weight.zero_()
        net.head[-1].bias.zero_()
        net.head[-1].bias[3 * 4 - 3 : 3 * 4] = 5.0
        net.head[-1].bias[-1] = 5.0
    dark = clip * 0.3
    person = mask > 0.5
    for clarity in (True, False):
        out = LearnedHarmonizer(weights=net, clarity=clarity, temporal_smoothing=0.0).process(dark, mask)
        change = ((out - dark) @ LUMA)[person].mean()
        assert MAX_EXPOSURE_CHANGE - 0.01 < change < MAX_EXPOSURE_CHANGE + 5e-4, \
            f"clarity={clarity}: mean luma changed by {change:.4f}, limit {MAX_EXPOSURE_CHANGE}"


def test_learned_harmonizer_limits_the_exposure_change_by_default():
    clip, mask, _ = make_portrait_clip(frames=2, height=40, width=56)
    net = tiny_net()
    with torch.no_grad():  # a network that brightens everyone strongly
        net.head[-1].weight.zero_()
        net.head[-1].bias.zero_()
        net.head[-1].bias[3 * 4 - 3 : 3 * 4] = 5.0  # band 0's offset row (R, G, B)
        net.head[-1].bias[-1] = 5.0  # gate open
    dark = clip * 0.3
    free = LearnedHarmonizer(weights=net, max_exposure_change=None).process(dark, mask)
    limited = LearnedHarmonizer(weights=net).process(dark, mask)
    person = mask > 0.5
    assert (free - dark)[person].mean() > 0.1, "the test network does not brighten the person"
    assert (limited - dark)[person].mean() < 0.6 * (free - dark)[person].mean(), "the exposure limit did not hold back"
    with pytest.raises(HarmoVidError, match="max_exposure_change"):
        LearnedHarmonizer(weights=net, max_exposure_change=-0.1)


def test_untrained_network_is_the_identity():
    clip, mask, _ = make_portrait_clip(frames=3, height=40, width=56)
    out = harmonize_frames(clip, mask, method="learned", weights=HarmoImNet(TINY))
    assert torch.allclose(out, clip, atol=1e-6), "a freshly initialised network changed the frames"


@pytest.mark.parametrize("size", [(37, 53), (96, 160), (161, 90)])
def test_learned_harmonizer_runs_at_any_resolution_and_keeps_shape_and_dtype(size):
    clip, mask, _ = make_portrait_clip(frames=3, height=size[0], width=size[1])
    out = harmonize_frames(clip.double(), mask, method="learned", weights=tiny_net())
    assert out.shape == clip.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert (out - clip).abs()[mask > 0.5].mean() > 1e-3, "the randomized network did not change the person"
    assert torch.equal(out[mask == 0], clip[mask == 0].float()), "the background changed"


def test_learned_harmonizer_strength_zero_and_smoothing():
    clip, mask, _ = make_portrait_clip(frames=6, height=40, width=56)
    net = tiny_net()
    assert torch.equal(harmonize_frames(clip, mask, method="learned", weights=net, strength=0.0), clip)
    # A still clip: the per-frame prediction is the same every frame, so the output must not drift.
    still = clip[:1].expand(6, -1, -1, -1).contiguous()
    out = LearnedHarmonizer(weights=net).process(still, mask[:1].expand(6, -1, -1))
    assert (out - out[0]).abs().max() < 1e-5, "a still clip flickered"


def test_chunked_learned_harmonization_matches_one_pass():
    clip, mask, _ = make_portrait_clip(frames=7, height=40, width=56)
    net = tiny_net()
    whole = harmonize_frames(clip, mask, method="learned", weights=net, chunk_frames=7)
    chunked = harmonize_frames(clip, mask, method="learned", weights=net, chunk_frames=2)
    assert torch.allclose(whole, chunked, atol=1e-6), "chunking changed the temporal smoothing"


def test_weights_round_trip_and_record(tmp_path):
    net = tiny_net()
    path = save_harmoim(net, tmp_path / "h.safetensors", {"steps": 3})
    loaded = load_harmoim(path)
    composite, alpha = torch.rand(2, 3, 32, 32), torch.rand(2, 1, 32, 32)
    assert torch.equal(loaded(composite, alpha), net(composite, alpha)), "loaded weights predict differently"
    assert loaded.config == TINY and training_record(path) == {"steps": 3}
    with pytest.raises(HarmoVidError, match="already exists"):
        save_harmoim(net, path)


def test_corrupt_or_mismatched_weights_give_clear_errors(tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header at all")
    with pytest.raises(HarmoVidError, match="not a readable safetensors file"):
        load_harmoim(corrupt)
    # Weights of one size under the config of another.
    from safetensors.torch import load_file, save_file

    path = save_harmoim(tiny_net(), tmp_path / "h.safetensors")
    other = HarmoImConfig(input_size=32, bands=3, widths=(8, 24), hidden=32)
    save_file(load_file(str(path)), str(tmp_path / "mismatch.safetensors"),
              metadata={"harmoim_config": other.to_json()})
    with pytest.raises(HarmoVidError, match="wrong shape"):
        load_harmoim(tmp_path / "mismatch.safetensors")
    save_file(load_file(str(path)), str(tmp_path / "noconfig.safetensors"), metadata={"format": "pt"})
    with pytest.raises(HarmoVidError, match="not a learned HarmoIm weights file"):
        load_harmoim(tmp_path / "noconfig.safetensors")


def test_missing_default_weights_name_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr("comfy_harmovid.harmoim.weights.weights_folders", lambda: [tmp_path])
    with pytest.raises(HarmoVidError, match="harmovid train harmoim"):
        load_harmoim()
    from comfy_harmovid.harmoim import available_methods, default_method

    assert "learned" not in available_methods() and default_method() == "statistics"


def test_grades_are_seeded_in_range_and_can_be_switched_off():
    images = torch.rand(6, 16, 16, 3)
    luts = [identity_lut(5)]
    first = random_grades(images, luts, torch.Generator().manual_seed(3))
    again = random_grades(images, luts, torch.Generator().manual_seed(3))
    assert torch.equal(first, again), "the same seed gave different grades"
    assert first.min() >= 0 and first.max() <= 1 and not torch.equal(first, images)
    none = random_grades(images, luts, torch.Generator().manual_seed(3), GradeOptions(ungraded=1.0))
    assert torch.equal(none, images)


def test_white_balance_in_kelvin_warms_above_daylight_and_cools_below():
    from comfy_harmovid.harmoim.grades import white_balance_gains

    assert torch.allclose(white_balance_gains(6500.0), torch.ones(3), atol=1e-6), "daylight must be neutral"
    warm, cool = white_balance_gains(9000.0), white_balance_gains(4000.0)
    assert warm[0] > 1 > warm[2] and cool[2] > 1 > cool[0], (warm, cool)
    assert white_balance_gains(6500.0, tint=0.1)[1] > white_balance_gains(6500.0)[1], "tint > 0 adds green"


@pytest.mark.parametrize("operation", ["white_balance", "exposure", "saturation", "curves", "contrast",
                                       "film_curve", "split_toning", "fade", "lut"])
def test_each_grade_operation_changes_the_image_on_its_own(operation):
    from dataclasses import fields

    chances = {f.name: 0.0 for f in fields(GradeOptions) if f.type is float and f.name not in ("ungraded", "mild")
               and not f.name.startswith("max_")}
    options = GradeOptions(**{**chances, operation: 1.0, "ungraded": 0.0, "mild": 0.0})
    images = torch.rand(4, 16, 16, 3)
    warm = identity_lut(5)
    warm.table[..., 0] = warm.table[..., 0] * 0.5 + 0.5
    graded = random_grades(images, [warm], torch.Generator().manual_seed(1), options)
    assert graded.min() >= 0 and graded.max() <= 1
    change = (graded - images).abs().flatten(1).mean(1)
    # A random strength can fall near zero for one image; the operation must act on the others.
    assert int((change > 1e-3).sum()) >= 3, f"{operation} left images unchanged: {change}"
    untouched = random_grades(images, [warm], torch.Generator().manual_seed(1), GradeOptions(**{**chances}))
    assert torch.allclose(untouched, images), "with every chance at 0 the grade must be the identity"


def synthetic_pool(count: int = 12, size: int = 40) -> FramePool:
    clip, mask, _ = make_portrait_clip(frames=count, height=size, width=size)
    return FramePool(clip, mask, ["synthetic"] * count)


def test_per_source_sampling_gives_a_still_as_much_weight_as_a_long_clip():
    from comfy_harmovid.harmoim.training import _frame_indices

    pool = FramePool(torch.zeros(41, 4, 4, 3), torch.zeros(41, 4, 4), ["clip.mp4"] * 40 + ["still.jpg"])
    picks = _frame_indices(pool, 2000, True, torch.Generator().manual_seed(0))
    share = sum(index == 40 for index in picks) / len(picks)
    assert 0.45 < share < 0.55, f"the still was drawn {share:.1%} of the time, not about half"
    uniform = _frame_indices(pool, 2000, False, torch.Generator().manual_seed(0))
    assert sum(index == 40 for index in uniform) / 2000 < 0.05, "frame-uniform sampling should rarely draw the still"


def test_training_crops_are_shrunk_as_inference_shrinks_frames():
    """The network must see in training what it sees at inference (``network_view``): fine detail averaged,
    not aliased or blurred differently."""
    import numpy as np

    from comfy_harmovid.harmoim.learned import network_view
    from comfy_harmovid.harmoim.training import sample_batch

    rows, cols = np.indices((64, 64))
    stripes = ((rows // 2 + cols // 3) % 2).astype(np.float32)  # detail finer than the network's grid
    frame = np.stack([stripes, 1 - stripes, np.full_like(stripes, 0.5)], -1)
    alpha = (cols > 20).astype(np.float32)
    pool = FramePool(torch.from_numpy(frame)[None], torch.from_numpy(alpha)[None], ["stripes"])
    seen, seen_alpha = network_view(frame[None], alpha[None], 24)
    crops, crop_alpha = sample_batch(pool, 8, 24, 1.0, torch.Generator().manual_seed(0))
    for crop, crop_a in zip(crops.numpy(), crop_alpha.numpy()):
        mirrored = crop[:, ::-1], crop_a[:, ::-1]
        errors = [max(np.abs(c - seen[0]).max(), np.abs(a - seen_alpha[0]).max()) for c, a in ((crop, crop_a), mirrored)]
        assert min(errors) < 1e-5, f"a full-frame training crop differs from the inference view by {min(errors):.3f}"


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    net = HarmoImNet(TINY)
    pool = synthetic_pool()
    frames, alpha = pool.frames[:8, :32, :32], pool.alpha[:8, :32, :32]
    config = HarmoImTrainConfig(network=TINY, scene_grade=0.0, grades=GradeOptions(ungraded=0.0, mild=0.0))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)

    def loss_now():
        return training_step(net, frames, alpha, [], config, torch.Generator().manual_seed(5))

    start = loss_now().item()
    for _ in range(25):
        loss = loss_now()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss_now().item() < start - 0.3, f"25 steps on one batch did not lower the loss ({start:.3f})"


def test_training_is_reproducible():
    config = HarmoImTrainConfig(network=TINY, steps=3, batch_size=4, warmup_steps=1, pool_size=40)
    first, record = train_harmoim(config, synthetic_pool())
    second, _ = train_harmoim(config, synthetic_pool())
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), f"{name} differs between two runs with the same seed"
    assert record["clips"] == ["synthetic"] and record["config"]["steps"] == 3


def test_train_harmoim_command_writes_loadable_weights(tmp_path):
    clip, mask, _ = make_portrait_clip(frames=6, height=48, width=64)
    write_video(tmp_path / "person.mkv", clip, 10)
    write_video(tmp_path / "person_mask.mkv", mask, 10)
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(
        {"clips": [{"path": "person.mkv", "role": "portrait", "mask": "person_mask.mkv"}]}))
    settings = {"network": {"input_size": 32, "bands": 3, "widths": [8, 16], "hidden": 32},
                "frames_per_clip": 4, "pool_size": 40, "steps": 2, "batch_size": 2, "warmup_steps": 1}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(settings))
    output = tmp_path / "out.safetensors"
    args = ["train", "harmoim", "--manifest", str(tmp_path / "manifest.yaml"), "--config",
            str(tmp_path / "config.yaml"), "-o", str(output)]
    assert harmovid(args) == 0
    net = load_harmoim(output)
    assert net.config.widths == (8, 16)
    assert json.loads(json.dumps(training_record(output)))["frames"] == 4
    assert harmovid(args) != 0, "an existing weights file was overwritten without --overwrite"


def test_node_and_command_use_chosen_learned_weights(tmp_path, monkeypatch):
    from nodes.harmonization import HarmoVidHarmoImFrames

    (tmp_path / "harmoim").mkdir()
    net = tiny_net()
    save_harmoim(net, tmp_path / "harmoim" / "mine.safetensors")
    monkeypatch.setenv("HARMOVID_MODELS_DIR", str(tmp_path))
    clip, mask, _ = make_portrait_clip(frames=3, height=40, width=56)
    expected = harmonize_frames(clip, mask, method="learned", weights=net)
    assert "mine.safetensors" in HarmoVidHarmoImFrames.INPUT_TYPES()["optional"]["weights"][0]
    (out,) = HarmoVidHarmoImFrames().harmonize(clip, mask, "learned", 1.0, weights="mine.safetensors")
    assert torch.allclose(out, expected, atol=1e-6), "the node did not use the chosen weights"
    (auto,) = HarmoVidHarmoImFrames().harmonize(clip, mask, "auto", 1.0, weights="mine.safetensors")
    assert torch.allclose(auto, expected, atol=1e-6), "auto with chosen weights did not run the learned method"

    write_video(tmp_path / "composite.mkv", clip, 10)
    write_video(tmp_path / "mask.mkv", mask, 10)
    output = tmp_path / "out.mkv"
    assert harmovid(["harmonize-frames", "--composite", str(tmp_path / "composite.mkv"), "--mask",
                     str(tmp_path / "mask.mkv"), "--method", "learned", "--weights",
                     str(tmp_path / "harmoim" / "mine.safetensors"), "-o", str(output)]) == 0
    from comfy_harmovid.io import read_video

    written = read_video(output).frames
    assert (written - expected).abs().max() < 2 / 255, "harmonize-frames --method learned differs from the engine"


def test_shipped_weights_load_and_record_the_shipped_config_and_split():
    from pathlib import Path

    from comfy_harmovid.cli.train import HARMOIM_CONFIG
    from comfy_harmovid.harmoim.weights import DEFAULT_WEIGHTS_NAME
    from comfy_harmovid.locations import shipped_path

    path = shipped_path("harmoim", DEFAULT_WEIGHTS_NAME)
    net = load_harmoim(path)
    record = training_record(path)
    shipped_config = json.loads(json.dumps(HarmoImTrainConfig.from_file(HARMOIM_CONFIG).to_dict()))
    assert record["config"] == shipped_config, \
        "the shipped weights were not trained with the shipped config"
    manifest = Path(__file__).resolve().parents[1] / "models" / "harmoim" / DEFAULT_WEIGHTS_NAME.replace(".safetensors", "-manifest.yaml")
    manifest = yaml.safe_load(manifest.read_text())
    assert record["clips"] == sorted(p.rsplit("/", 1)[-1] for p in manifest["clips"])
    assert record["luts"] == [p.rsplit("/", 1)[-1] for p in manifest["luts"]]
    assert sum(p.numel() for p in net.parameters()) < 5_000_000

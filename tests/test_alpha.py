"""Pseudo-alpha: soft band, exact outside it, follows image edges, no shimmer, streams."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from comfy_harmovid.alpha import PseudoAlpha, pseudo_alpha
from comfy_harmovid.errors import HarmoVidError


def chessboard_distance_to_boundary(mask: torch.Tensor) -> torch.Tensor:
    """Per pixel, the chessboard distance to the nearest pixel of the other class (for one [H, W] mask)."""
    binary = mask.numpy() >= 0.5
    to_background = ndimage.distance_transform_cdt(binary, metric="chessboard")
    to_foreground = ndimage.distance_transform_cdt(~binary, metric="chessboard")
    return torch.from_numpy(np.where(binary, to_background, to_foreground)).float()


def disc_clip(frames=6, size=64, radius=18.0, jitter=0.0, seed=0):
    """A static textured disc on a flat background, and its mask with the radius jittering per frame."""
    generator = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    distance = ((ys - size / 2) ** 2 + (xs - size / 2) ** 2).sqrt()
    inside = (distance <= radius).float()
    image = torch.stack([0.2 + 0.6 * inside, 0.3 + 0.2 * inside, 0.7 - 0.4 * inside], dim=-1)
    frames_out = image.expand(frames, size, size, 3).clone()
    radii = radius + jitter * (torch.rand(frames, generator=generator) * 2 - 1)
    masks = torch.stack([(distance <= r).float() for r in radii])
    return frames_out, masks


def test_alpha_is_exactly_binary_outside_the_band_and_soft_at_the_boundary(portrait_clip):
    frames, mask, _ = portrait_clip
    band = 6
    # Half ramp, half guided: on this clip's perfectly sharp edge the guided part alone would be hard.
    alpha = pseudo_alpha(frames, mask, band_width=band, edge_awareness=0.5)
    for t in range(frames.shape[0]):
        distance = chessboard_distance_to_boundary(mask[t])
        outside = distance > band
        assert torch.equal(alpha[t][outside], mask[t][outside]), f"frame {t}: alpha is not exactly the mask outside the band"
        near = distance <= 1
        soft = ((alpha[t][near] > 0) & (alpha[t][near] < 1)).float().mean()
        assert soft > 0.95, f"frame {t}: only {soft:.0%} of pixels next to the boundary are soft"


def test_alpha_falls_monotonically_across_a_straight_edge():
    frames = torch.full((1, 32, 64, 3), 0.5)
    mask = torch.zeros(1, 32, 64)
    mask[:, :, :32] = 1
    frames[:, :, :32] = 0.8  # the image edge agrees with the mask
    # The plain ramp is strictly monotone; the guided filter's local fit may wobble by a hair.
    for edge_awareness, tolerance in ((0.0, 1e-6), (0.5, 0.02), (1.0, 0.02)):
        row = pseudo_alpha(frames, mask, band_width=10, edge_awareness=edge_awareness)[0, 16]
        steps = row[1:] - row[:-1]
        assert (steps <= tolerance).all(), f"edge_awareness={edge_awareness}: alpha rises along a row: {row.tolist()}"
        assert row[21] == 1 and row[42] == 0, "alpha should reach exactly 1 and 0 at the band's edges"
    ramp = pseudo_alpha(frames, mask, band_width=10, edge_awareness=0.0)[0, 16]
    assert 0.5 < ramp[31] < 0.8 and 0.2 < ramp[32] < 0.5, f"the boundary pixels are not soft: {ramp[28:36].tolist()}"
    assert (ramp[1:] - ramp[:-1]).abs().max() < 0.15, "without edge awareness the ramp jumps instead of decaying"


def test_edge_awareness_pulls_the_alpha_onto_the_image_edge():
    # The true edge is at column 40, the mask (e.g. from a coarse segmenter) ends at column 42.
    generator = torch.Generator().manual_seed(1)
    frames = torch.empty(1, 48, 96, 3)
    frames[..., :40, :] = torch.tensor([0.85, 0.6, 0.5])
    frames[..., 40:, :] = torch.tensor([0.15, 0.5, 0.25])
    frames += torch.rand(frames.shape, generator=generator) * 0.04
    mask = torch.zeros(1, 48, 96)
    mask[..., :42] = 1
    truth = torch.zeros(1, 48, 96)
    truth[..., :40] = 1
    band = slice(30, 58)
    plain = pseudo_alpha(frames, mask, band_width=12, edge_awareness=0.0)
    guided = pseudo_alpha(frames, mask, band_width=12, edge_awareness=1.0)
    plain_error = (plain - truth)[..., band].abs().mean()
    guided_error = (guided - truth)[..., band].abs().mean()
    assert guided_error < 0.65 * plain_error, (
        f"edge-aware alpha error {guided_error:.3f} is not well below the plain ramp's {plain_error:.3f}"
    )


def shimmer(alpha: torch.Tensor, band: torch.Tensor) -> float:
    """Mean absolute frame-to-frame alpha change inside the band."""
    return float(((alpha[1:] - alpha[:-1]).abs() * band).sum() / band.sum() / (alpha.shape[0] - 1))


def test_temporal_smoothing_reduces_shimmer_of_a_jittering_mask():
    frames, masks = disc_clip(frames=12, jitter=2.0)
    band = ((masks.mean(0) > 0) & (masks.mean(0) < 1)).float() + 0  # where the jittering edge goes
    band = torch.nn.functional.max_pool2d(band[None, None], 7, 1, 3)[0, 0]
    per_frame = pseudo_alpha(frames, masks, temporal_smoothing=0.0)
    smoothed = pseudo_alpha(frames, masks, temporal_smoothing=0.5)
    assert shimmer(smoothed, band) < 0.6 * shimmer(per_frame, band), (
        f"shimmer {shimmer(smoothed, band):.4f} with smoothing vs {shimmer(per_frame, band):.4f} without"
    )


def test_temporal_smoothing_does_not_drag_behind_a_moving_edge(portrait_clip):
    frames, mask, _ = portrait_clip  # the person moves sideways and the frames show it
    per_frame = pseudo_alpha(frames, mask, temporal_smoothing=0.0)
    smoothed = pseudo_alpha(frames, mask, temporal_smoothing=0.9)
    lag = (smoothed - per_frame).abs().max()
    assert lag < 0.2, f"temporal smoothing shifted a moving edge's alpha by up to {lag:.2f}"


def test_streaming_in_chunks_matches_the_whole_clip(portrait_clip):
    frames, mask, _ = portrait_clip
    whole = pseudo_alpha(frames, mask, band_width=8)
    maker = PseudoAlpha(band_width=8)
    streamed = torch.cat([maker.process(frames[i : i + 3], mask[i : i + 3]) for i in range(0, frames.shape[0], 3)])
    assert torch.equal(whole, streamed), f"streamed alpha differs by up to {(whole - streamed).abs().max():.2e}"


def test_a_rough_soft_mask_is_accepted_and_gives_alpha_in_range(portrait_clip):
    frames, mask, _ = portrait_clip
    rough = (mask * 0.9 + 0.05).clamp(0, 1)
    alpha = pseudo_alpha(frames, rough)
    assert alpha.shape == mask.shape and alpha.dtype == torch.float32
    assert alpha.min() >= 0 and alpha.max() <= 1


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f, m: (f[:, :, :-2], m), "frames is"),
        (lambda f, m: (f, m[:-1]), "frames has"),
        (lambda f, m: (f, torch.zeros_like(m)), "empty"),
        (lambda f, m: (f.clone().index_fill_(0, torch.tensor([1]), float("nan")), m), "NaN"),
        (lambda f, m: (f.permute(0, 3, 1, 2), m), "channels-first"),
        (lambda f, m: (f, m[..., None].expand(*m.shape, 3)), "MASK"),
    ],
    ids=["size", "length", "empty", "nan", "layout", "mask-as-image"],
)
def test_bad_input_gives_one_clear_error(portrait_clip, change, message):
    frames, mask, _ = portrait_clip
    frames, mask = change(frames, mask)
    with pytest.raises(HarmoVidError, match=message):
        pseudo_alpha(frames, mask)


@pytest.mark.parametrize("settings", [{"band_width": 0}, {"edge_awareness": 1.5}, {"temporal_smoothing": 1.0}])
def test_bad_settings_are_rejected(settings):
    with pytest.raises(HarmoVidError):
        PseudoAlpha(**settings)


def test_streaming_rejects_a_chunk_of_another_size(portrait_clip):
    frames, mask, _ = portrait_clip
    maker = PseudoAlpha()
    maker.process(frames[:2], mask[:2])
    with pytest.raises(HarmoVidError, match="reset"):
        maker.process(frames[2:4, :32], mask[2:4, :32])


def test_pseudo_alpha_node_returns_a_soft_mask(portrait_clip):
    from nodes.compositing import HarmoVidPseudoAlpha

    frames, mask, _ = portrait_clip
    node = HarmoVidPseudoAlpha()
    inputs = HarmoVidPseudoAlpha.INPUT_TYPES()["required"]
    assert all("tooltip" in options for _, options in inputs.values()), "every input needs a tooltip"
    defaults = {name: options["default"] for name, (_, options) in inputs.items() if "default" in options}
    (alpha,) = getattr(node, node.FUNCTION)(frames, mask, **defaults)
    assert alpha.shape == mask.shape
    assert ((alpha > 0) & (alpha < 1)).any(), "the node's alpha has no soft edge"
    assert torch.equal(alpha[:, 0, 0], mask[:, 0, 0]), "a far background corner should stay exactly 0"


def test_working_only_around_the_boundary_matches_the_whole_frame(portrait_clip, monkeypatch):
    small_frames, small_mask, _ = portrait_clip
    frames = torch.full((8, 160, 200, 3), 0.3)
    mask = torch.zeros(8, 160, 200)
    frames[:, 50:114, 70:150] = small_frames
    mask[:, 50:114, 70:150] = small_mask
    cropped = pseudo_alpha(frames, mask)
    whole_frame = (slice(0, 160), slice(0, 200))
    monkeypatch.setattr(PseudoAlpha, "_work_area", lambda self, binary: whole_frame)
    full = pseudo_alpha(frames, mask)
    # Only the rounding of the running sums differs.
    assert torch.allclose(cropped, full, atol=1e-3), f"differs by up to {(cropped - full).abs().max():.2e}"


def test_pseudo_alpha_of_a_binary_key_is_closer_to_the_soft_key_on_real_footage(dev_data):
    from comfy_harmovid.io import read_video
    from comfy_harmovid.segment.chroma import chroma_key

    frames = read_video(dev_data / "people/lp_d0.mp4", max_frames=3).frames
    key = chroma_key(frames)
    binary = (key >= 0.5).float()
    band = torch.from_numpy(
        np.stack([chessboard_distance_to_boundary(m).numpy() <= 12 for m in binary])
    )  # where the alpha may differ from the mask
    binary_error = (binary - key).abs()[band].mean()
    alpha_error = (pseudo_alpha(frames, binary) - key).abs()[band].mean()
    assert alpha_error < 0.85 * binary_error, (
        f"pseudo-alpha error {alpha_error:.4f} vs the binary mask's {binary_error:.4f} against the soft key"
    )


def test_guided_filter_matches_a_direct_per_window_solution():
    from comfy_harmovid.filters import fast_guided_filter

    generator = torch.Generator().manual_seed(5)
    guide = torch.rand(1, 3, 12, 14, generator=generator, dtype=torch.float64)
    source = torch.rand(1, 12, 14, generator=generator, dtype=torch.float64)
    radius, eps = 2, 1e-2
    height, width = source.shape[-2:]
    a = torch.zeros(3, height, width, dtype=torch.float64)
    b = torch.zeros(height, width, dtype=torch.float64)
    for y in range(height):  # one ridge-regression per window (He et al. 2013, eq. 5-6)
        for x in range(width):
            rows, cols = slice(max(0, y - radius), y + radius + 1), slice(max(0, x - radius), x + radius + 1)
            pixels = guide[0, :, rows, cols].reshape(3, -1)
            values = source[0, rows, cols].reshape(-1)
            mean_i, mean_p = pixels.mean(1), values.mean()
            sigma = (pixels - mean_i[:, None]) @ (pixels - mean_i[:, None]).T / values.numel()
            cov = (pixels - mean_i[:, None]) @ (values - mean_p) / values.numel()
            a[:, y, x] = torch.linalg.solve(sigma + eps * torch.eye(3, dtype=torch.float64), cov)
            b[y, x] = mean_p - a[:, y, x] @ mean_i
    expected = torch.zeros(height, width, dtype=torch.float64)
    for y in range(height):
        for x in range(width):
            rows, cols = slice(max(0, y - radius), y + radius + 1), slice(max(0, x - radius), x + radius + 1)
            expected[y, x] = (a[:, rows, cols].mean((1, 2)) @ guide[0, :, y, x]) + b[rows, cols].mean()
    result = fast_guided_filter(guide, source, radius, eps, subsample=1)[0]
    assert torch.allclose(result, expected, atol=1e-9), f"differs by up to {(result - expected).abs().max():.2e}"


def test_frames_where_the_person_is_gone_get_a_zero_alpha_and_streaming_goes_on(portrait_clip):
    frames, mask, _ = portrait_clip
    mask = mask.clone()
    mask[2:5] = 0  # the person leaves the frame for a while
    maker = PseudoAlpha()
    alpha = torch.cat([maker.process(frames[i : i + 2], mask[i : i + 2]) for i in range(0, 8, 2)])
    assert torch.equal(alpha[2:5], torch.zeros_like(alpha[2:5])), "frames without a person must have alpha 0"
    assert ((alpha[6] > 0) & (alpha[6] < 1)).any(), "the soft edge should come back with the person"


def test_filters_sampled_at_band_pixels_equal_the_whole_image_filters():
    from comfy_harmovid.filters import fast_guided_filter, fast_guided_filter_at, upsample, upsample_at

    generator = torch.Generator().manual_seed(6)
    guide = torch.rand(3, 40, 50, generator=generator)
    source = (torch.rand(40, 50, generator=generator) > 0.5).float()
    ys, xs = torch.nonzero(torch.rand(40, 50, generator=generator) > 0.7, as_tuple=True)
    whole = fast_guided_filter(guide[None], source[None], 4, 1e-4, 3)[0]
    at = fast_guided_filter_at(guide, source, 4, 1e-4, 3, ys, xs)
    assert torch.allclose(at, whole[ys, xs], atol=1e-5), f"differs by up to {(at - whole[ys, xs]).abs().max():.2e}"
    small = torch.rand(2, 9, 11, generator=generator)
    whole = upsample(small, 4, (34, 43))
    ys, xs = torch.nonzero(torch.ones(34, 43), as_tuple=True)
    assert torch.allclose(upsample_at(small, 4, ys, xs), whole[:, ys, xs], atol=1e-6)


@pytest.mark.parametrize("shape, factor", [((2, 3, 37, 45), 4), ((1, 1, 40, 44), 4), ((3, 50, 61), 3), ((1, 6, 20, 21), 3)])
def test_downsample_averages_blocks_and_partial_edge_blocks(shape, factor):
    from comfy_harmovid.filters import downsample

    x = torch.rand(shape, generator=torch.Generator().manual_seed(7))
    expected = torch.nn.functional.avg_pool2d(x.reshape(-1, *shape[-3:]) if x.ndim == 4 else x[:, None], factor,
                                              ceil_mode=True).reshape(*shape[:-2], -(-shape[-2] // factor), -1)
    out = downsample(x, factor)
    assert torch.allclose(out, expected, atol=1e-6), f"differs by up to {(out - expected).abs().max():.2e}"
    channels_last_crop = torch.rand(1, 30, 40, 3)[:, 2:27, 5:38].permute(0, 3, 1, 2)  # an IMAGE crop, not copied
    expected = torch.nn.functional.avg_pool2d(channels_last_crop, factor, ceil_mode=True)
    assert torch.allclose(downsample(channels_last_crop, factor), expected, atol=1e-6)


@pytest.mark.parametrize("toward_identity", [False, True])
def test_local_linear_fit_is_the_ridge_regression_in_numpy_and_torch(toward_identity):
    # One closed form serves the guided filter (torch) and the deflicker's colour map (numpy): both
    # must give the per-window ridge regression (cov_gg + eps I) A^T = cov_gt + eps * prior.
    from comfy_harmovid.filters import SYMMETRIC_PAIRS, local_linear_fit

    rng = np.random.default_rng(3)
    guide = rng.random((3, 40), dtype=np.float64)  # 40 pixels of one window each, 5 windows side by side
    guide = guide.reshape(3, 5, 8)
    target = np.einsum("kj,jwp->kwp", rng.random((3, 3)), guide) + 0.2 * rng.random((3, 5, 8))
    eps = 1e-2
    mean_g, mean_t = guide.mean(-1), target.mean(-1)
    products = [(guide[i] * guide[j]).mean(-1) for i, j in SYMMETRIC_PAIRS]
    cross = [[(guide[j] * target[k]).mean(-1) for k in range(3)] for j in range(3)]
    prior = np.eye(3) if toward_identity else np.zeros((3, 3))
    for library in (np.asarray, torch.from_numpy):
        change, offset = local_linear_fit([library(m) for m in mean_g], [library(m) for m in mean_t],
                                          [library(p) for p in products], [[library(c) for c in row] for row in cross],
                                          eps, toward_identity=toward_identity)
        for window in range(5):
            g, t = guide[:, window], target[:, window]
            cov_gg = np.cov(g, bias=True) + eps * np.eye(3)
            cov_gt = (g - g.mean(1, keepdims=True)) @ (t - t.mean(1, keepdims=True)).T / g.shape[1]
            a = np.linalg.solve(cov_gg, cov_gt + eps * prior).T
            b = t.mean(1) - a @ g.mean(1)
            got_a = np.array([[float(change[k][j][window]) for j in range(3)] for k in range(3)]) + prior
            got_b = np.array([float(offset[k][window]) for k in range(3)])
            # float64 throughout: only rounding separates the closed form from the solver
            assert np.allclose(got_a, a, atol=1e-9) and np.allclose(got_b, b, atol=1e-9), library

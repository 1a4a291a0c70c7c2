"""HarmoVidVAE: diffusers' CogVideoX VAE with pad-and-trim, temporal chunks and spatial tiles."""

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.model import HarmoVidVAE
from comfy_harmovid.model.layout import pad_by_repeating
from comfy_harmovid.model.vae import blend_ramp, tile_spans, time_batches
from conftest import make_portrait_clip

TINY_VAE = dict(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4, latent_channels=4,
                sample_height=32, sample_width=32)


@pytest.fixture(scope="module")
def autoencoder():
    torch.manual_seed(0)
    return AutoencoderKLCogVideoX(**TINY_VAE).eval()


def untiled(autoencoder) -> HarmoVidVAE:
    vae = HarmoVidVAE(autoencoder)
    vae.tiling = False
    return vae


def test_encode_pads_to_4k_plus_1_frames_and_16_pixels_and_equals_diffusers(autoencoder):
    frames = torch.rand(6, 20, 30, 3)  # 6 frames -> 9; 20x30 -> 32x32
    vae = untiled(autoencoder)
    latent = vae.encode(frames)
    assert latent.shape == (1, 4, 3, 4, 4) == vae.latent_shape(6, 20, 30)
    padded = pad_by_repeating(pad_by_repeating(pad_by_repeating(frames, 0, 9), 1, 32), 2, 32)
    with torch.no_grad():
        reference = autoencoder.encode(padded.permute(3, 0, 1, 2)[None] * 2 - 1).latent_dist.mode()
    assert torch.equal(latent, reference * autoencoder.config.scaling_factor), (
        "untiled encode must equal diffusers' AutoencoderKLCogVideoX.encode on the padded clip"
    )


def test_decode_trims_to_the_original_clip_and_equals_diffusers(autoencoder):
    vae = untiled(autoencoder)
    latent = torch.randn(1, 4, 3, 2, 2)
    frames = vae.decode(latent, frame_count=6, height=10, width=12)
    assert frames.shape == (6, 10, 12, 3) and frames.dtype == torch.float32
    assert 0 <= frames.min() and frames.max() <= 1
    with torch.no_grad():
        reference = autoencoder.decode(latent / autoencoder.config.scaling_factor).sample
    reference = (reference[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0)  # [9, 16, 16, 3]
    assert torch.allclose(frames, reference[:6, :10, :12], atol=1e-6), "decode differs from diffusers' decode"
    assert vae.decode(latent).shape == (9, 16, 16, 3), "without trim sizes all 4(T'-1)+1 frames come back"


def test_encode_sample_is_seeded_and_differs_from_the_mean(autoencoder):
    vae = untiled(autoencoder)
    frames = torch.rand(1, 16, 16, 3)
    first = vae.encode(frames, generator=torch.Generator().manual_seed(3))
    again = vae.encode(frames, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again) and not torch.equal(first, vae.encode(frames))


def test_tiled_decode_matches_untiled_within_tolerance(autoencoder):
    frames, _, _ = make_portrait_clip(frames=5, height=16, width=64)
    vae = untiled(autoencoder)
    latent = vae.encode(frames)
    whole = vae.decode(latent)
    tiled_vae = HarmoVidVAE(autoencoder, tile_size=(16, 40), tile_overlap=(16, 16))
    assert len(tiled_vae._tiles(2, 8)) == 2, "the test clip should be split into two overlapping tiles"
    steps = []
    tiled = tiled_vae.decode(latent, progress=lambda done, total: steps.append((done, total)))
    error = (tiled - whole).abs().mean()
    # A random tiny VAE sees much less context per tile than a real one; measured 0.011 here.
    assert error < 0.02, f"tiled decode differs from untiled by {error:.4f} on average"
    assert steps[-1][0] == steps[-1][1] == 2, "progress should count tiles x latent batches (2 x 1)"


def test_tiled_encode_covers_the_frame_and_stays_finite(autoencoder):
    frames, _, _ = make_portrait_clip(frames=5, height=32, width=64)
    tiled = HarmoVidVAE(autoencoder, tile_size=(32, 40), tile_overlap=(16, 16)).encode(frames)
    assert tiled.shape == (1, 4, 2, 4, 8) and torch.isfinite(tiled).all()


def test_time_batches_match_diffusers_frame_batching():
    assert time_batches(13, 8) == [(0, 13)]
    assert time_batches(17, 8) == [(0, 9), (9, 17)]
    assert time_batches(49, 8) == [(0, 9), (9, 17), (17, 25), (25, 33), (33, 41), (41, 49)]
    assert time_batches(13, 2) == [(0, 3), (3, 5), (5, 7), (7, 9), (9, 11), (11, 13)]
    assert time_batches(1, 2) == [(0, 1)]


def test_tiles_cover_everything_and_blend_weights_never_vanish():
    spans = tile_spans(135, 30, 5)  # 1080 px of latent rows with diffusers' default tile
    covered = torch.zeros(135)
    for span in spans:
        assert span[1] - span[0] == 30
        covered[span[0] : span[1]] += blend_ramp(span, spans)
    assert spans[0][0] == 0 and spans[-1][1] == 135
    assert covered.min() > 0.5 and torch.allclose(covered, torch.ones(135)), "ramps should sum to 1 over overlaps"


def test_bad_latents_and_trims_give_clear_errors(autoencoder):
    vae = untiled(autoencoder)
    with pytest.raises(HarmoVidError, match="this VAE decodes 4"):
        vae.decode(torch.randn(1, 16, 2, 4, 4))
    with pytest.raises(HarmoVidError, match="Cannot trim 5 decoded frames"):
        vae.decode(torch.randn(1, 4, 2, 4, 4), frame_count=9)
    with pytest.raises(HarmoVidError, match="NaN"):
        vae.decode(torch.full((1, 4, 2, 4, 4), float("nan")))
    with pytest.raises(HarmoVidError, match="IMAGE frames"):
        vae.encode(torch.rand(2, 3, 16, 16))

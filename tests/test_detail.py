"""Detail transfer: the composite's own pixels plus only the light change the model made."""

import pytest
import torch

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.sampling import transfer_light


def textured(frames=3, height=32, width=48, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return 0.2 + 0.6 * torch.rand(frames, height, width, 3, generator=generator)


def test_no_change_gives_back_the_composite_and_leaves_the_inputs_alone():
    composite = textured()
    reconstruction = textured(seed=1)
    before = (composite.clone(), reconstruction.clone())
    out = transfer_light(reconstruction.clone(), reconstruction, composite)
    assert torch.allclose(out, composite, atol=1e-6), "an unchanged decode must return the composite exactly"
    assert torch.equal(composite, before[0]) and torch.equal(reconstruction, before[1]), "inputs were modified"


def test_the_light_change_is_added_and_the_vaes_noise_smoothed_away():
    composite = textured()
    reconstruction = textured(seed=1)
    noise = 0.05 * torch.randn(reconstruction.shape, generator=torch.Generator().manual_seed(2))
    warmer = torch.tensor([0.10, 0.0, -0.10])
    harmonized = reconstruction + warmer + noise  # the model's light plus the VAE's own high-frequency noise
    out = transfer_light(harmonized, reconstruction, composite, radius=4.0)
    error = (out - (composite + warmer).clamp(0, 1)).abs()
    assert float(error.mean()) < 0.01, f"smoothing must drop most of the noise: mean error {float(error.mean()):.4f}"
    unsmoothed = transfer_light(harmonized, reconstruction, composite, radius=0.0)
    assert float((unsmoothed - (composite + warmer)).abs().mean()) > 3 * float(error.mean())


def test_writing_over_the_reconstruction_gives_the_same_result():
    composite, reconstruction = textured(), textured(seed=1)
    harmonized = reconstruction + 0.1 * torch.rand(reconstruction.shape, generator=torch.Generator().manual_seed(3))
    expected = transfer_light(harmonized, reconstruction, composite)
    result = transfer_light(harmonized, reconstruction, composite, out=reconstruction)
    assert result is reconstruction and torch.equal(result, expected)
    with pytest.raises(HarmoVidError, match="out must be"):
        transfer_light(harmonized, expected.clone(), composite, out=torch.empty(3, 8, 8, 3))


def test_a_small_sample_relights_a_larger_composite_region_by_region():
    composite = textured(frames=2, height=64, width=96)
    reconstruction = torch.full((2, 16, 24, 3), 0.5)
    harmonized = reconstruction.clone()
    harmonized[:, :, 12:] += 0.2  # the model brightened the right half only
    out = transfer_light(harmonized, reconstruction, composite, radius=1.0)
    assert out.shape == composite.shape
    change = out - composite
    assert float(change[:, :, :40].abs().max()) < 0.01, "the left half must stay as composited"
    assert float(change[:, :, 56:].mean()) == pytest.approx(0.2, abs=0.02), "the right half must gain the change"


@pytest.mark.parametrize(
    "harmonized, reconstruction, composite, radius, message",
    [
        (textured(), textured(), textured(height=48, width=32), 4.0, "different shape"),
        (textured(), textured(), textured(frames=2), 4.0, "frames"),
        (textured(), textured(height=16, width=24), textured(), 4.0, "reconstruction"),
        (textured(), textured(), textured(), -1.0, "radius"),
    ],
)
def test_mismatched_inputs_get_one_clear_error(harmonized, reconstruction, composite, radius, message):
    with pytest.raises(HarmoVidError, match=message):
        transfer_light(harmonized, reconstruction, composite, radius=radius)

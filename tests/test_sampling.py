"""The sampler: seeding, guidance against null_condition, denoise strength, the two schedulers."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.model import null_condition
from comfy_harmovid.sampling import HarmoVidCondition, denoise_timesteps, make_scheduler, sample


class TinyDenoiser(nn.Module):
    """Test data: a small network with HarmoVidTransformer's forward signature, mixing nearby frames."""

    def __init__(self, channels: int = 4, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.mix = nn.Conv3d(3 * channels + 1, channels, kernel_size=3, padding=1)
        self.calls = []

    def forward(self, noisy_latent, composite_latent, background_latent, mask, timestep):
        self.calls.append((noisy_latent.clone(), composite_latent, background_latent, mask, timestep.clone()))
        return self.velocity(noisy_latent, composite_latent, background_latent, mask, timestep)

    def velocity(self, noisy_latent, composite_latent, background_latent, mask, timestep):
        latent_mask = F.adaptive_avg_pool3d(mask.float(), noisy_latent.shape[-3:])
        x = torch.cat([noisy_latent, composite_latent, background_latent, latent_mask], dim=1)
        return self.mix(x) * (timestep.float().view(-1, 1, 1, 1, 1) / 1000)


def make_condition(latent_frames=5, height=4, width=4, channels=4, seed=0) -> HarmoVidCondition:
    generator = torch.Generator().manual_seed(seed)
    shape = (1, channels, latent_frames, height, width)
    mask = torch.rand(1, 1, 4 * (latent_frames - 1) + 1, 8 * height, 8 * width, generator=generator)
    return HarmoVidCondition(
        torch.randn(shape, generator=generator), torch.randn(shape, generator=generator), mask, 4 * latent_frames - 3
    )


def test_same_seed_gives_the_same_latent_and_another_seed_another():
    model, condition = TinyDenoiser(), make_condition()
    first = sample(model, condition, seed=7, steps=3)
    again = sample(model, condition, seed=7, steps=3)
    other = sample(model, condition, seed=8, steps=3)
    assert torch.equal(first, again), "two runs with seed 7 differ: sampling is not reproducible"
    assert not torch.allclose(first, other), "seeds 7 and 8 gave the same latent: the seed is ignored"


def test_sampling_starts_from_cpu_generator_noise():
    model, condition = TinyDenoiser(), make_condition()
    sample(model, condition, seed=11, steps=2, guidance=1.0)
    expected = torch.randn(condition.composite_latent.shape, generator=torch.Generator("cpu").manual_seed(11))
    assert torch.equal(model.calls[0][0], expected), "the first model input is not the seeded CPU-generator noise"


def test_guidance_calls_the_model_with_null_condition_and_mixes_the_velocities():
    model, condition = TinyDenoiser(), make_condition()
    latent = sample(model, condition, seed=1, steps=1, guidance=5.0)
    assert len(model.calls) == 2, f"guidance 5 must call the model twice per step, got {len(model.calls)} calls"
    conditional, unconditional = model.calls
    expected_null = null_condition(condition.composite_latent, condition.background_latent, condition.mask)
    for got, want, name in zip(unconditional[1:4], expected_null, ("composite", "background", "mask")):
        assert torch.equal(got, want), f"the unconditional pass did not get null_condition's {name}"
    assert torch.equal(conditional[1], condition.composite_latent), "the conditional pass lost the composite"

    with torch.no_grad():
        v_cond, v_uncond = model.velocity(*conditional), model.velocity(*unconditional)
        velocity = v_uncond + 5.0 * (v_cond - v_uncond)
        scheduler = make_scheduler("ddim")
        scheduler.set_timesteps(1)
        expected = scheduler.step(velocity, scheduler.timesteps[0], conditional[0], return_dict=False)[0]
    assert torch.allclose(latent, expected, atol=1e-6), "the guided step is not v_u + g (v_c - v_u) then one DDIM step"


def test_guidance_one_skips_the_unconditional_pass():
    model = TinyDenoiser()
    sample(model, make_condition(), steps=3, guidance=1.0)
    assert len(model.calls) == 3, f"guidance 1 must call the model once per step, got {len(model.calls)}"


def test_denoise_zero_returns_the_composite_latent():
    model, condition = TinyDenoiser(), make_condition()
    latent = sample(model, condition, steps=4, denoise=0.0)
    assert torch.equal(latent, condition.composite_latent), "denoise 0 must return the composite latent unchanged"
    assert not model.calls, "denoise 0 must not run the model"


def test_partial_denoise_starts_from_the_noised_composite():
    model, condition = TinyDenoiser(), make_condition()
    sample(model, condition, seed=2, steps=10, denoise=0.3, guidance=1.0)
    scheduler = make_scheduler("ddim")
    timesteps = denoise_timesteps(scheduler, 10, 0.3)
    assert len(model.calls) == 3, f"denoise 0.3 of 10 steps must run the last 3 steps, ran {len(model.calls)}"
    noise = torch.randn(condition.composite_latent.shape, generator=torch.Generator().manual_seed(2))
    expected = scheduler.add_noise(condition.composite_latent, noise, timesteps[:1])
    assert torch.allclose(model.calls[0][0], expected), "denoise < 1 must start from the composite noised to t0"
    assert int(model.calls[0][4][0]) == int(timesteps[0]) < 999, "the first step must use the partial schedule's t0"


def test_dpm_scheduler_runs_seeded_and_differs_from_ddim():
    model, condition = TinyDenoiser(), make_condition()
    dpm = sample(model, condition, seed=4, steps=3, scheduler="dpm")
    dpm_again = sample(model, condition, seed=4, steps=3, scheduler="dpm")
    ddim = sample(model, condition, seed=4, steps=3, scheduler="ddim")
    assert torch.isfinite(dpm).all(), "DPM produced NaN or inf"
    assert torch.equal(dpm, dpm_again), "DPM with the same seed is not reproducible (its step noise must be seeded)"
    assert not torch.allclose(dpm, ddim), "the dpm option gave DDIM's result: it is not used"


def test_schedule_is_cogvideox_v_prediction_zero_terminal_snr_trailing():
    scheduler = make_scheduler("ddim", snr_shift_scale=1.0)
    assert scheduler.config.prediction_type == "v_prediction"
    assert float(scheduler.alphas_cumprod[-1]) == 0.0, "zero terminal SNR: the last timestep must be pure noise"
    scheduler.set_timesteps(50)
    assert int(scheduler.timesteps[0]) == 999 and int(scheduler.timesteps[-1]) == 19, "timesteps must be trailing"


def test_snr_shift_comes_from_the_model_config():
    model, condition = TinyDenoiser(), make_condition()
    plain = sample(model, condition, steps=2)
    model.config = type("Config", (), {"scheduler": {"snr_shift_scale": 1.0}, "patch_size_t": None})()
    shifted = sample(model, condition, steps=2)
    overridden = sample(model, condition, steps=2, snr_shift_scale=3.0)
    assert not torch.allclose(plain, shifted), "the model config's snr_shift_scale 1.0 was ignored"
    assert torch.equal(plain, overridden), "snr_shift_scale=3.0 must override the model config"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(scheduler="euler"), "Unknown scheduler"),
        (dict(steps=0), "steps must be"),
        (dict(denoise=1.5), "denoise must be"),
        (dict(guidance=-1.0), "guidance must be"),
    ],
)
def test_bad_sampler_settings_raise_one_clear_error(kwargs, message):
    with pytest.raises(HarmoVidError, match=message):
        sample(TinyDenoiser(), make_condition(), **kwargs)


def test_bench_diffusion_reports_speed_memory_seams_and_planning(tmp_path, capsys, monkeypatch):
    import json

    from comfy_harmovid.bench import diffusion
    from comfy_harmovid.cli import build_parser

    # Measure in this process: the fresh-subprocess launch is the one part not exercised (it costs an import).
    monkeypatch.setattr(diffusion, "_measure_in_subprocess", diffusion.measure)
    output = tmp_path / "bench.json"
    args = build_parser().parse_args(
        ["bench", "diffusion", "--configs", "tiny", "--frames", "9", "--size", "16x16", "--steps", "1",
         "--window", "2", "--overlap", "1", "--threads", "0", "--json", str(output)]
    )
    assert args.func(args) == 0
    results = json.loads(output.read_text())
    speed = results["speed"]
    assert [row.get("error") for row in speed] == [None, None], f"a measuring subprocess failed: {speed}"
    assert [row["windows"] for row in speed] == [1, 2], f"expected one run without and one with the tiler: {speed}"
    assert all(row["seconds_per_step"] > 0 and row["peak_rss_mib"] > 0 for row in speed), speed
    assert {row["weighting"] for row in results["seams"]} >= {"flat", "pyramid", "overlap-linear"}
    planning = {row["layout"]: row for row in results["planning"]}
    assert 1.6e9 < planning["cogvideox-2b"]["parameters"] < 1.8e9, f"2B parameter count off: {planning}"
    assert planning["cogvideox-5b"]["tflops_per_pass"] > planning["cogvideox-2b"]["tflops_per_pass"] > 0
    assert "Seams" in capsys.readouterr().out, "the bench must print its tables"

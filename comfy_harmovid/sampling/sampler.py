"""The denoising loop: seeded noise, CogVideoX's schedule, classifier-free guidance, optional MultiDiffusion.

One step, for the latent ``x_t`` ``[B, C, T', h, w]``:

1. velocity ``v = v_uncond + guidance * (v_cond - v_uncond)``, the unconditional pass fed the model's
   own ``null_condition`` (skipped when guidance is 1); over MultiDiffusion windows when asked;
2. the scheduler step ``x_t -> x_{t-1}`` on the whole latent (DPM also carries the previous x0).

The loop state stays float32 whatever the model's dtype; the model sees its own dtype.
"""

from dataclasses import dataclass, replace
from typing import Optional

import torch
from torch import nn

from ..errors import HarmoVidError
from ..model import null_condition
from ..progress import ProgressCallback, report, scaled
from .condition import HarmoVidCondition
from .multidiffusion import MultiDiffusion, Window
from .schedule import denoise_timesteps, make_scheduler


@dataclass(frozen=True)
class DiffusionModel:
    """What HARMOVID_MODEL carries between nodes: the transformer, and MultiDiffusion settings if tiled.

    The Tiler returns a new one sharing the same transformer, so the Loader's output is never changed.
    """

    transformer: nn.Module
    multidiffusion: Optional[MultiDiffusion] = None

    def with_multidiffusion(self, multidiffusion: Optional[MultiDiffusion]) -> "DiffusionModel":
        return replace(self, multidiffusion=multidiffusion)


def guided_velocity(
    transformer: nn.Module, latents: torch.Tensor, condition: HarmoVidCondition, timestep: torch.Tensor, guidance: float
) -> torch.Tensor:
    """The model's v-prediction for ``latents`` at ``timestep``, with classifier-free guidance (float32)."""
    dtype = _model_dtype(transformer)
    noisy = latents.to(dtype)
    timesteps = timestep.to(latents.device).expand(latents.shape[0])
    inputs = (condition.composite_latent.to(dtype), condition.background_latent.to(dtype), condition.mask.to(dtype))
    velocity = transformer(noisy, *inputs, timesteps).float()
    if guidance == 1.0:
        return velocity
    velocity_uncond = transformer(noisy, *null_condition(*inputs), timesteps).float()
    return velocity_uncond + guidance * (velocity - velocity_uncond)


@torch.no_grad()
def sample(
    transformer: nn.Module,
    condition: HarmoVidCondition,
    *,
    seed: int = 0,
    steps: int = 50,
    guidance: float = 6.0,
    denoise: float = 1.0,
    scheduler: str = "ddim",
    multidiffusion: Optional[MultiDiffusion] = None,
    snr_shift_scale: Optional[float] = None,
    progress: ProgressCallback = None,
) -> torch.Tensor:
    """Denoise a harmonized latent ``[B, C, T', h, w]`` on the condition's device.

    ``denoise`` < 1 starts from the composite latent noised to the first timestep used (like img2img;
    0 returns the composite latent). The schedule is the model config's ``scheduler`` (its base
    CogVideoX's) over CogVideoX defaults; ``snr_shift_scale`` overrides its SNR shift (2B: 3.0, 5B: 1.0).
    ``progress(done, total)`` ticks once per window per step.
    """
    if guidance < 0:
        raise HarmoVidError(f"guidance must be >= 0, got {guidance}. CogVideoX uses 6; 1 turns guidance off.")
    overrides = {} if snr_shift_scale is None else {"snr_shift_scale": float(snr_shift_scale)}
    solver = make_scheduler(scheduler, _config_value(transformer, "scheduler", None), **overrides)
    timesteps = denoise_timesteps(solver, steps, denoise)
    composite = condition.composite_latent.float()
    if len(timesteps) == 0:
        return composite.clone()

    # Seeded start from a CPU generator (CPU and GPU runs start alike): pure noise, or the noised composite.
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn(tuple(composite.shape), generator=generator, dtype=torch.float32).to(composite.device)
    latents = noise if denoise >= 1.0 else solver.add_noise(composite, noise, timesteps[:1])
    del noise

    windows = _layout(transformer, multidiffusion, composite.shape)
    total = len(timesteps) * len(windows)
    previous_x0 = None  # DPM-Solver++ (2M) carries the last step's predicted x0
    for index, timestep in enumerate(timesteps):
        window_progress = scaled(progress, index * len(windows), total)
        if multidiffusion is None:
            velocity = guided_velocity(transformer, latents, condition, timestep, guidance)
            report(window_progress, 1, total)
        else:

            def predict(window: Window) -> torch.Tensor:
                return guided_velocity(transformer, latents[window.index], condition.crop(window), timestep, guidance)

            velocity = multidiffusion.blend(windows, latents, predict, window_progress)
        if scheduler == "dpm":
            timestep_back = timesteps[index - 1] if index > 0 else None
            latents, previous_x0 = solver.step(
                velocity, previous_x0, timestep, timestep_back, latents, generator=generator, return_dict=False
            )
        else:
            latents = solver.step(velocity, timestep, latents, return_dict=False)[0]
    return latents


def _model_dtype(transformer: nn.Module) -> torch.dtype:
    parameter = next(transformer.parameters(), None)
    return parameter.dtype if parameter is not None else torch.float32


def _config_value(transformer: nn.Module, name: str, default):
    value = getattr(getattr(transformer, "config", None), name, None)
    return default if value is None else value


def _layout(transformer: nn.Module, multidiffusion: Optional[MultiDiffusion], shape) -> list:
    """The MultiDiffusion windows for a latent of ``shape``, respecting the model's patch sizes."""
    if multidiffusion is None:
        return [None]
    frame_multiple = int(_config_value(transformer, "patch_size_t", 1))
    tile_multiple = int(_config_value(transformer, "patch_size", 1))
    return multidiffusion.layout(shape, frame_multiple, tile_multiple)

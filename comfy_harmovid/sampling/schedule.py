"""CogVideoX's noise schedule and its two solvers, set up the one way HarmoVid is trained and sampled.

The schedule is CogVideoX's: v-prediction, the SNR shift of SD3 (``snr_shift_scale``: 3.0 for the 2B
layout, 1.0 for 5B and 1.5), betas rescaled to zero terminal SNR (so the last timestep is pure noise),
and "trailing" timestep spacing. The trainer uses the same ``make_scheduler`` for ``add_noise`` and
``get_velocity`` (``make_scheduler(name, model.config.scheduler)``), so sampling and training cannot
drift apart.
"""

from typing import Mapping, Optional

import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

from ..errors import HarmoVidError

SCHEDULERS = {"ddim": CogVideoXDDIMScheduler, "dpm": CogVideoXDPMScheduler}

# CogVideoX's scheduler_config.json (2B; 5B and 1.5 use snr_shift_scale 1.0).
COGVIDEOX_SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=True,
    steps_offset=0,
    prediction_type="v_prediction",
    timestep_spacing="trailing",
    rescale_betas_zero_snr=True,
    snr_shift_scale=3.0,
)


def make_scheduler(name: str = "ddim", config: Optional[Mapping] = None, **overrides):
    """A fresh CogVideoX DDIM (deterministic) or DPM-Solver++ (stochastic, seeded) scheduler.

    ``config``: the base model's scheduler config (``HarmoVidConfig.scheduler``); its known keys replace
    CogVideoX's defaults. ``overrides`` (e.g. ``snr_shift_scale=1.0``) win over both.
    """
    if name not in SCHEDULERS:
        raise HarmoVidError(f"Unknown scheduler '{name}'. Choose one of: {', '.join(SCHEDULERS)}.")
    settings = dict(COGVIDEOX_SCHEDULE)
    settings.update({key: value for key, value in (config or {}).items() if key in COGVIDEOX_SCHEDULE})
    settings.update(overrides)
    return SCHEDULERS[name](**settings)


def denoise_timesteps(scheduler, steps: int, denoise: float) -> torch.Tensor:
    """The timesteps a run with ``steps`` steps and strength ``denoise`` visits, noisiest first.

    Like img2img: the schedule of ``steps`` steps is laid out, and only its last
    ``round(steps * denoise)`` steps are run (none for ``denoise`` 0, all for 1).
    """
    if not isinstance(steps, int) or not 1 <= steps <= scheduler.config.num_train_timesteps:
        raise HarmoVidError(
            f"steps must be a whole number from 1 to {scheduler.config.num_train_timesteps}, got {steps!r}. "
            "CogVideoX uses 50; 20-30 is a fast preview."
        )
    if not 0.0 <= float(denoise) <= 1.0:
        raise HarmoVidError(f"denoise must be between 0 and 1, got {denoise}. Use 1 to start from pure noise.")
    scheduler.set_timesteps(steps)
    steps_run = round(steps * float(denoise))
    return scheduler.timesteps[steps - steps_run :]

"""The training objective (paper eq. 2 and 5): v-prediction under CogVideoX's schedule, with the
unconditional input of classifier-free guidance (``model.null_condition``) swapped in at random.

The noise schedule is the sampler's own (``make_scheduler("ddim", config.scheduler)``): ``add_noise``
makes ``z_t`` and ``get_velocity`` the v target, so training and sampling cannot drift apart.
"""

import torch
from torch.nn import functional as F

from ..errors import HarmoVidError
from ..model import null_condition


def harmovid_loss(
    transformer,
    scheduler,
    target_latent: torch.Tensor,
    composite_latent: torch.Tensor,
    background_latent: torch.Tensor,
    mask: torch.Tensor,
    *,
    generator: torch.Generator,
    uncond_probability: float = 0.1,
) -> torch.Tensor:
    """Mean squared error between the model's v and the true v for one batch.

    Latents ``[B, C, T', h, w]``, ``mask`` ``[B, 1, T, H, W]``. ``generator`` (CPU) draws timesteps,
    noise and the condition dropout, so a step is reproducible from its seed alone.
    """
    if not 0.0 <= uncond_probability <= 1.0:
        raise HarmoVidError(f"uncond_probability must be between 0 and 1, got {uncond_probability}.")
    batch, device = target_latent.shape[0], target_latent.device
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)
    noise = torch.randn(tuple(target_latent.shape), generator=generator).to(device, target_latent.dtype)
    drop = (torch.rand(batch, generator=generator) < uncond_probability).to(device)
    timesteps = timesteps.to(device)

    noisy = scheduler.add_noise(target_latent, noise, timesteps)
    velocity = scheduler.get_velocity(target_latent, noise, timesteps)
    keep = (~drop).to(target_latent.dtype).view(batch, 1, 1, 1, 1)
    nulls = null_condition(composite_latent, background_latent, mask)
    composite_latent, background_latent, mask = (
        value * keep + null * (1 - keep) for value, null in zip((composite_latent, background_latent, mask), nulls)
    )
    prediction = transformer(noisy, composite_latent, background_latent, mask, timesteps)
    return F.mse_loss(prediction.float(), velocity.float())

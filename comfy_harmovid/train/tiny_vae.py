"""A tiny CogVideoX VAE fitted on your clips, for CPU smoke runs only.

No pretrained VAE is available offline, and the real CogVideoX VAE is far too slow for a CPU run, so
the ``tiny`` training config first fits this small ``AutoencoderKLCogVideoX`` (same architecture,
8x spatial and 4x temporal compression, 4 latent channels) on clip windows from the manifest. Its
``scaling_factor`` is set so the latents have unit standard deviation, as CogVideoX's own is. Real
runs use CogVideoX's VAE (``vae:`` pointing at a diffusers CogVideoX folder).
"""

import random
from typing import Callable, Optional

import torch
from diffusers import AutoencoderKLCogVideoX

from ..footage import Manifest
from ..model import HarmoVidVAE
from .data import ClipReader

TINY_VAE_CONFIG = dict(
    block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8, latent_channels=4,
    sample_height=64, sample_width=64,
)


def fit_tiny_vae(manifest: Manifest, *, frames: int = 9, height: int = 64, width: int = 64, windows: int = 32,
                 steps: int = 300, batch_size: int = 2, learning_rate: float = 2e-3, kl_weight: float = 1e-6,
                 seed: int = 0, log: Optional[Callable[[dict], None]] = None) -> HarmoVidVAE:
    """Fit the tiny VAE on ``windows`` random clip windows (portraits and backgrounds) by L1 reconstruction."""
    rng = random.Random(seed)
    reader = ClipReader(frames, height, width)
    clips = [rng.choice(manifest.clips) for _ in range(windows)]
    data = torch.stack([reader.read(entry, reader.random_start(entry.path, rng))[0] for entry in clips])
    data = data.permute(0, 4, 1, 2, 3) * 2 - 1  # [N, 3, T, H, W] in -1..1, diffusers' layout

    torch.manual_seed(seed)
    vae = AutoencoderKLCogVideoX(**TINY_VAE_CONFIG).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        batch = data[torch.randint(0, len(data), (batch_size,), generator=generator)]
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.sample(generator=None)).sample
        l1 = (reconstruction - batch).abs().mean()
        loss = l1 + kl_weight * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if log is not None and (step % 25 == 0 or step == steps):
            log({"step": step, "l1": float(l1.detach())})
    vae.eval()
    with torch.no_grad():
        std = torch.cat([vae.encode(data[i : i + 4]).latent_dist.mean for i in range(0, len(data), 4)]).std()
    vae.register_to_config(scaling_factor=float(1.0 / std))
    return HarmoVidVAE(vae)

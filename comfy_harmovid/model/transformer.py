"""The HarmoVid transformer: diffusers' CogVideoX transformer with the harmonization conditioning.

Paper eq. 5: the network predicts from the noisy target latent z_T, the composite latent z_I, the
background latent z_B and the foreground mask V^M. Here all four are stacked along channels (layout
in ``config.py``) and fed to an unchanged ``CogVideoXTransformer3DModel`` whose patch embedding is
widened to take them. There is no text encoder at run time: the checkpoint carries one text embedding
``[1, L, text_embed_dim]`` (the null prompt's T5 embedding for converted checkpoints, trainable
afterwards) that every call uses.
"""

from typing import Optional, Tuple

import torch
from diffusers import CogVideoXTransformer3DModel
from torch import nn

from ..errors import HarmoVidError
from .config import HarmoVidConfig
from .layout import fold_mask, pad_by_repeating, padded_size
from .positions import rotary_embedding

# CogVideoX 1.5 I2V conditions on an "ofs" value; its pipeline always passes 2.0.
OFS_VALUE = 2.0


def null_condition(
    composite_latent: torch.Tensor, background_latent: torch.Tensor, mask: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The unconditional input for classifier-free guidance: composite, background and mask all zero.

    The one definition shared by sampling (guidance) and training (condition dropout). Zeros are not
    the latent of any real clip (a black frame encodes to non-zero latents), so "no condition" is a
    distinct input; a model converted from CogVideoX text-to-video gives exactly the base model's
    output on it, because the widened input weights meet zeros.
    """
    return torch.zeros_like(composite_latent), torch.zeros_like(background_latent), torch.zeros_like(mask)


class HarmoVidTransformer(nn.Module):
    """Predicts v for the noisy harmonized latent given composite, background and mask.

    Args:
        config: the model's shape and input layout.
    """

    def __init__(self, config: HarmoVidConfig):
        super().__init__()
        self.config = config
        self.transformer = CogVideoXTransformer3DModel(**config.diffusers_kwargs())
        # The text tokens every call attends to: [1, L, text_embed_dim].
        self.text_embedding = nn.Parameter(torch.zeros(1, config.max_text_seq_length, config.text_embed_dim))
        self._rope_key = None
        self._rope = None

    @property
    def dtype(self) -> torch.dtype:
        return self.text_embedding.dtype

    @property
    def device(self) -> torch.device:
        return self.text_embedding.device

    def forward(
        self,
        noisy_latent: torch.Tensor,
        composite_latent: torch.Tensor,
        background_latent: torch.Tensor,
        mask: torch.Tensor,
        timestep: torch.Tensor,
    ) -> torch.Tensor:
        """v-prediction ``[B, C, T', h, w]`` (in the dtype of ``noisy_latent``).

        Args:
            noisy_latent, composite_latent, background_latent: ``[B, C, T', h, w]``, C = config.out_channels.
            mask: ``[B, 1, T, H, W]`` (or ``[1, ...]`` for all) foreground alpha at pixel resolution, 0..1,
                T and H, W at most the latents' ``4 (T' - 1) + 1`` and ``8h, 8w`` (shorter ones are padded as the VAE pads).
            timestep: ``[B]`` (or a scalar) diffusion timesteps.
        """
        config = self.config
        self._check_latents(noisy_latent, composite_latent, background_latent)
        batch, _, latent_frames, height, width = noisy_latent.shape
        mask_latent = fold_mask(
            mask.to(noisy_latent.device, noisy_latent.dtype), latent_frames, height, width,
            config.temporal_compression_ratio, config.spatial_compression_ratio,
        )  # [B, M, T', h, w]
        if mask_latent.shape[0] == 1 and batch > 1:
            mask_latent = mask_latent.expand(batch, -1, -1, -1, -1)  # one mask for the whole batch
        if mask_latent.shape[0] != batch:
            raise HarmoVidError(
                f"mask has batch {mask_latent.shape[0]} but the latents have batch {batch}; pass one mask per "
                "clip, or a single mask for all."
            )
        timestep = self._timestep(timestep, batch, noisy_latent.device)

        x = torch.cat([noisy_latent, composite_latent, background_latent, mask_latent], dim=1)
        x = x.to(self.dtype).permute(0, 2, 1, 3, 4)  # [B, T', 3C + M, h, w]: diffusers' CogVideoX layout

        # Patchability: h and w up to a multiple of patch_size (replicated edges, cropped after); in the 1.5
        # layout T' up to a multiple of patch_size_t by repeating the first latent frame in front (as
        # diffusers' CogVideoX 1.5 image-to-video pipeline does), dropped after.
        p, p_t = config.patch_size, config.patch_size_t
        x = pad_by_repeating(x, 3, padded_size(height, p))
        x = pad_by_repeating(x, 4, padded_size(width, p))
        front = 0
        if p_t is not None and latent_frames % p_t:
            front = p_t - latent_frames % p_t
            x = torch.cat([x[:, :1].expand(-1, front, -1, -1, -1), x], dim=1)  # [B, T'', 3C + M, h', w']

        if config.use_learned_positional_embeddings:
            self._check_learned_grid(x.shape[1], x.shape[3], x.shape[4])
        rope = None
        if config.use_rotary_positional_embeddings:
            rope = self._rotary_embedding(x.shape[1], x.shape[3], x.shape[4], x.device)
        ofs = None
        if config.ofs_embed_dim:
            ofs = torch.full((batch,), OFS_VALUE, device=x.device, dtype=x.dtype)
        text = self.text_embedding.expand(batch, -1, -1)  # [B, L, text_embed_dim]

        v = self.transformer(
            hidden_states=x,
            encoder_hidden_states=text,
            timestep=timestep,
            ofs=ofs,
            image_rotary_emb=rope,
            return_dict=False,
        )[0]  # [B, T'', C, h', w']
        v = v[:, front:, :, :height, :width]
        return v.permute(0, 2, 1, 3, 4).to(noisy_latent.dtype)  # [B, C, T', h, w]

    def _rotary_embedding(self, frames: int, height: int, width: int, device: torch.device):
        key = (frames, height, width, str(device))
        if key != self._rope_key:
            self._rope = rotary_embedding(self.config, frames, height, width, device=device)
            self._rope_key = key
        return self._rope

    def _check_learned_grid(self, frames: int, height: int, width: int) -> None:
        """Learned position tables (CogVideoX-5b-I2V) exist for the training grid only."""
        c = self.config
        expected = ((c.sample_frames - 1) // c.temporal_compression_ratio + 1, c.sample_height, c.sample_width)
        if (frames, height, width) != expected:
            s = c.spatial_compression_ratio
            raise HarmoVidError(
                f"This model has learned positional embeddings (converted from an image-to-video CogVideoX) and "
                f"runs only on clips of {c.sample_frames} frames at {c.sample_width * s}x{c.sample_height * s}; "
                f"got latents for {(frames - 1) * c.temporal_compression_ratio + 1} frames at {width * s}x{height * s}. "
                "Resize the clip, and use MultiDiffusion windows of exactly that length."
            )

    def _check_latents(self, *latents: torch.Tensor) -> None:
        names = ("noisy_latent", "composite_latent", "background_latent")
        for name, latent in zip(names, latents):
            if not isinstance(latent, torch.Tensor) or latent.ndim != 5:
                shape = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
                raise HarmoVidError(f"{name}: expected a latent [B, C, T', h, w], got {shape}.")
            if latent.shape[1] != self.config.out_channels:
                raise HarmoVidError(
                    f"{name} has {latent.shape[1]} channels but this model takes {self.config.out_channels}. "
                    "Encode with the VAE that belongs to the model (its latent_channels must match)."
                )
            if latent.shape != latents[0].shape:
                raise HarmoVidError(
                    f"{name} is {tuple(latent.shape)} but noisy_latent is {tuple(latents[0].shape)}; "
                    "all latents must come from clips of the same length and size."
                )

    @staticmethod
    def _timestep(timestep, batch: int, device: torch.device) -> torch.Tensor:
        timestep = torch.as_tensor(timestep, device=device)
        if timestep.ndim == 0:
            timestep = timestep.expand(batch)
        if timestep.shape != (batch,):
            raise HarmoVidError(f"timestep: expected shape [{batch}] or a scalar, got {tuple(timestep.shape)}.")
        return timestep

    def extra_repr(self) -> str:
        c = self.config
        return f"layout={c.layout_name}, layers={c.num_layers}, inner_dim={c.inner_dim}, in_channels={c.in_channels}"

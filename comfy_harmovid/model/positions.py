"""Rotary position embeddings for any clip size, exactly as diffusers' CogVideoX pipelines make them.

CogVideoX does not compute RoPE inside the transformer: its pipeline builds it per call
(``CogVideoXPipeline._prepare_rotary_positional_embeddings``) and passes it in. A model run without it,
or with the wrong grid, still produces output, just wrong output, so this module reproduces the
pipeline for both layouts (tested against it):

- 1.0 (``patch_size_t`` None): the token grid is mapped into the training grid
  (``sample_height x sample_width`` / patch) by a centred resize-crop, positions are ``linspace`` over it.
- 1.5 (``patch_size_t`` = 2): integer positions ("slice" grid) from 0; one temporal position per pair
  of latent frames. diffusers slices a table of the training size, so it fails above that size;
  here the table grows to the requested grid, giving the same values where diffusers works.
"""

import math
from typing import Optional, Tuple

import torch
from diffusers.models.embeddings import get_3d_rotary_pos_embed

from .config import HarmoVidConfig


def resize_crop_region_for_grid(grid: Tuple[int, int], base_width: int, base_height: int):
    """The centred region of the ``base_height x base_width`` training grid a ``grid`` of tokens maps onto.

    Same arithmetic as diffusers' ``get_resize_crop_region_for_grid`` in pipeline_cogvideox.py.
    """
    height, width = grid
    if height / width > base_height / base_width:
        resize_height, resize_width = base_height, int(round(base_height / height * width))
    else:
        resize_width, resize_height = base_width, int(round(base_width / width * height))
    top = int(round((base_height - resize_height) / 2.0))
    left = int(round((base_width - resize_width) / 2.0))
    return (top, left), (top + resize_height, left + resize_width)


def rotary_embedding(
    config: HarmoVidConfig,
    latent_frames: int,
    latent_height: int,
    latent_width: int,
    device: Optional[torch.device] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)``, each ``[tokens, attention_head_dim]``, for latents ``[.., T', .., h, w]``.

    ``latent_frames`` is the count the transformer sees (already padded to a multiple of
    ``patch_size_t`` in the 1.5 layout); tokens = T'/p_t * h/p * w/p.
    """
    p = config.patch_size
    grid_height, grid_width = latent_height // p, latent_width // p
    base_height, base_width = config.sample_height // p, config.sample_width // p
    if config.patch_size_t is None:  # CogVideoX 1.0
        crops = resize_crop_region_for_grid((grid_height, grid_width), base_width, base_height)
        return get_3d_rotary_pos_embed(
            embed_dim=config.attention_head_dim,
            crops_coords=crops,
            grid_size=(grid_height, grid_width),
            temporal_size=latent_frames,
            device=device,
        )
    token_frames = math.ceil(latent_frames / config.patch_size_t)  # CogVideoX 1.5
    return get_3d_rotary_pos_embed(
        embed_dim=config.attention_head_dim,
        crops_coords=None,
        grid_size=(grid_height, grid_width),
        temporal_size=token_frames,
        grid_type="slice",
        max_size=(max(base_height, grid_height), max(base_width, grid_width)),
        device=device,
    )

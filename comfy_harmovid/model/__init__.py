"""The HarmoVid model: transformer on diffusers' CogVideoX blocks, VAE, checkpoints and conversion.

    from comfy_harmovid.model import load_transformer, load_vae, null_condition
"""

from .checkpoint import load_transformer, load_vae, save_transformer, save_vae
from .config import INPUT_LAYOUT, HarmoVidConfig
from .cost import count_parameters, flops_per_step, token_count
from .layout import fold_mask, latent_frame_count, padded_frame_count, pixel_frame_count
from .positions import rotary_embedding
from .transformer import HarmoVidTransformer, null_condition
from .vae import HarmoVidVAE

__all__ = [
    "INPUT_LAYOUT",
    "HarmoVidConfig",
    "HarmoVidTransformer",
    "HarmoVidVAE",
    "count_parameters",
    "flops_per_step",
    "fold_mask",
    "latent_frame_count",
    "load_transformer",
    "load_vae",
    "null_condition",
    "padded_frame_count",
    "pixel_frame_count",
    "rotary_embedding",
    "save_transformer",
    "save_vae",
    "token_count",
]

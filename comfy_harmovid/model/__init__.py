"""The HarmoVid model: transformer on diffusers' CogVideoX blocks, VAE, checkpoints and conversion."""

from .config import INPUT_LAYOUT, HarmoVidConfig
from .layout import fold_mask, latent_frame_count, padded_frame_count, pixel_frame_count
from .positions import rotary_embedding
from .transformer import HarmoVidTransformer, null_condition

__all__ = [
    "INPUT_LAYOUT",
    "HarmoVidConfig",
    "HarmoVidTransformer",
    "fold_mask",
    "latent_frame_count",
    "null_condition",
    "padded_frame_count",
    "pixel_frame_count",
    "rotary_embedding",
]

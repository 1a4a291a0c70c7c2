"""Model size and compute, for planning GPU runs: parameter count and matmul FLOPs per forward pass."""

import math

import torch
from accelerate import init_empty_weights

from .config import HarmoVidConfig
from .layout import latent_frame_count, padded_size


def count_parameters(config: HarmoVidConfig) -> int:
    """Number of stored weights of the model (its checkpoint's tensor elements, text embedding included)."""
    from .transformer import HarmoVidTransformer

    with init_empty_weights(include_buffers=False):  # no memory: weights on the meta device
        model = HarmoVidTransformer(config)
    return sum(tensor.numel() for tensor in model.state_dict().values())


def token_count(config: HarmoVidConfig, frames: int, height: int, width: int) -> int:
    """Video tokens the transformer attends over for a ``frames x height x width`` clip (after padding)."""
    latent_frames = latent_frame_count(frames, config.temporal_compression_ratio)
    if config.patch_size_t is not None:
        latent_frames = math.ceil(latent_frames / config.patch_size_t)
    cell = config.spatial_compression_ratio * config.patch_size  # pixels per token side
    return latent_frames * (padded_size(height, cell) // cell) * (padded_size(width, cell) // cell)


def flops_per_step(config: HarmoVidConfig, frames: int, height: int, width: int) -> int:
    """Matmul FLOPs (2 per multiply-add) of one transformer forward pass on a ``frames x H x W`` clip.

    One denoising step costs this once without guidance and twice with classifier-free guidance.
    Counted: every linear layer and convolution, and attention's two ``S x S`` products; element-wise
    work (norms, RoPE, activations) is left out. Checked against torch's FlopCounterMode in the tests.
    """
    d, te = config.inner_dim, config.time_embed_dim
    tokens = token_count(config, frames, height, width)
    sequence = tokens + config.max_text_seq_length
    patch_volume = config.patch_size**2 * (config.patch_size_t or 1)

    flops = 2 * tokens * config.in_channels * patch_volume * d  # patch embedding
    flops += 2 * config.max_text_seq_length * config.text_embed_dim * d  # text projection
    flops += 2 * (d * te + te * te)  # timestep embedding MLP
    if config.ofs_embed_dim:
        flops += 2 * 2 * config.ofs_embed_dim**2
    per_block = (
        2 * 2 * te * 6 * d  # two adaptive layer-norm modulations
        + 2 * sequence * d * d * 4  # q, k, v, out projections
        + 2 * 2 * sequence * sequence * d  # q k^T and attention x v
        + 2 * sequence * d * 4 * d * 2  # feed-forward d -> 4d -> d
    )
    flops += config.num_layers * per_block
    flops += 2 * te * 2 * d  # output modulation
    flops += 2 * tokens * d * patch_volume * config.out_channels  # output projection
    return int(flops)

"""``HarmoVidVAE``: diffusers' CogVideoX VAE for clips of any length and size, in chunks and tiles.

Encoding and decoding run the diffusers encoder/decoder modules exactly as diffusers' ``_encode`` and
``_decode`` do over time (batches of 8 frames / 2 latent frames, the causal convolution cache carried
from one batch to the next), so an untiled run gives diffusers' own result. Large frames are split
into overlapping spatial tiles; each tile runs through all its time batches with its own cache and
is cross-faded into the output with linear ramps over the overlap. Tiles come first and time second
(diffusers loops the same way), so memory holds one tile's time batch plus the output, never a second
copy of the clip: decoding writes straight into the ``[T, H, W, 3]`` result.

Latent scale: ``encode`` returns ``mean * scaling_factor`` and ``decode`` divides by it, for every
CogVideoX VAE (the 1.5 VAE's ``invert_scale_latents`` flag only concerns diffusers' 1.5 image-to-video
pipeline and is not used here).

Pad-and-trim: see ``layout.py``. ``encode`` pads the clip (last frame repeated up to ``4k + 1``
frames, last row/column repeated up to a multiple of ``pad_multiple``) without copying it;
``decode(..., frame_count, height, width)`` trims back.
"""

from typing import List, Optional, Sequence, Tuple

import torch
from diffusers import AutoencoderKLCogVideoX
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch import nn

from ..errors import HarmoVidError
from ..progress import ProgressCallback, report
from ..validate import check_frames
from .layout import padded_frame_count, padded_size, pixel_frame_count

# diffusers' AutoencoderKLCogVideoX: frames per encoder call and latent frames per decoder call.
ENCODE_FRAME_BATCH = 8
DECODE_LATENT_BATCH = 2


def time_batches(count: int, batch: int) -> List[Tuple[int, int]]:
    """diffusers' split of ``count`` frames into batches: the remainder joins the first batch."""
    remainder = count % batch
    batches = max(count // batch, 1)
    spans = []
    for i in range(batches):
        start = batch * i + (0 if i == 0 else remainder)
        end = min(batch * (i + 1) + remainder, count)
        spans.append((start, end))
    return spans


def tile_spans(length: int, tile: int, overlap: int) -> List[Tuple[int, int]]:
    """Overlapping ``[start, end)`` spans of at most ``tile`` covering ``length``; the last is flush with the end."""
    if length <= tile:
        return [(0, length)]
    stride = max(tile - overlap, 1)
    starts = list(range(0, length - tile, stride)) + [length - tile]
    return [(start, start + tile) for start in starts]


def blend_ramp(span: Tuple[int, int], spans: Sequence[Tuple[int, int]]) -> torch.Tensor:
    """1D weights for ``span``: linear ramps where it overlaps its neighbours, 1 elsewhere (never 0)."""
    start, end = span
    weight = torch.ones(end - start)
    index = spans.index(span)
    if index > 0:  # overlap with the previous span: ramp up
        overlap = spans[index - 1][1] - start
        if overlap > 0:
            weight[:overlap] = torch.arange(1, overlap + 1) / (overlap + 1)
    if index < len(spans) - 1:  # overlap with the next span: ramp down
        overlap = end - spans[index + 1][0]
        if overlap > 0:
            weight[-overlap:] = torch.minimum(weight[-overlap:], torch.arange(overlap, 0, -1) / (overlap + 1))
    return weight


class HarmoVidVAE(nn.Module):
    """Encode IMAGE clips ``[T, H, W, 3]`` to latents ``[1, C, T', h, w]`` and back.

    Args:
        vae: a diffusers ``AutoencoderKLCogVideoX``.
        tile_size: ``(height, width)`` in pixels of a spatial tile; frames no larger run untiled.
            Default: half the VAE's sample size, as diffusers' ``enable_tiling`` (240x360 for CogVideoX).
        tile_overlap: ``(height, width)`` overlap in pixels. Default: 1/6 and 1/5 of the tile (diffusers' factors).
        pad_multiple: frame sizes are padded to a multiple of this (16 = 8x8 latent cells x patch 2).
    """

    def __init__(
        self,
        vae: AutoencoderKLCogVideoX,
        tile_size: Optional[Tuple[int, int]] = None,
        tile_overlap: Optional[Tuple[int, int]] = None,
        pad_multiple: int = 16,
    ):
        super().__init__()
        self.vae = vae
        s = self.spatial_compression
        if tile_size is None:
            tile_size = (vae.config.sample_height // 2, vae.config.sample_width // 2)
        self.tile_size = (padded_size(max(tile_size[0], s), s), padded_size(max(tile_size[1], s), s))
        if tile_overlap is None:
            tile_overlap = (self.tile_size[0] // 6, self.tile_size[1] // 5)
        self.tile_overlap = (tile_overlap[0] // s * s, tile_overlap[1] // s * s)
        self.pad_multiple = padded_size(pad_multiple, s)
        self.tiling = True

    # -- sizes -----------------------------------------------------------------------------------
    @property
    def config(self):
        return self.vae.config

    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def temporal_compression(self) -> int:
        return int(self.vae.config.temporal_compression_ratio)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    def padded_shape(self, frames: int, height: int, width: int) -> Tuple[int, int, int]:
        """The ``(T, H, W)`` a clip is padded to before encoding."""
        return (
            padded_frame_count(frames, self.temporal_compression),
            padded_size(height, self.pad_multiple),
            padded_size(width, self.pad_multiple),
        )

    def latent_shape(self, frames: int, height: int, width: int) -> Tuple[int, int, int, int, int]:
        """``[1, C, T', h, w]`` of the latent of a ``frames x height x width`` clip."""
        t, h, w = self.padded_shape(frames, height, width)
        s = self.spatial_compression
        return (1, self.latent_channels, (t - 1) // self.temporal_compression + 1, h // s, w // s)

    def _tiles(self, latent_height: int, latent_width: int):
        s = self.spatial_compression
        if not self.tiling:
            return [((0, latent_height), (0, latent_width))]
        rows = tile_spans(latent_height, self.tile_size[0] // s, self.tile_overlap[0] // s)
        cols = tile_spans(latent_width, self.tile_size[1] // s, self.tile_overlap[1] // s)
        return [(r, c) for r in rows for c in cols]

    def _tile_weight(self, rows, cols, all_rows, all_cols) -> torch.Tensor:
        return blend_ramp(rows, all_rows)[:, None] * blend_ramp(cols, all_cols)[None, :]  # [th, tw]

    # -- encode ----------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(
        self,
        frames: torch.Tensor,
        *,
        generator: Optional[torch.Generator] = None,
        progress: ProgressCallback = None,
    ) -> torch.Tensor:
        """Latent ``[1, C, T', h, w]`` (times ``scaling_factor``, float32, on the VAE's device).

        The posterior mean by default (deterministic); a sample from it when a ``generator`` is given.
        """
        frames = check_frames(frames)
        count, height, width = frames.shape[:3]
        t_pad, h_pad, w_pad = self.padded_shape(count, height, width)
        s = self.spatial_compression
        _, channels, latent_frames, latent_height, latent_width = self.latent_shape(count, height, width)
        # Pad by index (last frame / row / column repeated), so no padded copy of the clip is made.
        frame_index = torch.arange(t_pad).clamp(max=count - 1)
        row_index = torch.arange(h_pad).clamp(max=height - 1)
        col_index = torch.arange(w_pad).clamp(max=width - 1)

        tiles = self._tiles(latent_height, latent_width)
        all_rows = sorted({r for r, _ in tiles})
        all_cols = sorted({c for _, c in tiles})
        batches = time_batches(t_pad, ENCODE_FRAME_BATCH)
        moments = torch.zeros(1, 2 * channels, latent_frames, latent_height, latent_width, device=self.device)
        total_weight = torch.zeros(latent_height, latent_width, device=self.device)
        steps, done = len(tiles) * len(batches), 0
        for rows, cols in tiles:
            weight = self._tile_weight(rows, cols, all_rows, all_cols).to(self.device)
            rows_px = row_index[rows[0] * s : rows[1] * s]
            cols_px = col_index[cols[0] * s : cols[1] * s]
            cache, latent_start = None, 0
            for start, end in batches:
                chunk = frames[frame_index[start:end]][:, rows_px][:, :, cols_px]  # [f, th, tw, 3]
                x = chunk.to(self.device, self.dtype).permute(3, 0, 1, 2).unsqueeze(0) * 2 - 1  # [1, 3, f, th, tw]
                x, cache = self.vae.encoder(x, conv_cache=cache)  # [1, 2C, f', th/8, tw/8]
                if self.vae.quant_conv is not None:
                    x = self.vae.quant_conv(x)
                latent_end = latent_start + x.shape[2]
                moments[:, :, latent_start:latent_end, rows[0] : rows[1], cols[0] : cols[1]] += x.float() * weight
                latent_start = latent_end
                done += 1
                report(progress, done, steps)
            if latent_start != latent_frames:
                raise HarmoVidError(
                    f"The VAE made {latent_start} latent frames from {t_pad} frames, expected {latent_frames}; "
                    "its temporal_compression_ratio does not match its layers."
                )
            total_weight[rows[0] : rows[1], cols[0] : cols[1]] += weight
        posterior = DiagonalGaussianDistribution(moments / total_weight)
        latent = posterior.mode() if generator is None else posterior.sample(generator=generator)
        return latent * self.scaling_factor

    # -- decode ----------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(
        self,
        latent: torch.Tensor,
        frame_count: Optional[int] = None,
        height: Optional[int] = None,
        width: Optional[int] = None,
        *,
        output_device: torch.device = torch.device("cpu"),
        progress: ProgressCallback = None,
    ) -> torch.Tensor:
        """Frames ``[T, H, W, 3]`` float32 0..1 on ``output_device``, trimmed to ``frame_count x height x width``.

        ``latent``: ``[1, C, T', h, w]`` or ``[C, T', h, w]``, scaled as ``encode`` returns it. Without
        ``frame_count``/``height``/``width`` all ``4 (T' - 1) + 1`` frames at ``8h x 8w`` are returned.
        """
        latent = self._check_latent(latent)
        _, _, latent_frames, latent_height, latent_width = latent.shape
        s = self.spatial_compression
        full_frames = pixel_frame_count(latent_frames, self.temporal_compression)
        frame_count = full_frames if frame_count is None else int(frame_count)
        height = latent_height * s if height is None else int(height)
        width = latent_width * s if width is None else int(width)
        if not (1 <= frame_count <= full_frames and 1 <= height <= latent_height * s and 1 <= width <= latent_width * s):
            raise HarmoVidError(
                f"Cannot trim {full_frames} decoded frames of {latent_width * s}x{latent_height * s} to "
                f"{frame_count} frames of {width}x{height}; pass the original clip's frame count and size."
            )

        out = torch.zeros(frame_count, height, width, 3, device=output_device)
        total_weight = torch.zeros(height, width, device=output_device)
        tiles = self._tiles(latent_height, latent_width)
        all_rows = sorted({r for r, _ in tiles})
        all_cols = sorted({c for _, c in tiles})
        batches = time_batches(latent_frames, DECODE_LATENT_BATCH)
        steps, done = len(tiles) * len(batches), 0
        for rows, cols in tiles:
            top, left = rows[0] * s, cols[0] * s
            bottom, right = min(rows[1] * s, height), min(cols[1] * s, width)
            if top >= height or left >= width:  # tile lies entirely in the padding
                done += len(batches)
                report(progress, done, steps)
                continue
            weight = self._tile_weight(rows, cols, all_rows, all_cols).repeat_interleave(s, 0).repeat_interleave(s, 1)
            weight = weight[: bottom - top, : right - left].to(output_device)  # [th, tw] in pixels
            cache, frame_start = None, 0
            for start, end in batches:
                z = latent[:, :, start:end, rows[0] : rows[1], cols[0] : cols[1]]
                z = z.to(self.device, self.dtype) / self.scaling_factor
                if self.vae.post_quant_conv is not None:
                    z = self.vae.post_quant_conv(z)
                x, cache = self.vae.decoder(z, conv_cache=cache)  # [1, 3, f, th, tw] in -1..1
                frame_end = frame_start + x.shape[2]
                keep = min(frame_end, frame_count) - frame_start
                if keep > 0:
                    x = (x[0, :, :keep, : bottom - top, : right - left].float() / 2 + 0.5).clamp(0, 1)
                    x = x.permute(1, 2, 3, 0).to(output_device)  # [f, th, tw, 3]
                    out[frame_start : frame_start + keep, top:bottom, left:right] += x * weight[..., None]
                frame_start = frame_end
                done += 1
                report(progress, done, steps)
            total_weight[top:bottom, left:right] += weight
        out /= total_weight[..., None]
        return out

    def _check_latent(self, latent: torch.Tensor) -> torch.Tensor:
        if isinstance(latent, dict) and "samples" in latent:
            latent = latent["samples"]
        if not isinstance(latent, torch.Tensor):
            raise HarmoVidError(f"latent: expected a tensor [1, C, T', h, w], got {type(latent).__name__}.")
        if latent.ndim == 4:
            latent = latent.unsqueeze(0)
        if latent.ndim != 5 or latent.shape[0] != 1:
            raise HarmoVidError(
                f"latent: expected [1, C, T', h, w] (one clip), got {tuple(latent.shape)}. Decode clips one at a time."
            )
        if latent.shape[1] != self.latent_channels:
            raise HarmoVidError(
                f"latent has {latent.shape[1]} channels but this VAE decodes {self.latent_channels}. "
                "Use the VAE that belongs to the HarmoVid model."
            )
        if not torch.isfinite(latent).all():
            raise HarmoVidError("latent contains NaN or infinite values; the sampler diverged (try fp32 or bf16).")
        return latent

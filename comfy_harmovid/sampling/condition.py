"""What the sampler is conditioned on: the encoded composite and background, and the alpha mask."""

from dataclasses import dataclass, replace

import torch

from ..model.layout import pad_by_repeating
from ..progress import ProgressCallback
from .multidiffusion import Window


@dataclass(frozen=True)
class HarmoVidCondition:
    """The inputs of one clip, ready for the transformer (HARMOVID_COND between nodes).

    ``composite_latent`` and ``background_latent`` are ``[B, C, T', h, w]``; ``mask`` is the alpha at pixel
    resolution ``[B, 1, T, H, W]`` (1 = foreground; soft values kept), its frames padded the way the
    VAE pads the video, so that ``T' = (T - 1) / 4 + 1`` and ``H = 8 h``. ``frame_count``, ``height`` and
    ``width`` are the original clip's, which Decode trims back to. All tensors live on the model's device.
    """

    composite_latent: torch.Tensor
    background_latent: torch.Tensor
    mask: torch.Tensor
    frame_count: int
    height: int = 0  # 0: the padded size, 8 h
    width: int = 0

    @property
    def device(self) -> torch.device:
        return self.composite_latent.device

    def to(self, device) -> "HarmoVidCondition":
        return replace(
            self,
            composite_latent=self.composite_latent.to(device),
            background_latent=self.background_latent.to(device),
            mask=self.mask.to(device),
        )

    def crop(self, window: Window) -> "HarmoVidCondition":
        """The condition for one MultiDiffusion window (views, no copies).

        Latent frame ``k`` is made from video frames ``4k-3 .. 4k`` (frame 0 alone), and the VAE is causal,
        so a window over latent frames ``[a, b)`` sees mask frames ``[4a, 4(b-1)]``: frame ``4a`` stands for
        the window's first latent frame, then groups of 4, exactly as the full clip starts with frame 0.
        """
        latent_frames, latent_height, _ = self.composite_latent.shape[-3:]
        mask_frames, mask_height, _ = self.mask.shape[-3:]
        time_scale = (mask_frames - 1) // (latent_frames - 1) if latent_frames > 1 else 1
        space_scale = mask_height // latent_height
        (a, b), (top, bottom), (left, right) = window.frames, window.rows, window.cols
        mask = self.mask[
            ...,
            time_scale * a : time_scale * (b - 1) + 1,
            space_scale * top : space_scale * bottom,
            space_scale * left : space_scale * right,
        ]
        return replace(
            self,
            composite_latent=self.composite_latent[window.index],
            background_latent=self.background_latent[window.index],
            mask=mask,
        )


def encode_condition(
    vae, composite: torch.Tensor, background: torch.Tensor, alpha: torch.Tensor, *, progress: ProgressCallback = None
) -> HarmoVidCondition:
    """Encode composite and background ``[T, H, W, 3]`` with ``vae`` (a ``HarmoVidVAE``) and pad ``alpha``
    ``[T, H, W]`` exactly as the VAE pads the frames (last frame, row and column repeated), kept in float16.

    The result lives on the VAE's device; move it with ``.to(device)`` (no copy when already there).
    """
    frame_count, height, width = composite.shape[:3]
    latents = []
    for stage, frames in enumerate((composite, background)):

        def stage_progress(done, total, stage=stage):
            if progress is not None:
                progress(stage * total + done, 2 * total)

        latents.append(vae.encode(frames, progress=stage_progress))
    padded_frames, padded_height, padded_width = vae.padded_shape(frame_count, height, width)
    # float16 holds alpha to ~1/2000 (finer than a bf16 model sees it) in half the memory of float32: the
    # pixel-resolution mask is the condition's largest part (10 s of 1080p: 1.2 GB instead of 2.5 GB).
    mask = alpha.to(latents[0].device, torch.float16)[None, None]  # [1, 1, T, H, W]
    mask = pad_by_repeating(pad_by_repeating(mask, 2, padded_frames), 3, padded_height)
    mask = pad_by_repeating(mask, 4, padded_width)
    return HarmoVidCondition(latents[0], latents[1], mask, frame_count, height, width)

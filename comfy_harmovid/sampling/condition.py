"""What the sampler is conditioned on: the encoded composite and background, and the alpha mask."""

from dataclasses import dataclass, replace

import torch

from .multidiffusion import Window


@dataclass(frozen=True)
class HarmoVidCondition:
    """The inputs of one clip, ready for the transformer (HARMOVID_COND between nodes).

    ``composite_latent`` and ``background_latent`` are ``[B, C, T', h, w]``; ``mask`` is the alpha at pixel
    resolution ``[B, 1, T, H, W]`` (1 = foreground; soft values kept), its frames padded the way the
    VAE pads the video, so that ``T' = (T - 1) / 4 + 1``. ``frame_count`` is the original clip's length,
    which Decode trims back to. All tensors live on the model's device.
    """

    composite_latent: torch.Tensor
    background_latent: torch.Tensor
    mask: torch.Tensor
    frame_count: int

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

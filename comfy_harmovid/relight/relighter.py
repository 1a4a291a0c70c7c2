"""IC-Light (fbc) relighting of a composite clip toward its background, frames sharing one light.

Per chunk of ``chunk_frames`` frames, at a working size of ``resolution`` pixels on the short side:

1. The person on neutral grey (the composite through the alpha) and the clean background are encoded by
   the VAE: IC-Light's 8 conditioning channels. The composite's own latent is the starting point.
2. The composite latent is noised to ``denoise`` (one noise for every frame, from ``seed``) and denoised
   by the IC-Light UNet with classifier-free guidance; Consistent Light Attention makes the frames share
   the light, carried from chunk to chunk by ``LightMemory``.
3. Only the light change is kept: the relit frames minus the VAE's reconstruction of the composite,
   smoothed, is added to the full-resolution composite (``sampling.detail.transfer_light``), and the
   result goes back through the alpha onto the untouched background. The person keeps its detail and
   identity; the background never changes.

Follow it with the Lighting Deflicker (reference = the composite) to remove what is left of the flicker.
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ..errors import HarmoVidError
from ..progress import ProgressCallback, report, scaled
from ..validate import check_frames, check_mask, check_same_length, check_same_size
from .attention import LightMemory, install_consistent_light
from .loading import ICLightModels, sd15_config

DEFAULT_PROMPT = "a person, natural lighting matching the scene, detailed face, best quality"
DEFAULT_NEGATIVE_PROMPT = "lowres, bad anatomy, bad hands, cropped, worst quality"
NEUTRAL_GREY = 0.5  # what IC-Light's foreground image shows around the person
SIZE_MULTIPLE = 8  # the VAE's downsampling


@dataclass
class RelightSettings:
    """The relighting knobs; defaults follow IC-Light's demo where it has one."""

    prompt: str = DEFAULT_PROMPT
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    seed: int = 0
    steps: int = 20
    denoise: float = 0.7  # 1 = from pure noise (new shading); lower keeps more of the composite
    guidance: float = 7.0  # classifier-free guidance scale; 1 turns it off and halves the work
    consistency: float = 0.7  # g of Consistent Light Attention: 0 = independent frames, 1 = one shared light
    chunk_frames: int = 8  # frames denoised at once; memory grows with this, not with the clip
    history_frames: Optional[int] = None  # how many frames earlier chunks count for (None: chunk_frames)
    resolution: int = 512  # working short side in pixels (IC-Light is trained around 512)
    light_smoothing: float = 4.0  # Gaussian sigma of the light change, in working pixels

    def check(self) -> "RelightSettings":
        problems = []
        if self.steps < 1:
            problems.append(f"steps must be at least 1, got {self.steps}")
        if not 0.0 <= self.denoise <= 1.0:
            problems.append(f"denoise must be in 0..1, got {self.denoise}")
        if not self.guidance >= 1.0:
            problems.append(f"guidance must be 1 or more, got {self.guidance}")
        if not 0.0 <= self.consistency <= 1.0:
            problems.append(f"consistency must be in 0..1, got {self.consistency}")
        if self.chunk_frames < 1:
            problems.append(f"chunk_frames must be at least 1, got {self.chunk_frames}")
        if self.history_frames is not None and self.history_frames < 0:
            problems.append(f"history_frames must be 0 or more, got {self.history_frames}")
        if self.resolution < 64 or self.resolution % SIZE_MULTIPLE:
            problems.append(f"resolution must be a multiple of {SIZE_MULTIPLE} of at least 64, got {self.resolution}")
        if not self.light_smoothing >= 0.0:
            problems.append(f"light_smoothing must be 0 or more, got {self.light_smoothing}")
        if problems:
            raise HarmoVidError("IC-Light relight: " + "; ".join(problems) + ".")
        return self


def working_size(height: int, width: int, resolution: int) -> Tuple[int, int]:
    """``(h, w)``: the short side at ``resolution``, the aspect kept, both multiples of the VAE's 8."""
    scale = resolution / min(height, width)
    return tuple(max(SIZE_MULTIPLE, round(side * scale / SIZE_MULTIPLE) * SIZE_MULTIPLE) for side in (height, width))


def make_scheduler():
    """IC-Light's sampler: DPM-Solver++ (2M) with Karras sigmas; deterministic, so frames share their noise."""
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler.from_config(sd15_config("scheduler"))


class ICLightRelighter:
    """Relights a clip chunk by chunk; the light is shared across chunks until :meth:`reset`.

    Streaming stage: ``process(composite, alpha, background, out=...)`` takes ``[T, H, W, 3]`` frames and a
    ``[T, H, W]`` alpha (1 = person) on the CPU and returns the relit ``[T, H, W, 3]`` float32 frames.
    """

    def __init__(self, models: ICLightModels, settings: Optional[RelightSettings] = None):
        self.models = models
        self.settings = (settings or RelightSettings()).check()
        halves = 2 if self.settings.guidance > 1.0 else 1
        history = self.settings.history_frames
        self.memory = LightMemory(
            self.settings.consistency,
            halves=halves,
            history_frames=self.settings.chunk_frames if history is None else history,
        )
        install_consistent_light(models.unet, self.memory)
        self._prompts = self._encode_prompts()
        self._noise = None  # one noise for every frame of the clip, made at the first chunk

    def reset(self) -> None:
        """Start a new clip: forget the running light and the noise."""
        self.memory.reset()
        self._noise = None

    @torch.no_grad()
    def _encode_prompts(self) -> torch.Tensor:
        """``[halves, 77, C]`` text embeddings: [negative, prompt] with guidance, [prompt] without."""
        texts = [self.settings.prompt]
        if self.memory.halves == 2:
            texts = [self.settings.negative_prompt] + texts
        tokens = self.models.tokenizer(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        ids = tokens.input_ids.to(self.models.device)
        return self.models.text_encoder(ids).last_hidden_state.to(self.models.dtype)

    # -- pixels <-> latents ----------------------------------------------------------------------

    def _to_model(self, frames: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """``[T, H, W, 3]`` 0..1 -> ``[T, 3, h, w]`` -1..1 at the working size on the model's device."""
        x = frames.to(self.models.device, torch.float32).permute(0, 3, 1, 2)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        return (x * 2 - 1).to(self.models.dtype)

    # The VAE runs one frame at a time: its activations are large (hundreds of MiB per 512-pixel frame) and
    # it gains little from batching, so the chunk size only sets the UNet's batch.

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        vae = self.models.vae
        return torch.cat([vae.encode(image[None]).latent_dist.mode() for image in images]) * vae.config.scaling_factor

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[T, 4, h, w]`` -> ``[T, h, w, 3]`` float32 0..1 on the CPU."""
        vae = self.models.vae
        images = torch.cat([vae.decode(latent[None] / vae.config.scaling_factor).sample.float().cpu()
                            for latent in latents])
        return ((images + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)

    # -- denoising -------------------------------------------------------------------------------

    @property
    def denoising_steps(self) -> int:
        """The steps actually run: the last ``denoise`` part of the ``steps``-step schedule."""
        return int(round(self.settings.steps * self.settings.denoise))

    def _shared_noise(self, shape) -> torch.Tensor:
        if self._noise is None or self._noise.shape[1:] != shape:
            generator = torch.Generator("cpu").manual_seed(int(self.settings.seed))
            self._noise = torch.randn((1, *shape), generator=generator)
        return self._noise.to(self.models.device, self.models.dtype)

    def predict_noise(self, latents: torch.Tensor, condition: torch.Tensor, timestep) -> torch.Tensor:
        """The guided noise prediction for ``latents`` ``[T, 4, h, w]`` with IC-Light's ``condition`` ``[T, 8, h, w]``."""
        halves = self.memory.halves
        frames = latents.shape[0]
        model_input = torch.cat([latents, condition], dim=1).repeat(halves, 1, 1, 1)  # [halves * T, 12, h, w]
        prompts = self._prompts.repeat_interleave(frames, dim=0)  # [halves * T, 77, C]
        prediction = self.models.unet(model_input, timestep, encoder_hidden_states=prompts).sample
        if halves == 1:
            return prediction
        unconditional, conditional = prediction.chunk(2)
        return unconditional + self.settings.guidance * (conditional - unconditional)

    @torch.no_grad()
    def relight_latents(self, start: torch.Tensor, condition: torch.Tensor, progress: ProgressCallback = None):
        """Denoise ``start`` (the composite's latents) under ``condition``; the chunk's share of the light."""
        settings = self.settings
        scheduler = make_scheduler()
        scheduler.set_timesteps(settings.steps, device=self.models.device)
        first = settings.steps - self.denoising_steps
        timesteps = scheduler.timesteps[first:]
        if len(timesteps) == 0:
            return start
        scheduler.set_begin_index(first)
        noise = self._shared_noise(start.shape[1:]).expand_as(start)
        latents = scheduler.add_noise(start, noise, timesteps[:1])
        for index, timestep in enumerate(timesteps):
            self.memory.step = first + index
            prediction = self.predict_noise(scheduler.scale_model_input(latents, timestep), condition, timestep)
            latents = scheduler.step(prediction, timestep, latents).prev_sample
            report(progress, index + 1, len(timesteps))
        return latents

    # -- one clip --------------------------------------------------------------------------------

    @torch.no_grad()
    def _relight_chunk(self, composite, alpha, background, out, progress) -> None:
        height, width = composite.shape[1:3]
        size = working_size(height, width, self.settings.resolution)
        weight = alpha.unsqueeze(-1)
        foreground = composite * weight + NEUTRAL_GREY * (1 - weight)
        start = self._encode(self._to_model(composite, size))
        condition = torch.cat([self._encode(self._to_model(foreground, size)),
                               self._encode(self._to_model(background, size))], dim=1)
        relit = self._decode(self.relight_latents(start, condition, progress))
        reconstruction = self._decode(start)
        from ..sampling.detail import transfer_light  # here: the sampling package imports diffusers

        transfer_light(relit, reconstruction, composite, radius=self.settings.light_smoothing, out=out)
        # Back through the alpha onto the untouched background.
        out.mul_(weight).add_(background * (1 - weight))

    def process(self, composite, alpha, background, *, out: Optional[torch.Tensor] = None,
                progress: ProgressCallback = None) -> torch.Tensor:
        composite = check_frames(composite, "composite").cpu()
        background = check_frames(background, "background").cpu()
        alpha = check_mask(alpha, "alpha").cpu()
        check_same_size(composite, background, "composite", "background")
        check_same_size(composite, alpha, "composite", "alpha")
        check_same_length(composite, background, "composite", "background")
        check_same_length(composite, alpha, "composite", "alpha")
        frame_count = composite.shape[0]
        if out is None:
            out = torch.empty(composite.shape, dtype=torch.float32)
        chunk = self.settings.chunk_frames
        chunks = (frame_count + chunk - 1) // chunk
        steps = max(1, self.denoising_steps)
        for number, begin in enumerate(range(0, frame_count, chunk)):
            end = min(begin + chunk, frame_count)
            self._relight_chunk(composite[begin:end].float(), alpha[begin:end].float(),
                                background[begin:end].float(), out[begin:end],
                                scaled(progress, number * steps, chunks * steps))
            report(progress, (number + 1) * steps, chunks * steps)
        return out


def relight_frames(models: ICLightModels, composite, alpha, background, settings: Optional[RelightSettings] = None,
                   *, progress: ProgressCallback = None) -> torch.Tensor:
    """Relight a whole clip (``[T, H, W, 3]`` composite and background, ``[T, H, W]`` alpha) in chunks."""
    return ICLightRelighter(models, settings).process(composite, alpha, background, progress=progress)

"""Sampling HarmoVid: CogVideoX's schedule, the denoising loop with guidance, and MultiDiffusion.

    from comfy_harmovid.sampling import HarmoVidCondition, MultiDiffusion, sample
    latent = sample(transformer, condition, seed=0, steps=50, guidance=6.0,
                    multidiffusion=MultiDiffusion(window=22, overlap=6))
"""

from .condition import HarmoVidCondition, encode_condition
from .detail import transfer_light
from .multidiffusion import WEIGHTINGS, MultiDiffusion, Window, seam_report, span_weights, split_axis
from .sampler import DiffusionModel, guided_velocity, sample
from .schedule import SCHEDULERS, denoise_timesteps, make_scheduler

__all__ = [
    "DiffusionModel",
    "HarmoVidCondition",
    "MultiDiffusion",
    "SCHEDULERS",
    "WEIGHTINGS",
    "Window",
    "denoise_timesteps",
    "encode_condition",
    "guided_velocity",
    "make_scheduler",
    "sample",
    "seam_report",
    "span_weights",
    "split_axis",
    "transfer_light",
]

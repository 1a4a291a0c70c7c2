"""Relighting with the weights users already have: Stable Diffusion 1.5 + IC-Light (fbc) per frame, with
Consistent Light Attention so the frames of a clip share one light, and only the low-frequency light
change put back on the composite. See ``relighter`` for the method, ``loading`` for the files."""

from .attention import ConsistentLightAttention, LightMemory, install_consistent_light
from .loading import FBC_CHANNELS, ICLightModels, load_iclight
from .relighter import ICLightRelighter, RelightSettings, relight_frames, working_size
from .tokenizer import find_clip_tokenizer, load_clip_tokenizer

__all__ = [
    "ConsistentLightAttention",
    "FBC_CHANNELS",
    "ICLightModels",
    "ICLightRelighter",
    "LightMemory",
    "RelightSettings",
    "find_clip_tokenizer",
    "install_consistent_light",
    "load_clip_tokenizer",
    "load_iclight",
    "relight_frames",
    "working_size",
]

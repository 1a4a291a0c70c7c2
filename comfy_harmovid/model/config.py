"""``HarmoVidConfig``: the transformer's shape (diffusers' CogVideoX fields) plus the HarmoVid input layout.

The model input is four tensors concatenated along channels, in this order::

    noisy target latent   [B, C, T', h, w]      C = out_channels (the VAE's latent channels)
    composite latent      [B, C, T', h, w]      z_I in the paper (eq. 5)
    background latent     [B, C, T', h, w]      z_B
    mask, folded          [B, M, T', h, w]      M = temporal_compression_ratio * spatial_compression_ratio**2

so the patch embedding sees ``in_channels = 3 * C + M`` channels. The mask is folded, not resized: every
pixel-resolution alpha value of a latent cell's 4 frames x 8 x 8 pixels becomes one channel (see
``layout.fold_mask``). Folding is lossless, so soft alpha edges finer than a latent cell (the paper's
pseudo-alpha path) reach the model intact; it costs only ``M * patch`` extra input weights.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import HarmoVidError

# The order of the conditioning blocks along the channel axis of the patch embedding input.
INPUT_LAYOUT = ("noisy", "composite", "background", "mask")

# Keys of a diffusers CogVideoXTransformer3DModel config.json that HarmoVid derives itself or ignores.
_DIFFUSERS_ONLY_KEYS = {"in_channels", "_class_name", "_diffusers_version", "_name_or_path"}


@dataclass
class HarmoVidConfig:
    # -- diffusers CogVideoXTransformer3DModel fields (same names, same meaning) --
    num_attention_heads: int = 30
    attention_head_dim: int = 64
    out_channels: int = 16
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    time_embed_dim: int = 512
    ofs_embed_dim: Optional[int] = None
    text_embed_dim: int = 4096
    num_layers: int = 30
    dropout: float = 0.0
    attention_bias: bool = True
    sample_width: int = 90
    sample_height: int = 60
    sample_frames: int = 49
    patch_size: int = 2
    patch_size_t: Optional[int] = None
    temporal_compression_ratio: int = 4
    max_text_seq_length: int = 226
    activation_fn: str = "gelu-approximate"
    timestep_activation_fn: str = "silu"
    norm_elementwise_affine: bool = True
    norm_eps: float = 1e-5
    spatial_interpolation_scale: float = 1.875
    temporal_interpolation_scale: float = 1.0
    use_rotary_positional_embeddings: bool = False
    use_learned_positional_embeddings: bool = False
    patch_bias: bool = True
    # -- HarmoVid conditioning layout --
    spatial_compression_ratio: int = 8  # the VAE's pixels per latent cell along H and W; the mask is folded by it
    prediction_type: str = "v_prediction"  # what forward() returns (CogVideoX is trained on v)
    # The base model's scheduler config (scheduler/scheduler_config.json of the converted folder), for the sampler.
    scheduler: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.validate()

    # -- derived sizes --
    @property
    def latent_channels(self) -> int:
        return self.out_channels

    @property
    def mask_channels(self) -> int:
        return self.temporal_compression_ratio * self.spatial_compression_ratio**2

    @property
    def in_channels(self) -> int:
        return 3 * self.out_channels + self.mask_channels

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def layout_name(self) -> str:
        return "cogvideox-1.0" if self.patch_size_t is None else "cogvideox-1.5"

    def validate(self) -> None:
        problems = []
        if self.patch_size_t is not None and not self.use_rotary_positional_embeddings:
            problems.append("patch_size_t is set (CogVideoX 1.5 layout) but rotary embeddings are off; 1.5 needs RoPE")
        if self.use_learned_positional_embeddings and not self.use_rotary_positional_embeddings:
            problems.append("learned positional embeddings need use_rotary_positional_embeddings=true (as in CogVideoX)")
        if self.use_rotary_positional_embeddings and self.attention_head_dim % 8 != 0:
            problems.append(f"attention_head_dim {self.attention_head_dim} must be divisible by 8 for 3D RoPE")
        if not self.use_rotary_positional_embeddings and self.inner_dim % 16 != 0:
            problems.append(f"inner dim {self.inner_dim} must be divisible by 16 for sin-cos positions")
        if self.ofs_embed_dim and self.ofs_embed_dim != self.time_embed_dim:
            problems.append(f"ofs_embed_dim {self.ofs_embed_dim} must equal time_embed_dim {self.time_embed_dim}")
        if self.prediction_type != "v_prediction":
            problems.append(f"prediction_type '{self.prediction_type}' is not supported (only 'v_prediction')")
        for name in ("num_attention_heads", "attention_head_dim", "out_channels", "num_layers", "patch_size",
                     "temporal_compression_ratio", "spatial_compression_ratio", "max_text_seq_length"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1")
        if problems:
            raise HarmoVidError("Invalid HarmoVid config: " + "; ".join(problems) + ". Fix the config card or checkpoint.")

    # -- conversions --
    def diffusers_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for diffusers' ``CogVideoXTransformer3DModel`` with the widened ``in_channels``."""
        kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in _COGVIDEOX_FIELDS}
        kwargs["in_channels"] = self.in_channels
        return kwargs

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "HarmoVidConfig":
        if not isinstance(data, dict):
            raise HarmoVidError(f"A HarmoVid config must be a JSON object, got {type(data).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - _DIFFUSERS_ONLY_KEYS)
        if unknown:
            raise HarmoVidError(
                f"Unknown HarmoVid config keys: {', '.join(unknown)}. The file may be from a newer version of "
                "comfy-harmovid or not a HarmoVid config; remove those keys or update comfy-harmovid."
            )
        values = {k: v for k, v in data.items() if k in known}
        try:
            return cls(**values)
        except TypeError as error:  # wrong value types
            raise HarmoVidError(f"Invalid HarmoVid config values: {error}.") from error

    @classmethod
    def from_json(cls, text_or_path) -> "HarmoVidConfig":
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise HarmoVidError(f"Config file {path} does not exist. Pass a JSON file such as those in comfy_harmovid/resources/configs/models/.")
            text = path.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise HarmoVidError(f"The HarmoVid config is not valid JSON ({error}).") from error
        return cls.from_dict(data)

    @classmethod
    def from_diffusers(cls, transformer_config: Dict[str, Any], **overrides) -> "HarmoVidConfig":
        """The HarmoVid config for a diffusers CogVideoX transformer config (its ``in_channels`` is replaced)."""
        values = {k: v for k, v in transformer_config.items() if k in _COGVIDEOX_FIELDS}
        values.update(overrides)
        return cls.from_dict(values)


_COGVIDEOX_FIELDS = {
    f.name for f in dataclasses.fields(HarmoVidConfig)
    if f.name not in ("spatial_compression_ratio", "prediction_type", "scheduler")
}

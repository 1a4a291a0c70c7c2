"""Consistent Light Attention: the frames of a clip share one light.

In the self-attention of the UNet's up blocks (where IC-Light decides the shading) every frame also
attends to keys and values averaged over the frames::

    out = (1 - g) * attn(Q, K, V) + g * attn(Q, mean_frames(K), mean_frames(V))

The UNet's batch is ``[unconditional frames, conditional frames]`` under classifier-free guidance, so
the two halves are averaged separately. Clips longer than a chunk carry a running mean from chunk to
chunk (``LightMemory``), one per layer and denoising step: a chunk's frames see its own mean blended
with the light of the chunks before it, which weighs as ``history_frames`` frames at most, so the light
can still follow a slow change in the scene. The memory holds one frame's keys and values per layer and
step, in host memory, however long the clip.
"""

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from ..errors import HarmoVidError

# The UNet's self-attention layers that get the shared light: those of the up blocks (the decoder).
SHARED_LIGHT_LAYERS = ("up_blocks.",)
SELF_ATTENTION = "attn1.processor"


class LightMemory:
    """The shared light of one clip: the strength ``g``, the batch layout, and the running means.

    ``halves``: 2 when the UNet's batch is [unconditional, conditional] frames, 1 without guidance.
    ``history_frames``: the most frames earlier chunks count for in a chunk's mean (None: all of them).
    Set ``step`` before each UNet call of a chunk; :meth:`reset` starts a new clip.
    """

    def __init__(self, strength: float, *, halves: int = 2, history_frames: Optional[int] = None):
        self.strength = float(strength)
        self.halves = halves
        self.history_frames = history_frames
        self.step = 0
        self._means: Dict[Tuple[str, int], Tuple[torch.Tensor, torch.Tensor, int]] = {}

    def reset(self) -> None:
        self._means.clear()
        self.step = 0

    def shared(self, layer: str, key: torch.Tensor, value: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The keys and values every frame of each half attends to, ``[B, heads, N, d]`` like ``key``.

        Also records this chunk's mean in the running light of ``(layer, step)``.
        """
        batch = key.shape[0]
        frames = batch // self.halves
        # [B, heads, N, d] -> [halves, frames, heads, N, d] -> mean over the frames of each half
        key_mean = key.reshape(self.halves, frames, *key.shape[1:]).float().mean(1, keepdim=True)
        value_mean = value.reshape(self.halves, frames, *value.shape[1:]).float().mean(1, keepdim=True)
        earlier = self._means.get((layer, self.step))
        seen = frames
        if earlier is not None:
            earlier_key, earlier_value, earlier_frames = earlier
            earlier_key = earlier_key.to(key.device, torch.float32)
            earlier_value = earlier_value.to(key.device, torch.float32)
            weight = earlier_frames if self.history_frames is None else min(earlier_frames, self.history_frames)
            key_mean = (weight * earlier_key + frames * key_mean) / (weight + frames)
            value_mean = (weight * earlier_value + frames * value_mean) / (weight + frames)
            seen += earlier_frames
        # Kept in host memory in the model's precision: over all layers and steps it is most of a GiB at
        # 512 pixels (`harmovid bench relight`), and each UNet call needs only its own layer's.
        self._means[(layer, self.step)] = (key_mean.to("cpu", key.dtype), value_mean.to("cpu", key.dtype), seen)

        def spread(mean: torch.Tensor) -> torch.Tensor:
            return mean.to(key.dtype).expand(self.halves, frames, *key.shape[1:]).reshape(key.shape)

        return spread(key_mean), spread(value_mean)


class ConsistentLightAttention:
    """A diffusers attention processor for a UNet self-attention layer (SD1.5's ``attn1``)."""

    def __init__(self, memory: LightMemory, layer: str):
        self.memory = memory
        self.layer = layer

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **_):
        # SD1.5's self-attention: [B, N, C] tokens, no mask, no group norm, no residual inside the layer.
        if hidden_states.ndim != 3 or encoder_hidden_states is not None or attention_mask is not None:
            raise HarmoVidError("Consistent Light Attention is for SD1.5's self-attention layers (attn1) only.")
        batch = hidden_states.shape[0]
        heads = attn.heads

        def split_heads(x: torch.Tensor) -> torch.Tensor:  # [B, N, C] -> [B, heads, N, C / heads]
            return x.view(batch, -1, heads, x.shape[-1] // heads).transpose(1, 2)

        query = split_heads(attn.to_q(hidden_states))
        key = split_heads(attn.to_k(hidden_states))
        value = split_heads(attn.to_v(hidden_states))
        if attn.norm_q is not None:
            query, key = attn.norm_q(query), attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value)
        strength = self.memory.strength
        if strength > 0:
            shared_key, shared_value = self.memory.shared(self.layer, key, value)
            out = (1 - strength) * out + strength * F.scaled_dot_product_attention(query, shared_key, shared_value)
        out = out.transpose(1, 2).reshape(batch, -1, heads * out.shape[-1]).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        return out / attn.rescale_output_factor


def install_consistent_light(unet, memory: LightMemory) -> int:
    """Give the up blocks' self-attention layers of ``unet`` Consistent Light Attention; returns how many."""
    processors = dict(unet.attn_processors)
    count = 0
    for name in processors:
        if name.startswith(SHARED_LIGHT_LAYERS) and name.endswith(SELF_ATTENTION):
            processors[name] = ConsistentLightAttention(memory, name)
            count += 1
    unet.set_attn_processor(processors)
    return count

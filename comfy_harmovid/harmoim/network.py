"""``HarmoImNet``: a small CNN that looks at a composite and its alpha and predicts the colour transform
(``transform.py``) that puts the person in the scene's light.

Input, at a fixed low resolution ``S`` (the whole frame resized, aspect ignored: only colour and layout
matter)::

    composite  [B, 3, S, S]   sRGB 0..1
    alpha      [B, 1, S, S]   1 = person

Two kinds of evidence meet in a small MLP:

- learned features: a strided CNN over composite + alpha, pooled separately over the person, over the
  background and over the whole frame (so it can compare the two regions and see what the person is);
- colour statistics: for the person and for the background, the mean colour in each luminance band
  and the share of the region in that band, plus mean and spread per channel. These are what a
  banded colour map acts on, so the MLP does not have to discover them.

Output: raw transform parameters ``[B, 12 K + 1]``; the last layer starts at zero, so an untrained
network is exactly the identity.
"""

import dataclasses
import json
from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn as nn

from ..errors import HarmoVidError
from .transform import LUMA, band_weights, bounded_maps, parameter_count


def check_known_fields(cls, values: dict, what: str) -> None:
    """One clear error for keys of ``values`` that are not fields of the dataclass ``cls``."""
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise HarmoVidError(f"unknown {what}: {', '.join(unknown)}.")


@dataclass
class HarmoImConfig:
    input_size: int = 96  # S: the network sees every frame at S x S pixels
    bands: int = 5  # K: luminance bands of the colour transform
    # Channels of the CNN stages (each halves the size). Small on purpose: trained on a handful of people,
    # a wider CNN learns them by heart and then misjudges people it has not seen.
    widths: Tuple[int, ...] = (4, 8, 8, 8)
    hidden: int = 128  # width of the MLP

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        if self.input_size < 16 or self.input_size % (2 ** len(self.widths)):
            raise HarmoVidError(
                f"HarmoIm input_size {self.input_size} must be at least 16 and divisible by "
                f"{2 ** len(self.widths)} (one halving per CNN stage)."
            )
        if not 2 <= self.bands <= 16:
            raise HarmoVidError(f"HarmoIm bands must be 2..16, got {self.bands}.")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict) -> "HarmoImConfig":
        check_known_fields(cls, values, "HarmoIm config field(s)")
        return cls(**values)


def _stage(inputs: int, outputs: int) -> nn.Sequential:
    """Halve the size (strided conv), then one more conv at that size."""
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, stride=2, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(outputs, outputs, 3, padding=1), nn.ReLU(inplace=True),
    )


def _masked_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` ``[B, C, N]`` under ``weight`` ``[B, 1, N]`` -> ``[B, C]``."""
    return (values * weight).sum(-1) / weight.sum(-1).clamp(min=1e-3)


def colour_statistics(composite: torch.Tensor, alpha: torch.Tensor, bands: int) -> torch.Tensor:
    """Per-region colour evidence ``[B, 2 * (4 K + 6)]``: for the person (alpha) and the background
    (1 - alpha), the mean colour and share of pixels in each luminance band, and the mean and
    standard deviation of each channel."""
    pixels = composite.flatten(2)  # [B, 3, N]
    weights = band_weights((pixels * LUMA.to(pixels).view(1, 3, 1)).sum(1), bands).transpose(1, 2)  # [B, K, N]
    features = []
    for region in (alpha.flatten(2), 1.0 - alpha.flatten(2)):  # [B, 1, N]
        band_region = weights * region  # [B, K, N]
        mass = band_region.sum(-1).clamp(min=1e-3)  # [B, K]
        band_means = torch.einsum("bkn,bcn->bkc", band_region, pixels) / mass.unsqueeze(-1)
        share = mass / region.sum(-1).clamp(min=1e-3)
        mean = _masked_mean(pixels, region)
        spread = (_masked_mean((pixels - mean.unsqueeze(-1)) ** 2, region) + 1e-6).sqrt()
        features += [band_means.flatten(1), share, mean, spread]
    return torch.cat(features, dim=1)


class HarmoImNet(nn.Module):
    def __init__(self, config: HarmoImConfig = None):
        super().__init__()
        self.config = config or HarmoImConfig()
        widths = (4,) + self.config.widths
        self.encoder = nn.Sequential(*[_stage(a, b) for a, b in zip(widths[:-1], widths[1:])])
        statistics = 2 * (4 * self.config.bands + 6)
        outputs = parameter_count(self.config.bands)
        self.head = nn.Sequential(
            nn.Linear(3 * widths[-1] + statistics, self.config.hidden), nn.ReLU(inplace=True),
            nn.Linear(self.config.hidden, self.config.hidden), nn.ReLU(inplace=True),
            nn.Linear(self.config.hidden, outputs),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, composite: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Raw transform parameters ``[B, 12 K + 1]`` for ``composite`` ``[B, 3, S, S]``, ``alpha`` ``[B, 1, S, S]``."""
        features = self.encoder(torch.cat([composite, alpha], dim=1))  # [B, C, S/16, S/16]
        small_alpha = nn.functional.adaptive_avg_pool2d(alpha, features.shape[-2:]).flatten(2)  # [B, 1, n]
        flat = features.flatten(2)
        pooled = [_masked_mean(flat, small_alpha), _masked_mean(flat, 1.0 - small_alpha), flat.mean(-1)]
        evidence = colour_statistics(composite, alpha, self.config.bands)
        return self.head(torch.cat(pooled + [evidence], dim=1))

    def predict_maps(self, composite: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The bounded, gated colour maps ``[B, K, 4, 3]`` (see ``transform.bounded_maps``)."""
        return bounded_maps(self(composite, alpha), self.config.bands)

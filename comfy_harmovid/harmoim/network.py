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
  banded colour map acts on, so the MLP does not have to discover them. Optionally
  (``extreme_colours``) also the mean colour of each region's brightest and darkest few pixels:
  highlights take the colour of the light whatever the skin tone, and blacks show a fade or tint.

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
    extreme_colours: bool = False  # also see each region's brightest and darkest pixels' colour

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


EXTREME_SHARE = 0.05  # the brightest (darkest) pixels of a region making up this share of its weight


def extreme_colour(pixels: torch.Tensor, luma: torch.Tensor, weight: torch.Tensor, brightest: bool) -> torch.Tensor:
    """Mean colour ``[B, 3]`` of the brightest (or darkest) pixels that make up ``EXTREME_SHARE`` of the
    ``weight`` ``[B, N]`` of colours ``pixels`` ``[B, 3, N]`` with luma ``luma`` ``[B, N]``."""
    order = luma.argsort(dim=1, descending=brightest)
    ranked = weight.gather(1, order)
    before = ranked.cumsum(1) - ranked  # weight of the pixels ranked above each one
    quota = EXTREME_SHARE * weight.sum(1, keepdim=True)
    taken = (quota - before).clamp(min=0.0).minimum(ranked)  # how much of each pixel's weight falls in the share
    colours = pixels.gather(2, order.unsqueeze(1).expand_as(pixels))
    return (colours * taken.unsqueeze(1)).sum(-1) / taken.sum(-1, keepdim=True).clamp(min=1e-6)


def statistics_count(bands: int, extreme_colours: bool) -> int:
    """How many numbers ``colour_statistics`` gives per image."""
    return 2 * (4 * bands + 6 + (6 if extreme_colours else 0))


def colour_statistics(composite: torch.Tensor, alpha: torch.Tensor, bands: int,
                      extreme_colours: bool = False) -> torch.Tensor:
    """Per-region colour evidence ``[B, statistics_count(...)]``: for the person (alpha) and the
    background (1 - alpha), the mean colour and share of pixels in each luminance band, and the mean and
    standard deviation of each channel; with ``extreme_colours``, the mean colour of the brightest and
    of the darkest pixels (``extreme_colour``)."""
    pixels = composite.flatten(2)  # [B, 3, N]
    luma = (pixels * LUMA.to(pixels).view(1, 3, 1)).sum(1)  # [B, N]
    weights = band_weights(luma, bands).transpose(1, 2)  # [B, K, N]
    features = []
    for region in (alpha.flatten(2), 1.0 - alpha.flatten(2)):  # [B, 1, N]
        band_region = weights * region  # [B, K, N]
        mass = band_region.sum(-1).clamp(min=1e-3)  # [B, K]
        band_means = torch.einsum("bkn,bcn->bkc", band_region, pixels) / mass.unsqueeze(-1)
        share = mass / region.sum(-1).clamp(min=1e-3)
        mean = _masked_mean(pixels, region)
        spread = (_masked_mean((pixels - mean.unsqueeze(-1)) ** 2, region) + 1e-6).sqrt()
        features += [band_means.flatten(1), share, mean, spread]
        if extreme_colours:
            features += [extreme_colour(pixels, luma, region[:, 0], brightest) for brightest in (True, False)]
    return torch.cat(features, dim=1)


class HarmoImNet(nn.Module):
    def __init__(self, config: HarmoImConfig = None):
        super().__init__()
        self.config = config or HarmoImConfig()
        widths = (4,) + self.config.widths
        self.encoder = nn.Sequential(*[_stage(a, b) for a, b in zip(widths[:-1], widths[1:])])
        statistics = statistics_count(self.config.bands, self.config.extreme_colours)
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
        evidence = colour_statistics(composite, alpha, self.config.bands, self.config.extreme_colours)
        return self.head(torch.cat(pooled + [evidence], dim=1))

    def predict_maps(self, composite: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The bounded, gated colour maps ``[B, K, 4, 3]`` (see ``transform.bounded_maps``)."""
        return bounded_maps(self(composite, alpha), self.config.bands)

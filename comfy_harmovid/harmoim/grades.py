"""Random colour grades for training the learned HarmoIm: what a person filmed elsewhere may look like.

A grade is a chain of the operations colourists use, each present or not at random, in the order a
grading tool applies them: white balance (a colour temperature in kelvin and a green/magenta tint) and
exposure in linear light; a .cube LUT (or a blend of two), mixed in at a random strength; lift / gamma
/ gain per channel; contrast (an S-curve) or a film curve (soft toe and shoulder); saturation; split
toning (one hue pushed into the shadows, another into the highlights); a fade (blacks lifted, whites
lowered, toward a colour). Some samples are left ungraded and many are graded only mildly (the grade
is mixed back toward the original), so that doing nothing is an answer the network learns.
"""

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ..color import Lut, apply_lut, linear_to_srgb, srgb_to_linear
from .transform import LUMA

NEUTRAL_KELVIN = 6500.0  # the white point a camera balanced for daylight maps to white

# CIE XYZ -> linear sRGB (D65)
XYZ_TO_RGB = torch.tensor([
    [3.2404542, -1.5371385, -0.4985314],
    [-0.9692660, 1.8760108, 0.0415560],
    [0.0556434, -0.2040259, 1.0572252],
])


@dataclass
class GradeOptions:
    """Chances (0..1) of each operation and the range of its strength."""

    ungraded: float = 0.25  # share of samples left as they are
    mild: float = 0.35  # share of graded samples mixed back toward the original
    mild_range: tuple = (0.15, 0.6)  # how much of the grade a mild sample keeps
    lut: float = 0.6  # chance of a LUT
    lut_blend: float = 0.3  # chance that the LUT is a blend of two
    lut_strength: tuple = (0.5, 1.0)  # how much of the LUT is mixed in
    white_balance: float = 0.5
    exposure: float = 0.5
    saturation: float = 0.4
    curves: float = 0.4  # lift / gamma / gain per channel
    contrast: float = 0.3
    film_curve: float = 0.0  # soft toe and shoulder (instead of the plain S-curve when both are drawn)
    split_toning: float = 0.0
    fade: float = 0.0
    kelvin_range: tuple = (3200.0, 12000.0)  # colour temperature the camera was balanced for (6500: neutral)
    max_tint: float = 0.15  # green gain change
    max_stops: float = 1.0
    saturation_range: tuple = (0.5, 1.5)
    max_log_gamma: float = 0.3
    max_lift: float = 0.06
    max_gain: float = 0.15
    max_contrast: float = 0.5
    max_split_tone: float = 0.08  # strength of the shadow and highlight tints (0..1 colour units)
    max_fade: float = 0.15  # how far the blacks are lifted (and the whites lowered, half as far)


def planckian_rgb(kelvin: float) -> torch.Tensor:
    """Linear sRGB colour (green = 1) of a black body at ``kelvin`` (1667-25000 K, Kim et al.'s cubic fit)."""
    t = float(kelvin)
    if t <= 4000:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    rgb = XYZ_TO_RGB @ torch.tensor([x / y, 1.0, (1 - x - y) / y])
    return rgb / rgb[1]


def white_balance_gains(kelvin: float, tint: float = 0.0) -> torch.Tensor:
    """Linear-light RGB gains of a camera balanced for ``kelvin`` instead of daylight: below 6500 K the
    picture turns blue, above it warm. ``tint`` > 0 adds green, < 0 magenta."""
    gains = planckian_rgb(NEUTRAL_KELVIN) / planckian_rgb(kelvin)
    gains = gains * torch.tensor([1.0, 1.0 + tint, 1.0])
    return gains / (gains @ LUMA.to(gains))  # keep the brightness of white


def linear_gains(image: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """``image`` (sRGB, 0..1) with its linear light scaled by ``gains`` per channel (white balance, exposure)."""
    return linear_to_srgb((srgb_to_linear(image) * gains).clamp(0.0, 1.0))


def scale_saturation(image: torch.Tensor, amount: float) -> torch.Tensor:
    """``image`` with its colours moved ``amount`` times as far from their luma (not clamped)."""
    luma = (image @ LUMA).unsqueeze(-1)
    return luma + amount * (image - luma)


def _uniform(generator: torch.Generator, low: float, high: float, shape=()) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def _chance(generator: torch.Generator, probability: float) -> bool:
    return bool(torch.rand((), generator=generator) < probability)


def _random_hue(generator: torch.Generator, strength: float) -> torch.Tensor:
    """An RGB offset of length about ``strength`` that moves a colour toward a random hue (no brightness change)."""
    angle = float(_uniform(generator, 0.0, 2 * math.pi))
    chroma = torch.tensor([math.cos(angle), math.cos(angle - 2 * math.pi / 3), math.cos(angle + 2 * math.pi / 3)])
    return strength * (chroma - chroma @ LUMA)


def _lut(image, luts, options, generator):
    graded = apply_lut(image, luts[int(torch.randint(len(luts), (), generator=generator))])
    if len(luts) > 1 and _chance(generator, options.lut_blend):
        second = luts[int(torch.randint(len(luts), (), generator=generator))]
        mix = float(_uniform(generator, 0.2, 0.8))
        graded = (1 - mix) * graded + mix * apply_lut(image, second)
    strength = float(_uniform(generator, *options.lut_strength))
    return image + strength * (graded - image)


def _linear_light(image, options, generator, white_balance: bool, exposure: bool):
    gains = torch.ones(3)
    if white_balance:
        kelvin = math.exp(float(_uniform(generator, *(math.log(k) for k in options.kelvin_range))))
        gains = white_balance_gains(kelvin, float(_uniform(generator, -options.max_tint, options.max_tint)))
    if exposure:
        gains = gains * 2.0 ** float(_uniform(generator, -options.max_stops, options.max_stops))
    return linear_gains(image, gains)


def _lift_gamma_gain(image, options, generator):
    gamma = torch.exp(_uniform(generator, -options.max_log_gamma, options.max_log_gamma, (3,)))
    lift = _uniform(generator, -options.max_lift, options.max_lift, (3,))
    gain = 1 + _uniform(generator, -options.max_gain, options.max_gain, (3,))
    return lift + (gain - lift) * image.clamp(0.0, 1.0) ** gamma


def _contrast(image, options, generator):
    amount = float(_uniform(generator, -options.max_contrast, options.max_contrast))
    smooth = image.clamp(0.0, 1.0)
    smooth = smooth * smooth * (3 - 2 * smooth)  # an S-curve through 0, 0.5 and 1
    return image + amount * (smooth - image)


def _film_curve(image, generator):
    """A filmic tone curve: a soft toe (shadows compressed) and shoulder (highlights rolled off)."""
    toe, shoulder = float(_uniform(generator, 0.0, 0.15)), float(_uniform(generator, 0.0, 0.3))
    x = image.clamp(0.0, 1.0)
    curve = x - toe * x * (1 - x) ** 2 * 4 + shoulder * x**2 * (1 - x) * 2
    return curve.clamp(0.0, 1.0)


def _saturation(image, options, generator):
    return scale_saturation(image, float(_uniform(generator, *options.saturation_range)))


def _split_toning(image, options, generator):
    luma = (image.clamp(0.0, 1.0) @ LUMA).unsqueeze(-1)
    shadows = _random_hue(generator, float(_uniform(generator, 0.0, options.max_split_tone)))
    highlights = _random_hue(generator, float(_uniform(generator, 0.0, options.max_split_tone)))
    return image + (1 - luma) ** 2 * shadows + luma**2 * highlights


def _fade(image, options, generator):
    lift = float(_uniform(generator, 0.0, options.max_fade))
    colour = 1.0 + _random_hue(generator, float(_uniform(generator, 0.0, 0.5)))  # a faded look is often tinted
    black, white = lift * colour, 1.0 - 0.5 * lift
    return black + (white - black) * image


def _grade_one(image: torch.Tensor, luts: Sequence[Lut], options: GradeOptions, generator: torch.Generator):
    """One random grade of ``image`` ``[H, W, 3]`` (0..1)."""
    out = image
    white_balance, exposure = _chance(generator, options.white_balance), _chance(generator, options.exposure)
    if white_balance or exposure:
        out = _linear_light(out, options, generator, white_balance, exposure)
    if luts and _chance(generator, options.lut):
        out = _lut(out, luts, options, generator)
    if _chance(generator, options.curves):
        out = _lift_gamma_gain(out, options, generator)
    if _chance(generator, options.film_curve):
        out = _film_curve(out, generator)
    elif _chance(generator, options.contrast):
        out = _contrast(out, options, generator)
    if _chance(generator, options.saturation):
        out = _saturation(out, options, generator)
    if _chance(generator, options.split_toning):
        out = _split_toning(out, options, generator)
    if _chance(generator, options.fade):
        out = _fade(out, options, generator)
    return out.clamp(0.0, 1.0)


def random_grades(
    images: torch.Tensor, luts: Sequence[Lut], generator: torch.Generator, options: GradeOptions = None
) -> torch.Tensor:
    """A different random grade for each of ``images`` ``[B, H, W, 3]``; the result has the same shape."""
    options = options or GradeOptions()
    graded = []
    for image in images:
        if _chance(generator, options.ungraded):
            graded.append(image)
            continue
        out = _grade_one(image, luts, options, generator)
        if _chance(generator, options.mild):
            out = image + float(_uniform(generator, *options.mild_range)) * (out - image)
        graded.append(out)
    return torch.stack(graded)

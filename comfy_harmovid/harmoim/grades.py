"""Random colour grades for training the learned HarmoIm: what a person filmed elsewhere may look like.

A grade is a chain of common colour operations, each present or not at random: a .cube LUT (or a blend of
two), white balance and exposure in linear light, saturation, per-channel tone curves (gamma, lift,
gain) and contrast. Some samples are left ungraded and many are graded only mildly (the grade is
mixed back toward the original), so the network learns when to leave a person alone.
"""

from dataclasses import dataclass
from typing import Sequence

import torch

from ..color import Lut, apply_lut, linear_to_srgb, srgb_to_linear
from .transform import LUMA


@dataclass
class GradeOptions:
    ungraded: float = 0.25  # share of samples left as they are
    mild: float = 0.35  # share of graded samples mixed back toward the original
    lut: float = 0.6  # chance of a LUT
    lut_blend: float = 0.3  # chance that the LUT is a blend of two
    white_balance: float = 0.5
    exposure: float = 0.5
    saturation: float = 0.4
    curves: float = 0.4
    contrast: float = 0.3
    max_temperature: float = 0.35  # red/blue gain change in linear light
    max_tint: float = 0.15  # green gain change
    max_stops: float = 1.0
    saturation_range: tuple = (0.5, 1.5)
    max_log_gamma: float = 0.3
    max_lift: float = 0.06
    max_gain: float = 0.15
    max_contrast: float = 0.5


def _uniform(generator: torch.Generator, low: float, high: float, shape=()) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def _chance(generator: torch.Generator, probability: float) -> bool:
    return bool(torch.rand((), generator=generator) < probability)


def _grade_one(image: torch.Tensor, luts: Sequence[Lut], options: GradeOptions, generator: torch.Generator):
    """One random grade of ``image`` ``[H, W, 3]`` (0..1)."""
    out = image
    if luts and _chance(generator, options.lut):
        first = luts[int(torch.randint(len(luts), (), generator=generator))]
        graded = apply_lut(out, first)
        if len(luts) > 1 and _chance(generator, options.lut_blend):
            second = luts[int(torch.randint(len(luts), (), generator=generator))]
            mix = float(_uniform(generator, 0.2, 0.8))
            graded = (1 - mix) * graded + mix * apply_lut(out, second)
        out = graded
    white_balance, exposure = _chance(generator, options.white_balance), _chance(generator, options.exposure)
    if white_balance or exposure:
        linear = srgb_to_linear(out)
        gains = torch.ones(3)
        if white_balance:
            temperature = float(_uniform(generator, -options.max_temperature, options.max_temperature))
            tint = float(_uniform(generator, -options.max_tint, options.max_tint))
            gains = torch.tensor([1 + temperature, 1 + tint, 1 - temperature])
        if exposure:
            gains = gains * 2.0 ** float(_uniform(generator, -options.max_stops, options.max_stops))
        out = linear_to_srgb((linear * gains).clamp(0.0, 1.0))
    if _chance(generator, options.saturation):
        luma = (out @ LUMA).unsqueeze(-1)
        out = luma + float(_uniform(generator, *options.saturation_range)) * (out - luma)
    if _chance(generator, options.curves):
        gamma = torch.exp(_uniform(generator, -options.max_log_gamma, options.max_log_gamma, (3,)))
        lift = _uniform(generator, -options.max_lift, options.max_lift, (3,))
        gain = 1 + _uniform(generator, -options.max_gain, options.max_gain, (3,))
        out = lift + (gain - lift) * out.clamp(0.0, 1.0) ** gamma
    if _chance(generator, options.contrast):
        amount = float(_uniform(generator, -options.max_contrast, options.max_contrast))
        smooth = out.clamp(0.0, 1.0)
        smooth = smooth * smooth * (3 - 2 * smooth)  # an S-curve through 0, 0.5 and 1
        out = out + amount * (smooth - out)
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
            out = image + float(_uniform(generator, 0.15, 0.6)) * (out - image)
        graded.append(out)
    return torch.stack(graded)

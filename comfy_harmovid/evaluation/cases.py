"""Test cases of the evaluation protocols: a degraded input, the clean reference it should become, the
person's mask and alpha; and the paper's LUT cases, built from portrait clips and .cube LUTs (the
harmonize benchmark and ``harmovid train evaluate`` score on them)."""

from dataclasses import dataclass, field
from typing import Sequence, Tuple

import numpy as np
import torch

from ..color import Lut, apply_lut
from .dev_data import Portrait


@dataclass
class Case:
    """One test case: the degraded ``input`` a method gets, the clean ``reference`` it should reach,
    the person ``mask`` (scoring) and soft ``alpha`` (what the method is given), and ``info`` for the JSON."""

    name: str
    input: torch.Tensor
    reference: torch.Tensor
    mask: torch.Tensor
    alpha: torch.Tensor
    info: dict = field(default_factory=dict)


def composite(foreground: torch.Tensor, background: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``alpha * foreground + (1 - alpha) * background``: ``[T, H, W, 3]`` clips, ``[T, H, W]`` alpha."""
    weight = alpha[..., None]
    return weight * foreground + (1 - weight) * background


class LutCases(Sequence):
    """The protocol's cases, each built only when asked for (a split of 72 cases would not fit in memory).

    ``pairs``: ``(portrait index, LUT index)`` per case. With ``binary_mask`` the binary mask replaces
    the soft alpha for compositing and as the methods' input.
    """

    def __init__(self, portraits: Sequence[Portrait], luts: Sequence[Tuple[str, Lut]], pairs, binary_mask: bool):
        self.portraits, self.luts, self.pairs, self.binary_mask = portraits, luts, list(pairs), binary_mask
        self.names = [self._name(p, lut) for p, lut in self.pairs]

    def _name(self, portrait: int, lut: int) -> str:
        name = self.portraits[portrait].name
        single = sum(1 for p, _ in self.pairs if p == portrait) == 1
        return name if single else f"{name}/{self.luts[lut][0]}"

    def __len__(self) -> int:
        return len(self.pairs)

    def _info(self, index: int) -> dict:
        portrait, lut = self.pairs[index]
        return {"clip": self.portraits[portrait].name, "lut": self.luts[lut][0]}

    def infos(self) -> dict:
        """``{case name: {"clip", "lut"}}`` without building the cases."""
        return {name: self._info(index) for index, name in enumerate(self.names)}

    def __getitem__(self, index: int) -> Case:
        portrait, lut_index = self.pairs[index]
        person = self.portraits[portrait]
        alpha = person.mask if self.binary_mask else person.alpha
        recoloured = composite(apply_lut(person.frames, self.luts[lut_index][1]), person.frames, alpha)
        return Case(self.names[index], recoloured, person.frames, person.mask, alpha, self._info(index))


def lut_cases(portraits: Sequence[Portrait], luts: Sequence[Tuple[str, Lut]], seed: int, *,
              all_pairs: bool = False, binary_mask: bool = False) -> LutCases:
    """Every clip with every LUT (``all_pairs``), else one case per clip with a LUT drawn from ``seed``
    and the clip's index."""
    if all_pairs:
        pairs = [(p, lut) for p in range(len(portraits)) for lut in range(len(luts))]
    else:
        pairs = [(p, int(np.random.default_rng([seed, p]).integers(len(luts)))) for p in range(len(portraits))]
    return LutCases(portraits, luts, pairs, binary_mask)

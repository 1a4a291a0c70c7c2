"""Per-frame HarmoIm's methods by name ("statistics", "learned", "auto"), and the whole-clip
:func:`harmonize_frames` (the HarmoIm Frames node and ``harmovid harmonize-frames``)."""

from typing import Optional

import torch

from ..errors import HarmoVidError
from ..progress import ProgressCallback, report
from ..validate import check_frames, check_mask, check_not_empty, check_same_length
from .learned import LearnedHarmonizer
from .statistics import StatisticsHarmonizer
from .skin import SkinSettings
from .trims import PersonTrims, TrimmedHarmonizer
from .weights import default_weights_path

METHODS = ("statistics", "learned")


def available_methods() -> list:
    """The methods that can run here: "learned" only when its default weights are present."""
    return [name for name in METHODS if name != "learned" or default_weights_path() is not None]


def default_method() -> str:
    """"learned" when its weights are present, else "statistics"."""
    return "learned" if "learned" in available_methods() else "statistics"


def resolve_method(method: str, weights=None) -> str:
    """``method`` with "auto" replaced: "learned" when weights are given or the default ones exist, else
    "statistics"."""
    if method == "auto":
        return "learned" if weights is not None else default_method()
    if method not in METHODS:
        raise HarmoVidError(f"unknown harmonization method {method!r}; choose auto or one of: {', '.join(METHODS)}.")
    return method


def make_harmonizer(method: str = "statistics", strength: float = 1.0, *, weights=None,
                    trims: Optional[PersonTrims] = None, skin_balance: bool = False):
    """The streaming harmonizer of ``method`` ("statistics", "learned" or "auto"); ``weights`` and
    ``skin_balance`` (the face's skin taken toward natural skin, ``skin.py``) only for "learned";
    ``trims``: the artist's exposure, white balance and saturation on the person after it."""
    if trims is not None and not isinstance(trims, PersonTrims):
        raise HarmoVidError(f"trims: expected PersonTrims, got {type(trims).__name__}.")
    if resolve_method(method, weights) == "learned":
        harmonizer = LearnedHarmonizer(strength, weights=weights, skin=SkinSettings() if skin_balance else None)
    elif skin_balance:
        raise HarmoVidError("The skin balance belongs to the learned HarmoIm; choose method learned (or auto "
                            "with its weights present), or turn the skin balance off.")
    else:
        harmonizer = StatisticsHarmonizer(strength)
    return harmonizer if trims is None or trims.is_identity else TrimmedHarmonizer(harmonizer, trims)


def harmonize_frames(
    composite: torch.Tensor,
    alpha: torch.Tensor,
    background: Optional[torch.Tensor] = None,
    *,
    method: str = "statistics",
    strength: float = 1.0,
    weights=None,
    trims: Optional[PersonTrims] = None,
    skin_balance: bool = False,
    progress: ProgressCallback = None,
    chunk_frames: int = 16,
) -> torch.Tensor:
    """Harmonize each frame of ``composite`` ``[T, H, W, 3]`` toward the background's light.

    ``alpha`` ``[T, H, W]`` (1 = person) says where the person is; ``background`` (optional, same size)
    is the clean background plate, else the composite outside the alpha is used. ``strength`` 0..1.
    ``method`` "learned" uses ``weights`` (a file or loaded ``HarmoImNet``; None = the default weights);
    "auto" is "learned" when there are weights, else "statistics". ``trims`` (``PersonTrims``): the artist's
    exposure, white balance and saturation on the person, after the automatic change (with ``strength`` 0,
    only the trims). ``skin_balance`` (learned only): also take the face's skin toward natural skin.
    Returns ``[T, H, W, 3]``; pixels with alpha 0 are unchanged.
    """
    harmonizer = make_harmonizer(method, strength, weights=weights, trims=trims, skin_balance=skin_balance)
    composite = check_frames(composite, "composite")
    alpha = check_mask(alpha, "alpha")
    check_same_length(composite, alpha, "composite", "alpha")
    check_not_empty(alpha, "alpha")
    if background is not None:
        background = check_frames(background, "background")
        check_same_length(composite, background, "composite", "background")
    total = composite.shape[0]
    outputs = []
    for start in range(0, total, chunk_frames):
        stop = min(start + chunk_frames, total)
        chunk_background = None if background is None else background[start:stop]
        outputs.append(harmonizer.process(composite[start:stop], alpha[start:stop], chunk_background))
        report(progress, stop, total)
    return torch.cat(outputs)

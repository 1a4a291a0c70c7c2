"""``harmovid bench harmonize``: the paper's LUT protocol.

Each portrait clip's foreground is recoloured by one .cube LUT (chosen per clip from the seed) and
composited back, through the soft alpha, over its own untouched background. A method gets the
composite and the alpha (no background clip: the composite's own background is the scene's light)
and must restore the original clip. Scores: PSNR/SSIM/RMSE over the frame, fPSNR/fMSE over the
person mask, warping error (frame and foreground) with the original clip's flow, and motion
preservation against the original clip (whole frame, the paper's Table 1).
"""

from typing import Sequence, Tuple

import numpy as np
import torch

from ..color import Lut, apply_lut
from ..progress import ProgressCallback
from . import methods as method_registry
from .data import Portrait
from .protocol import Case, add_arguments, evaluate, result_document, run_command

DESCRIPTION = (
    "LUT protocol: the foreground of each clip is recoloured by one LUT (seeded choice per clip) and "
    "composited over its own untouched background through the soft alpha; methods get the composite and "
    "alpha and must restore the original clip. Flow for the temporal metrics comes from the original clip."
)


def composite(foreground: torch.Tensor, background: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    weight = alpha[..., None]
    return weight * foreground + (1 - weight) * background


def lut_cases(portraits: Sequence[Portrait], luts: Sequence[Tuple[str, Lut]], seed: int):
    """One case per clip: its foreground recoloured by a LUT drawn from ``seed`` and the clip's index."""
    cases = []
    for index, portrait in enumerate(portraits):
        rng = np.random.default_rng([seed, index])
        lut_name, lut = luts[int(rng.integers(len(luts)))]
        recoloured = composite(apply_lut(portrait.frames, lut), portrait.frames, portrait.alpha)
        cases.append(Case(portrait.name, recoloured, portrait.frames, portrait.mask, portrait.alpha, {"lut": lut_name}))
    return cases


def run_harmonize_protocol(
    portraits: Sequence[Portrait],
    luts: Sequence[Tuple[str, Lut]],
    *,
    seed: int = 0,
    methods: Sequence[str] = (),
    settings: dict = None,
    progress: ProgressCallback = None,
):
    """Score harmonization ``methods`` (names; all available when empty) on the LUT protocol.

    Returns ``(result document, contact-sheet rows)``.
    """
    chosen = method_registry.select(method_registry.harmonize_methods(), methods)
    runners = {name: (lambda case, run=run: run(case.input, case.alpha, case.mask)) for name, run in chosen.items()}
    cases = lut_cases(portraits, luts, seed)
    per_case, sheet_rows = evaluate(
        cases, runners, motion_in_mask=False, sheet_frames=lambda t: (0, t - 1), progress=progress
    )
    settings = dict(settings or {}, seed=seed, methods=list(chosen))
    return result_document("harmonize", DESCRIPTION, settings, cases, per_case), sheet_rows


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "harmonize", help="The paper's LUT protocol: restore LUT-recoloured portraits.", description=__doc__
    )
    add_arguments(parser, available_methods=lambda: method_registry.harmonize_methods())
    parser.set_defaults(func=lambda args: run_command(args, "harmonize protocol", run_harmonize_protocol))

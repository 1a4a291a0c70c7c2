"""``harmovid bench deflicker``: the paper's jitter protocol.

Each frame's foreground is recoloured by its own random blend of two LUTs (drawn from the seed), and
composited over the clip's untouched background: frame-to-frame colour flicker in the person only,
like per-frame harmonization makes. A method gets the jittered frames, the original clip as the
unprocessed reference (for motion only) and the soft alpha, and must remove the flicker. Scores:
warping error (frame and foreground) with the original clip's flow, fPSNR and the other frame
metrics against the original clip, and motion preservation over the foreground (the paper's Table 2).
"""

from functools import partial
from typing import Sequence, Tuple

import numpy as np
import torch

from ..color import Lut, apply_lut, blend_luts
from ..errors import HarmoVidError
from ..evaluation.cases import composite
from ..evaluation.dev_data import Portrait
from ..progress import ProgressCallback
from . import methods as method_registry
from . import report as reporting
from .protocol import Case, add_arguments, evaluate, result_document, run_command

DESCRIPTION = (
    "Jitter protocol: each frame's foreground is recoloured by its own random blend of two LUTs (seeded) "
    "and composited over the untouched background through the soft alpha; methods get the jittered frames, "
    "the original clip as motion reference and the alpha, and must remove the flicker. Flow for the "
    "temporal metrics comes from the original clip."
)


def jitter_cases(portraits: Sequence[Portrait], luts: Sequence[Tuple[str, Lut]], seed: int, jitter: float = 1.0):
    """One case per clip: every frame's foreground through a different random blend of two LUTs,
    applied at strength ``jitter`` (1 = the full LUTs, as the paper; lower = milder flicker)."""
    cases = []
    for index, portrait in enumerate(portraits):
        rng = np.random.default_rng([seed, index])
        jittered, recipe = [], []
        for frame in portrait.frames:
            picks = rng.choice(len(luts), size=min(2, len(luts)), replace=False)
            weights = rng.dirichlet(np.ones(len(picks)))
            lut = blend_luts([luts[i][1] for i in picks], weights.tolist())
            jittered.append(apply_lut(frame, lut, strength=jitter))
            recipe.append({"luts": [luts[i][0] for i in picks], "weights": [round(float(w), 4) for w in weights]})
        jittered = composite(torch.stack(jittered), portrait.frames, portrait.alpha)
        cases.append(Case(portrait.name, jittered, portrait.frames, portrait.mask, portrait.alpha, {"frames": recipe}))
    return cases


def run_deflicker_protocol(
    portraits: Sequence[Portrait],
    luts: Sequence[Tuple[str, Lut]],
    *,
    seed: int = 0,
    jitter: float = 1.0,
    methods: Sequence[str] = (),
    settings: dict = None,
    progress: ProgressCallback = None,
):
    """Score deflicker ``methods`` (names; all available when empty) on the jitter protocol, with the
    per-frame LUTs applied at strength ``jitter``.

    Returns ``(result document, contact-sheet rows)``.
    """
    chosen = method_registry.select(method_registry.deflicker_methods(), methods)
    runners = {name: (lambda case, run=run: run(case.input, case.reference, case.alpha)) for name, run in chosen.items()}
    if not 0.0 < jitter <= 1.0:
        raise HarmoVidError(f"--jitter must be in (0, 1], got {jitter}.")
    cases = jitter_cases(portraits, luts, seed, jitter)
    # Two consecutive frames per clip show the flicker side by side.
    per_case, sheet_rows = evaluate(
        cases, runners, motion_in_mask=True, sheet_frames=lambda t: (t // 2, t // 2 + 1), progress=progress
    )
    reporting.add_ratio_to_clean(per_case)
    settings = dict(settings or {}, seed=seed, jitter=jitter, methods=list(chosen))
    return result_document("deflicker", DESCRIPTION, settings, {case.name: case.info for case in cases}, per_case), sheet_rows


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "deflicker", help="The paper's jitter protocol: remove per-frame LUT flicker.", description=__doc__
    )
    add_arguments(parser, available_methods=lambda: method_registry.deflicker_methods())
    parser.add_argument(
        "--jitter", type=float, default=1.0,
        help="strength of each frame's LUT blend, 0..1 (default 1: full LUTs, as the paper; lower = milder flicker)",
    )
    parser.set_defaults(
        func=lambda args: run_command(args, "jitter protocol", partial(run_deflicker_protocol, jitter=args.jitter))
    )

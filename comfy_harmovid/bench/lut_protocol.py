"""``harmovid bench harmonize``: the paper's LUT protocol.

Each portrait clip's foreground is recoloured by a .cube LUT and composited back, through the alpha,
over its own untouched background. A method gets the composite and the alpha (no background clip: the
composite's own background is the scene's light) and must restore the original clip. Scores:
PSNR/SSIM/RMSE over the frame, fPSNR/fMSE over the person mask, warping error (frame and foreground)
with the original clip's flow, and motion preservation against the original clip (whole frame, the
paper's Table 1).

Cases: one LUT per clip drawn from the seed, or (``--all-pairs``) every clip with every LUT, so that a
split of people and LUTs left out of training is scored whole. With ``--binary-mask`` the person is
composited and given to the methods through the segmenter's binary mask instead of the soft alpha.
The spread over cases (``spread.py``: mean gain over doing nothing, 10th percentile, share of cases
that got worse, worst case) is reported per method, and drawn with ``--histogram``.
"""

from typing import Sequence, Tuple

from ..color import Lut
from ..evaluation.cases import lut_cases
from ..evaluation.dev_data import Portrait
from ..progress import ProgressCallback
from . import methods as method_registry
from .protocol import add_arguments, evaluate, result_document, run_command
from .spread import gain_spread

DESCRIPTION = (
    "LUT protocol: the foreground of each clip is recoloured by a LUT (a seeded choice per clip, or every "
    "LUT) and composited over its own untouched background through the alpha; methods get the composite and "
    "alpha and must restore the original clip. Flow for the temporal metrics comes from the original clip."
)


def run_harmonize_protocol(
    portraits: Sequence[Portrait],
    luts: Sequence[Tuple[str, Lut]],
    *,
    seed: int = 0,
    all_pairs: bool = False,
    binary_mask: bool = False,
    sheet: bool = True,
    methods: Sequence[str] = (),
    settings: dict = None,
    progress: ProgressCallback = None,
):
    """Score harmonization ``methods`` (names; all available when empty) on the LUT protocol.

    Returns ``(result document, contact-sheet rows)``; the document's ``spread`` holds each method's
    gain over doing nothing across cases (when "identity" is among the methods).
    """
    chosen = method_registry.select(method_registry.harmonize_methods(), methods)
    runners = {name: (lambda case, run=run: run(case.input, case.alpha, case.mask)) for name, run in chosen.items()}
    cases = lut_cases(portraits, luts, seed, all_pairs=all_pairs, binary_mask=binary_mask)
    sheet_frames = (lambda t: (0, t - 1)) if sheet else (lambda t: ())
    per_case, sheet_rows = evaluate(cases, runners, motion_in_mask=False, sheet_frames=sheet_frames, progress=progress)
    settings = dict(settings or {}, seed=seed, all_pairs=all_pairs, binary_mask=binary_mask, methods=list(chosen))
    result = result_document("harmonize", DESCRIPTION, settings, cases.infos(), per_case)
    if "identity" in chosen:
        result["spread"] = gain_spread(per_case, "fpsnr", baseline="identity")
    return result, sheet_rows


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "harmonize", help="The paper's LUT protocol: restore LUT-recoloured portraits.", description=__doc__
    )
    add_arguments(parser, available_methods=lambda: method_registry.harmonize_methods())
    parser.add_argument("--all-pairs", action="store_true",
                        help="score every clip with every LUT (default: one seeded LUT per clip)")
    parser.add_argument("--binary-mask", action="store_true",
                        help="composite and give the methods the binary person mask instead of the soft alpha")
    parser.add_argument("--histogram", metavar="OUT.png",
                        help="draw each method's fPSNR gain over doing nothing, case by case")

    def run(args):
        def protocol(portraits, luts, **options):
            return run_harmonize_protocol(portraits, luts, all_pairs=args.all_pairs, binary_mask=args.binary_mask,
                                          sheet=bool(args.sheet), **options)

        return run_command(args, "harmonize protocol", protocol)

    parser.set_defaults(func=run)

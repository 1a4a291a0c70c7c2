"""``harmovid harmonize-frames``: per-frame HarmoIm alone, file to file.

It streams its inputs in chunks (bounded memory for long videos) through the same streaming harmonizer
the library offers, so the step can be run and scored on its own. Inputs are anything
``comfy_harmovid.io`` reads (videos, PNG folders, images); outputs .mp4/.mov, lossless .mkv or a folder/.
"""

from ..errors import HarmoVidError
from ..harmoim import METHODS, make_harmonizer, skin
from ..io import probe_video
from ..validate import check_strength
from .common import (add_person_trim_arguments, add_step_output_arguments, companion_chunks,
                     person_trims, stream_file_to_file)


def _harmonize_frames(args) -> int:
    if args.method not in ("auto",) + METHODS:
        raise HarmoVidError(f"--method {args.method!r} is unknown; choose auto or one of: {', '.join(METHODS)}.")
    harmonizer = make_harmonizer(args.method, check_strength(args.strength, "--strength"), weights=args.weights,
                                 trims=person_trims(args), skin_balance=args.skin_balance)
    info = probe_video(args.composite)
    companions = [
        companion_chunks(args.mask, "--mask", info, mask=True),
        companion_chunks(args.background, "--background", info, mask=False),
    ]
    return stream_file_to_file(args, args.composite, harmonizer.process, companions)


def register(subparsers) -> None:
    harmonize = subparsers.add_parser(
        "harmonize-frames",
        help="Per-frame harmonization (HarmoIm) of a composite toward its background's light.",
        description="Harmonize each frame of a composite video given the person's alpha/mask.",
    )
    harmonize.add_argument("--composite", required=True, help="composite video or PNG folder")
    harmonize.add_argument("--mask", required=True, help="alpha or mask of the person (white = person)")
    harmonize.add_argument("--background", default=None, help="clean background plate (optional)")
    harmonize.add_argument("--method", default="auto",
                           help=f"auto (default: learned when its weights are present, else statistics), {', '.join(METHODS)}")
    harmonize.add_argument("--weights", default=None, help="learned HarmoIm weights file (default: the shipped ones)")
    harmonize.add_argument("--skin-balance", action="store_true", help=skin.HELP)
    add_step_output_arguments(harmonize)
    add_person_trim_arguments(harmonize)
    harmonize.set_defaults(func=_harmonize_frames)

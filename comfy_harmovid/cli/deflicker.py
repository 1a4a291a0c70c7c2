"""``harmovid deflicker``: the Lighting Deflicker alone, file to file.

It streams its inputs in chunks (bounded memory for long videos) through the library's streaming
:class:`~comfy_harmovid.deflicker.Deflicker` (causal), so the step can be run and scored on its own.
Inputs are anything ``comfy_harmovid.io`` reads (videos, PNG folders, images); outputs .mp4/.mov,
lossless .mkv or a folder/.
"""

from ..deflicker import Deflicker
from ..io import probe_video
from ..validate import check_strength
from .common import add_step_output_arguments, companion_chunks, stream_file_to_file


def _deflicker(args) -> int:
    engine = Deflicker(check_strength(args.strength, "--strength"))
    info = probe_video(args.input)
    companions = [
        companion_chunks(args.mask, "--mask", info, mask=True),
        companion_chunks(args.reference, "--reference", info, mask=False),
    ]
    return stream_file_to_file(args, args.input, engine.process, companions)


def register(subparsers) -> None:
    deflicker = subparsers.add_parser(
        "deflicker",
        help="Remove lighting flicker from a processed video (flow-guided temporal consistency).",
        description="Lighting Deflicker: keep each frame's detail, take its colours from the running mean of the "
                    "frames before it along the motion (streamed in chunks, so causal; the node and the library's "
                    "deflicker() hold the whole clip and also look ahead).",
    )
    deflicker.add_argument("--input", required=True, help="the flickering (processed) video")
    deflicker.add_argument("--mask", default=None, help="correct only inside this mask (white = foreground)")
    deflicker.add_argument("--reference", default=None, help="the unprocessed video, used for motion only")
    add_step_output_arguments(deflicker)
    deflicker.set_defaults(func=_deflicker)

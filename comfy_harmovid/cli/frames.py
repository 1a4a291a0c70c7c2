"""``harmovid harmonize-frames`` and ``harmovid deflicker``: each built-in step alone, file to file.

Both stream their inputs in chunks (bounded memory for long videos) through the same streaming engine
classes the library offers, so a step can be run and scored on its own. Inputs are anything
``comfy_harmovid.io`` reads (videos, PNG folders, images); outputs .mp4/.mov, lossless .mkv or a folder/.
"""

from ..deflicker import Deflicker
from ..errors import HarmoVidError
from ..harmonize import METHODS, make_harmonizer
from ..io import VideoWriter, iter_mask_chunks, iter_video_chunks, probe_video
from ..progress import progress_bar
from ..validate import check_strength
from .common import add_output_arguments

CHUNK_FRAMES = 16


def _companion_chunks(path, name, main_info, *, mask: bool):
    """Chunks of a second input that must match the main input frame for frame (or None)."""
    if path is None:
        return None
    info = probe_video(path)
    if (info.width, info.height) != (main_info.width, main_info.height):
        raise HarmoVidError(
            f"{name} {path} is {info.width}x{info.height} but the input is {main_info.width}x{main_info.height}. "
            "Resize it to match."
        )
    if info.frame_count < main_info.frame_count:
        raise HarmoVidError(
            f"{name} {path} has {info.frame_count} frames but the input has {main_info.frame_count}. "
            "Give one with at least as many frames."
        )
    reader = iter_mask_chunks if mask else iter_video_chunks
    return reader(path, CHUNK_FRAMES, max_frames=main_info.frame_count)


def _stream(args, main_path, step, companions) -> int:
    """Run ``step(chunk, *companion_chunks)`` over the main input and write the result."""
    info = probe_video(main_path)
    audio = main_path if info.has_audio and not str(args.output).endswith("/") else None
    done = 0
    with progress_bar(args.command) as progress, VideoWriter(
        args.output, info.fps, audio_from=audio, audio_start=info.start_time, overwrite=args.overwrite
    ) as writer:
        for chunk in iter_video_chunks(main_path, CHUNK_FRAMES):
            extra = [None if c is None else next(c) for c in companions]
            writer.write(step(chunk, *extra))
            done += chunk.shape[0]
            progress(done, info.frame_count)
    print(f"wrote {args.output} ({done} frames at {info.fps:g} fps)")
    return 0


def _harmonize_frames(args) -> int:
    if args.method not in ("auto",) + METHODS:
        raise HarmoVidError(f"--method {args.method!r} is unknown; choose auto or one of: {', '.join(METHODS)}.")
    harmonizer = make_harmonizer(args.method, check_strength(args.strength, "--strength"), weights=args.weights)
    info = probe_video(args.composite)
    companions = [
        _companion_chunks(args.mask, "--mask", info, mask=True),
        _companion_chunks(args.background, "--background", info, mask=False),
    ]
    return _stream(args, args.composite, harmonizer.process, companions)


def _deflicker(args) -> int:
    engine = Deflicker(check_strength(args.strength, "--strength"))
    info = probe_video(args.input)
    companions = [
        _companion_chunks(args.mask, "--mask", info, mask=True),
        _companion_chunks(args.reference, "--reference", info, mask=False),
    ]
    return _stream(args, args.input, engine.process, companions)


def _add_output(parser) -> None:
    add_output_arguments(parser)
    parser.add_argument("--strength", type=float, default=1.0, help="0 = unchanged .. 1 = full (default 1)")


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
    _add_output(harmonize)
    harmonize.set_defaults(func=_harmonize_frames)

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
    _add_output(deflicker)
    deflicker.set_defaults(func=_deflicker)

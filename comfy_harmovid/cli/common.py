"""Helpers shared by the command modules: JSON output, the output options, and the file-to-file
streaming of the single-step commands (``harmonize-frames``, ``deflicker``).

The terminal progress bar is ``comfy_harmovid.progress.progress_bar``: the benchmarks use it too."""

import json
from dataclasses import fields

from ..errors import HarmoVidError
from ..harmoim import PersonTrims
from ..io import VideoWriter, iter_mask_chunks, iter_video_chunks, probe_video
from ..progress import progress_bar

CHUNK_FRAMES = 16  # frames the single-step commands read, process and write at a time


def print_json(data) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def add_output_arguments(parser, default=None) -> None:
    """``-o/--output`` (required unless ``default``) and ``--overwrite``, the same for every command."""
    parser.add_argument("-o", "--output", required=default is None, default=default,
                        help=".mp4/.mov (H.264), .mkv (lossless FFV1) or a folder/ of PNGs")
    parser.add_argument("--overwrite", action="store_true", help="replace the output if it exists")


def add_step_output_arguments(parser) -> None:
    """The output options (:func:`add_output_arguments`) and ``--strength``, for the single-step commands."""
    add_output_arguments(parser)
    parser.add_argument("--strength", type=float, default=1.0, help="0 = unchanged .. 1 = full (default 1)")


def add_person_trim_arguments(parser) -> None:
    """``--person-exposure``, ``--person-temperature``, ``--person-tint``, ``--person-saturation``: the
    artist's trims on the person after the automatic harmonization (``harmoim.PersonTrims``)."""
    group = parser.add_argument_group("person trims (after the automatic harmonization, through the alpha)")
    for item in fields(PersonTrims):
        low, high = PersonTrims.RANGES[item.name]
        group.add_argument(f"--person-{item.name}", dest=f"person_{item.name}", type=float, default=item.default,
                           help=f"{PersonTrims.HELP[item.name]}; {low:g}..{high:g} (default {item.default:g})")


def person_trims(args) -> PersonTrims:
    """The ``PersonTrims`` of the options :func:`add_person_trim_arguments` added."""
    return PersonTrims(**{item.name: getattr(args, f"person_{item.name}") for item in fields(PersonTrims)})


def companion_chunks(path, name, main_info, *, mask: bool):
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


def stream_file_to_file(args, main_path, step, companions) -> int:
    """Run ``step(chunk, *companion_chunks)`` over the main input, chunk by chunk, and write the result
    (with the main input's audio) to ``args.output``."""
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

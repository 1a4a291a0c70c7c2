"""Helpers shared by the command modules: JSON output and the output options.

The terminal progress bar is ``comfy_harmovid.progress.progress_bar``: the benchmarks use it too."""

import json


def print_json(data) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def add_output_arguments(parser, default=None) -> None:
    """``-o/--output`` (required unless ``default``) and ``--overwrite``, the same for every command."""
    parser.add_argument("-o", "--output", required=default is None, default=default,
                        help=".mp4/.mov (H.264), .mkv (lossless FFV1) or a folder/ of PNGs")
    parser.add_argument("--overwrite", action="store_true", help="replace the output if it exists")

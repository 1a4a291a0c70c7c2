"""Helpers shared by the command modules: terminal progress bars and JSON output."""

import json
import sys
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def progress_bar(description: str, unit: str = "frame"):
    """Yield a ``progress(done, total)`` callback drawing a tqdm bar on stderr."""
    bar = tqdm(desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=None)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


def print_json(data) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def add_output_arguments(parser, default=None) -> None:
    """``-o/--output`` (required unless ``default``) and ``--overwrite``, the same for every command."""
    parser.add_argument("-o", "--output", required=default is None, default=default,
                        help=".mp4/.mov (H.264), .mkv (lossless FFV1) or a folder/ of PNGs")
    parser.add_argument("--overwrite", action="store_true", help="replace the output if it exists")

"""Progress reporting shared by the engine, the nodes and the command line.

Engine functions that do long work take ``progress``: a callable ``progress(done, total)`` or None.
The nodes pass one that ticks ComfyUI's progress bar (and raises when the user interrupts), the
commands and benchmarks one from ``progress_bar``, which draws a terminal bar. The engine itself never
prints.
"""

import sys
from contextlib import contextmanager
from typing import Callable, Optional

ProgressCallback = Optional[Callable[[int, int], None]]


def report(progress: ProgressCallback, done: int, total: int) -> None:
    """Call ``progress`` if one was given."""
    if progress is not None:
        progress(done, total)


def scaled(progress: ProgressCallback, offset: int, total: int) -> ProgressCallback:
    """A callback for one stage of a longer job: its ``done`` is shifted by ``offset`` units."""
    if progress is None:
        return None
    return lambda done, _stage_total: progress(offset + done, total)


@contextmanager
def progress_bar(description: str, unit: str = "frame"):
    """Yield a ``progress(done, total)`` callback drawing a tqdm bar on stderr (for commands and benchmarks)."""
    from tqdm import tqdm  # imported here: engine modules import this file but never draw a bar

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

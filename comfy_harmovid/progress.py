"""Progress reporting shared by the engine, the nodes and the command line.

Engine functions that do long work take ``progress``: a callable ``progress(done, total)`` or None.
The nodes pass one that ticks ComfyUI's progress bar (and raises when the user interrupts), the
command line one that draws a terminal bar. The engine itself never prints.
"""

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

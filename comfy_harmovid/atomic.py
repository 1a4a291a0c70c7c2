"""Writing a file so that readers see the old file or the whole new one, never a half-written one."""

import contextlib
import os
from pathlib import Path

from .process_status import status_field


def current_umask() -> int:
    """The process's file-creation mask.

    Linux reports it in /proc (since 4.7); elsewhere reading it means setting it, so it is set straight
    back, which for an instant is process-wide: a file another thread creates then gets mode 0666.
    """
    reported = status_field("Umask")
    if reported is not None:
        return int(reported, 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; when the block ends without error it is renamed to
    ``path`` (replacing it), otherwise it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()

"""Fields of this process's status as Linux reports it in /proc/self/status."""

from pathlib import Path
from typing import Optional


def status_field(name: str) -> Optional[str]:
    """The first value of field ``name`` (e.g. ``"Umask"``, ``"VmHWM"``) of /proc/self/status, as text;
    None where there is no such file (not Linux) or no such field (an older kernel)."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split()[1]
    return None

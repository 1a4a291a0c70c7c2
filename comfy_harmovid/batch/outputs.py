"""Saving what a server returns, treating it as untrusted.

A job's outputs are downloaded into a hidden staging folder next to their final place and moved
into place together once all of them arrived, so an output folder never holds a partial download or
half of a job. A file name from the server must be a plain name (no path separator, no ``..``) and
a subfolder a relative path of plain names; sizes are capped; existing files are kept unless the
caller allows overwriting.
"""

import os
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import List, Optional, Tuple

from ..errors import HarmoVidError

DEFAULT_MAX_BYTES = 4 * 1024**3


class UnsafeServerData(HarmoVidError):
    """The server sent a file name or size this client refuses to write."""


def _check_component(part: str, what: str, original: str) -> None:
    if part in ("", ".", "..") or "\x00" in part or ":" in part or part.startswith("~"):
        raise UnsafeServerData(f"The server returned an unsafe {what} '{original}'; refusing to write it.")


def safe_relative_path(subfolder: str, filename: str) -> PurePosixPath:
    """The relative path for a server's ``(subfolder, filename)``, or UnsafeServerData."""
    if not isinstance(filename, str) or not isinstance(subfolder or "", str):
        raise UnsafeServerData(f"The server returned an unsafe file name (not text): {filename!r}.")
    if "/" in filename or "\\" in filename:
        raise UnsafeServerData(f"The server returned an unsafe file name (it has a path separator), '{filename}'; refusing to write it.")
    _check_component(filename, "file name", filename)
    parts: List[str] = []
    if subfolder:
        if subfolder.startswith(("/", "\\")):
            raise UnsafeServerData(f"The server returned an unsafe, absolute subfolder '{subfolder}'; refusing to write it.")
        for part in subfolder.replace("\\", "/").split("/"):
            if part == "":
                continue
            _check_component(part, "subfolder", subfolder)
            parts.append(part)
    return PurePosixPath(*parts, filename)


class JobOutputs:
    """The staging folder for one job's downloads and the move into ``final_dir`` when complete."""

    def __init__(self, final_dir: Path, overwrite: bool = False, max_bytes: int = DEFAULT_MAX_BYTES):
        self.final_dir = Path(final_dir)
        self.overwrite = overwrite
        self.max_bytes = max_bytes
        self.staging = self.final_dir.parent / f".{self.final_dir.name}.partial-{uuid.uuid4().hex[:8]}"
        self.files: List[PurePosixPath] = []

    def target(self, subfolder: str, filename: str) -> Tuple[PurePosixPath, Path]:
        """Check a server name and reserve its place: (relative path, staging path to write)."""
        relative = safe_relative_path(subfolder, filename)
        if relative in self.files:
            raise UnsafeServerData(f"The server returned '{relative}' twice for one job.")
        final = self.final_dir / relative
        if final.exists() and not self.overwrite:
            raise HarmoVidError(f"Output {final} already exists. Pass --overwrite to replace it, or use another output folder.")
        staged = self.staging / relative
        staged.parent.mkdir(parents=True, exist_ok=True)
        self.files.append(relative)
        return relative, staged

    def check_size(self, size: Optional[int], what: str) -> None:
        if size is not None and size > self.max_bytes:
            raise UnsafeServerData(
                f"{what} is {size} bytes, over the {self.max_bytes}-byte limit. Raise --max-output-mb if this is expected."
            )

    def commit(self) -> List[PurePosixPath]:
        """Move every staged file into place (without replacing existing files unless allowed)."""
        # Not comfy_harmovid.atomic.atomic_output, which writes one file in one block: a job's files are
        # downloaded one by one into the staging folder and only moved once all arrived, and without
        # --overwrite a hard link refuses an existing file with no check-then-write race.
        for relative in self.files:
            staged, final = self.staging / relative, self.final_dir / relative
            final.parent.mkdir(parents=True, exist_ok=True)
            if self.overwrite:
                os.replace(staged, final)
                continue
            try:
                os.link(staged, final)  # fails if final exists: no check-then-write race
            except FileExistsError:
                raise HarmoVidError(f"Output {final} already exists. Pass --overwrite to replace it, or use another output folder.") from None
            except OSError:  # file systems without hard links
                if final.exists():
                    raise HarmoVidError(f"Output {final} already exists. Pass --overwrite to replace it.") from None
                os.replace(staged, final)
        self.discard()
        return list(self.files)

    def discard(self) -> None:
        """Remove the staging folder and anything partly downloaded into it."""
        shutil.rmtree(self.staging, ignore_errors=True)

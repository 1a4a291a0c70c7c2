"""The batch manifest: one JSON line per finished, failed or interrupted job, appended as it happens.

Each line is written whole with one ``write`` and flushed, so an interrupted run leaves a manifest
whose every line is a complete record (a torn last line, e.g. from a power cut, is ignored when
read). The last record of an input wins, so ``--resume`` sees what happened most recently.
"""

import json
import os
from pathlib import Path
from typing import Any, Dict, List

from ..errors import HarmoVidError

DONE = "done"
FAILED = "failed"
INTERRUPTED = "interrupted"


class Manifest:
    def __init__(self, path):
        self.path = Path(path)

    def read(self) -> List[Dict[str, Any]]:
        """All complete records, in order."""
        if self.path.is_dir():
            raise HarmoVidError(f"Manifest path {self.path} is a folder. Give a file path with --manifest.")
        if not self.path.exists():
            return []
        records = []
        with open(self.path, "r", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a torn line from a crash: the job is simply not recorded
                if not isinstance(record, dict) or "input" not in record:
                    raise HarmoVidError(f"{self.path} line {number} is not a harmovid batch record. Use another --manifest path.")
                records.append(record)
        return records

    def latest(self) -> Dict[str, Dict[str, Any]]:
        """The last record of each input."""
        return {record["input"]: record for record in self.read()}

    def append(self, record: Dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(descriptor, line)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

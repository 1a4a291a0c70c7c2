"""Run one benchmark measurement in a fresh Python process, so its peak memory is its own.

A measuring module ``M`` runs as ``python -m M '<job json>'`` and prints its result as JSON on its
last line; :func:`run_isolated` starts it and returns that result (or ``{"error": ...}``).
"""

import json
import resource
import subprocess
import sys


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(module: str, job: dict) -> dict:
    finished = subprocess.run([sys.executable, "-m", module, json.dumps(job)], capture_output=True, text=True)
    if finished.returncode != 0:
        lines = finished.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit code {finished.returncode}"}
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main_for(measure) -> None:
    """The ``__main__`` body of a measuring module: run ``measure(job)`` and print its JSON."""
    print(json.dumps(measure(json.loads(sys.argv[1]))))

"""Run one benchmark measurement in a fresh Python process, so its peak memory is its own.

A measuring module ``M`` runs as ``python -m M '<job json>'`` and prints its result as JSON on its
last line; :func:`run_isolated` starts it and returns that result (or ``{"error": ...}``).
"""

import json
import os
import resource
import subprocess
import sys

from ..process_status import status_field


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB.

    Linux: VmHWM from /proc/self/status, because getrusage's ru_maxrss survives fork+exec and would
    report the parent's (larger) peak for a fresh subprocess. Elsewhere: getrusage (KiB on Linux,
    bytes on macOS).
    """
    reported = status_field("VmHWM")  # KiB
    if reported is not None:
        return int(reported) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def run_isolated(module: str, job: dict, *, threads: int = 0) -> dict:
    """Run ``module``'s measurement of ``job`` in a fresh process; ``threads`` > 0 caps its threads."""
    environment = dict(os.environ)
    if threads:
        environment["OMP_NUM_THREADS"] = str(threads)  # no idle OpenMP workers spinning
    command = [sys.executable, "-m", module, json.dumps(job)]
    finished = subprocess.run(command, capture_output=True, text=True, env=environment)
    if finished.returncode != 0:
        lines = finished.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit code {finished.returncode}"}
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main_for(measure) -> None:
    """The ``__main__`` body of a measuring module: run ``measure(job)`` and print its JSON."""
    print(json.dumps(measure(json.loads(sys.argv[1]))))

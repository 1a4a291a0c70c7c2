"""Installs what ``requirements-nodeps.txt`` pins (MediaPipe, SAM 2, the sample clips) into the running
Python, with ``pip install --no-deps``.

ComfyUI-Manager runs this with ComfyUI's interpreter after ``pip install -r requirements.txt``; by hand:
``python install.py`` from this folder. ``--no-deps`` keeps those packages' own pins (a second OpenCV,
jax, torchvision) out: ``requirements.txt`` already has what they need at run time. Packages already
installed at the pinned version are skipped, so running it again changes nothing, and torch is never
installed or replaced.
"""

import importlib.metadata
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

REQUIREMENTS = Path(__file__).resolve().parent / "requirements-nodeps.txt"
# ComfyUI's own torch build (CPU, CUDA or ROCm) must stay as it is.
NEVER_INSTALLED = {"torch", "torchvision", "torchaudio"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")


def read_pins(path=REQUIREMENTS) -> list:
    """``[(name, version), ...]`` from a requirements file of ``name==version`` lines (comments allowed)."""
    pins = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        if match is None:
            raise SystemExit(f"{path}:{number}: {line!r} is not of the form name==version; pin an exact version.")
        name, version = match.groups()
        if name.lower().replace("_", "-") in NEVER_INSTALLED:
            raise SystemExit(f"{path}:{number}: {name} is ComfyUI's own; remove it from this file.")
        pins.append((name, version))
    return pins


def installed_version(name: str):
    """The installed version of distribution ``name``, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing(pins, version_of=installed_version) -> list:
    """The pins that are not installed at exactly their version."""
    return [(name, version) for name, version in pins if version_of(name) != version]


def pip_available() -> bool:
    return importlib.util.find_spec("pip") is not None


def install(pins=None, *, run=subprocess.call, version_of=installed_version, has_pip=pip_available) -> int:
    """Install the missing ``pins`` with ``python -m pip install --no-deps``; the exit status."""
    pins = read_pins() if pins is None else pins
    todo = missing(pins, version_of)
    if not todo:
        print("comfy-harmovid: " + ", ".join(f"{n}=={v}" for n, v in pins) + " already installed.")
        return 0
    specs = [f"{name}=={version}" for name, version in todo]
    if not has_pip():
        print(
            f"comfy-harmovid: pip is not available in {sys.executable}, so {', '.join(specs)} could not be "
            f"installed. Install them into this Python without their dependencies, e.g. "
            f"`uv pip install --python {sys.executable} --no-deps {' '.join(specs)}`, or add pip "
            f"(`{sys.executable} -m ensurepip`) and run install.py again.",
            file=sys.stderr,
        )
        return 1
    command = [sys.executable, "-m", "pip", "install", "--no-deps", *specs]
    print("comfy-harmovid: " + " ".join(command), flush=True)
    status = run(command)
    if status != 0:
        print(f"comfy-harmovid: pip failed (exit status {status}) installing {', '.join(specs)}.", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(install())

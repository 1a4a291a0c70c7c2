"""Fresh virtual environments for the packaging tests, built offline and in seconds.

A new venv (without pip of its own) sees the test interpreter's installed packages through a
path file pointing at a folder of links to them, minus the distributions a test wants absent (this
package, MediaPipe, ...). Packages a test installs come from wheels made here: the checkout's own
(``pip wheel``) or repacked from an installed distribution's files.
"""

import base64
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a pip install of the package reads: the sources and the files pyproject.toml names.
PACKAGE_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "comfy_harmovid")


def clean_env(**extra) -> dict:
    """The environment for child processes: nothing that points Python or pip at the checkout or an index."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "HARMOVID_MODELS_DIR") and not key.startswith("PIP_")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1", PIP_NO_INPUT="1", **extra)
    return env


def top_level_entries(name: str) -> set:
    """The site-packages entries (packages, modules, dist-info, libs folders) of installed distribution ``name``."""
    files = importlib.metadata.distribution(name).files or []
    return {Path(str(file)).parts[0] for file in files if not str(file).startswith("..")}


def dist_info_folder(distribution) -> str:
    return next(Path(str(f)).parts[0] for f in distribution.files if Path(str(f)).parts[0].endswith(".dist-info"))


def make_venv(where: Path, hidden=()) -> Path:
    """A venv at ``where`` that sees this interpreter's packages except the distributions in ``hidden``
    (and this package's editable install); returns its python."""
    try:
        venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(where)
    except Exception as error:  # e.g. a Python built without the venv module's support files
        pytest.skip(f"cannot create a virtual environment here: {error}")
    python = where / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    excluded = {entry for name in ("comfy-harmovid", *hidden) for entry in top_level_entries(name)}
    shared = where / "shared-site-packages"
    shared.mkdir()
    source = Path(sysconfig.get_paths()["purelib"])
    for entry in source.iterdir():
        if entry.name in excluded or entry.name.startswith("__editable__") or entry.suffix == ".pth":
            continue
        (shared / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    (site / "shared-site-packages.pth").write_text(f"{shared}\n")
    return python


def build_wheel(out: Path) -> Path:
    """The checkout's wheel, built by pip without build isolation (offline) from a copy of its sources."""
    source = out / "source"
    source.mkdir(parents=True)
    for name in PACKAGE_SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                             "-w", str(out), "-q"], capture_output=True, text=True, env=clean_env(), cwd=out)
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    (wheel,) = out.glob("comfy_harmovid-*.whl")
    return wheel


def repack_wheel(name: str, out: Path) -> Path:
    """A wheel of installed distribution ``name`` made from its installed files (RECORD rewritten)."""
    distribution = importlib.metadata.distribution(name)
    site = Path(distribution.locate_file(""))
    info = dist_info_folder(distribution)
    skipped = {f"{info}/{leaf}" for leaf in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    normalized = re.sub(r"[-_.]+", "_", distribution.metadata["Name"])
    wheel = out / f"{normalized}-{distribution.version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as archive:
        for file in distribution.files:
            relative = Path(str(file)).as_posix()
            path = site / relative
            if relative.startswith("..") or "__pycache__" in relative or relative in skipped or not path.is_file():
                continue
            data = path.read_bytes()
            archive.writestr(relative, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{relative},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def load_pack_like_comfyui(pack: Path) -> str:
    """Python source that imports the checkout at ``pack`` as ComfyUI loads a custom node folder: its
    ``__init__.py`` under the folder's name (which may contain a dash), while ComfyUI's own top-level
    ``nodes`` module is already imported. The loaded pack is bound to ``module``."""
    return f"""
import importlib.util, sys, types
sys.modules["nodes"] = types.ModuleType("nodes")  # ComfyUI's own nodes.py
spec = importlib.util.spec_from_file_location("comfy-harmovid", r"{pack / '__init__.py'}",
                                              submodule_search_locations=[r"{pack}"])
module = importlib.util.module_from_spec(spec)
sys.modules["comfy-harmovid"] = module
spec.loader.exec_module(module)
"""

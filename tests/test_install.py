"""install.py, which ComfyUI-Manager runs after ``pip install -r requirements.txt``: the packages that must
skip their own pins, installed with --no-deps into the running Python, once."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fresh_env import clean_env, load_pack_like_comfyui, make_venv, repack_wheel

ROOT = Path(__file__).resolve().parents[1]


def load_install_script():
    spec = importlib.util.spec_from_file_location("harmovid_install", ROOT / "install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pins_are_read_and_only_missing_or_other_versions_are_installed(capsys):
    install = load_install_script()
    pins = install.read_pins()
    assert [name for name, _ in pins] == ["mediapipe", "sam2", "scikit-video"]
    calls = []

    def run(command):
        calls.append(command)
        return 0

    everything = {name: version for name, version in pins}
    assert install.install(pins, run=run, version_of=everything.get) == 0
    assert calls == [], "pip ran although every pin was installed"
    assert "already installed" in capsys.readouterr().out

    versions = dict(everything, mediapipe="0.10.9")
    del versions["sam2"]
    assert install.install(pins, run=run, version_of=versions.get) == 0
    (command,) = calls
    assert command[:5] == [sys.executable, "-m", "pip", "install", "--no-deps"]
    assert command[5:] == [f"mediapipe=={everything['mediapipe']}", f"sam2=={everything['sam2']}"]


def test_no_pip_gives_one_clear_message_and_a_failure(capsys):
    install = load_install_script()
    status = install.install([("sam2", "1.1.0")], run=pytest.fail, version_of=lambda name: None, has_pip=lambda: False)
    assert status != 0
    message = capsys.readouterr().err
    assert "pip is not available" in message and "--no-deps sam2==1.1.0" in message


def test_torch_and_loose_pins_are_refused(tmp_path):
    install = load_install_script()
    for line in ("torch==2.13.0", "sam2>=1.0"):
        (tmp_path / "requirements.txt").write_text(f"{line}\n")
        with pytest.raises(SystemExit, match="torch|exact version"):
            install.read_pins(tmp_path / "requirements.txt")


def test_comfyui_manager_install_in_a_fresh_environment_gives_a_working_builtin_segmenter(tmp_path):
    """Manager's steps: clone into custom_nodes, pip install -r requirements.txt, run install.py; then
    ComfyUI imports the pack. The packages come from local wheels (no network)."""
    install = load_install_script()
    names = [name for name, _ in install.read_pins()]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in names:
        repack_wheel(name, wheels)
    python = make_venv(tmp_path / "venv", hidden=names)
    pack = tmp_path / "ComfyUI" / "custom_nodes" / "comfy-harmovid"
    pack.mkdir(parents=True)
    for item in ("__init__.py", "install.py", "requirements.txt", "requirements-nodeps.txt", "nodes", "comfy_harmovid"):
        if (ROOT / item).is_dir():
            shutil.copytree(ROOT / item, pack / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / item, pack / item)
    env = clean_env(PIP_FIND_LINKS=str(wheels))

    def run(*args):
        result = subprocess.run([str(python), *args], cwd=pack, capture_output=True, text=True, env=env)
        assert result.returncode == 0, f"{args} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    missing = subprocess.run([str(python), "-c", "import mediapipe"], capture_output=True, env=env)
    assert missing.returncode != 0, "the fresh environment already has mediapipe"
    run("-m", "pip", "install", "-q", "-r", "requirements.txt")
    assert "pip install --no-deps" in run("install.py")
    assert "already installed" in run("install.py"), "a second run did not find everything installed"

    script = "import pathlib\nimport torch\n" + load_pack_like_comfyui(pack) + f"""
import comfy_harmovid, mediapipe, sam2, skvideo
venv = pathlib.Path(r"{tmp_path / 'venv'}")
assert pathlib.Path(mediapipe.__file__).is_relative_to(venv), mediapipe.__file__
assert pathlib.Path(comfy_harmovid.__file__).is_relative_to(pathlib.Path(r"{pack}")), comfy_harmovid.__file__
from comfy_harmovid.segment.portrait import segment_portrait
frames = torch.full((2, 96, 128, 3), 0.8)
yy, xx = torch.meshgrid(torch.arange(96), torch.arange(128), indexing="ij")
frames[:, ((yy - 40) / 22) ** 2 + ((xx - 64) / 18) ** 2 <= 1] = torch.tensor([0.75, 0.55, 0.45])
mask = segment_portrait(frames)
assert mask.shape == (2, 96, 128) and 0 <= float(mask.min()) <= float(mask.max()) <= 1
print(len(module.NODE_CLASS_MAPPINGS))
"""
    assert int(run("-c", script).strip().splitlines()[-1]) > 0

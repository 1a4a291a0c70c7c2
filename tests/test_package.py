"""The checkout works as a ComfyUI custom node folder, as a pip package, and every node is well formed."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import nodes
from comfy_harmovid.errors import HarmoVidError
from fresh_env import load_pack_like_comfyui

ROOT = Path(__file__).resolve().parents[1]


def test_comfyui_imports_the_checkout_as_a_package_without_shadowing_its_nodes_module(tmp_path):
    script = load_pack_like_comfyui(ROOT) + """
assert sys.modules["nodes"].__name__ == "nodes" and not hasattr(sys.modules["nodes"], "NODE_CLASS_MAPPINGS")
print(len(module.NODE_CLASS_MAPPINGS), sorted(module.NODE_DISPLAY_NAME_MAPPINGS.values()))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, f"ComfyUI-style import failed:\n{result.stderr}"
    assert int(result.stdout.split()[0]) == len(nodes.NODE_CLASS_MAPPINGS)


def test_front_end_extension_is_served_from_the_pack_and_fetches_nothing_from_elsewhere():
    import re

    tree = ast.parse((ROOT / "__init__.py").read_text())
    web = next(node.value.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
               and any(getattr(target, "id", "") == "WEB_DIRECTORY" for target in node.targets))
    scripts = sorted((ROOT / web).glob("*.js"))
    assert scripts, f"WEB_DIRECTORY {web!r} holds no JavaScript"
    for script in scripts:
        text = script.read_text()
        assert not re.search(r"https?://", text), f"{script.name} names a web address: the extension must work offline"
        for module in re.findall(r'^import .* from "([^"]+)";', text, re.MULTILINE):
            assert module.startswith(("./", "../../scripts/")), f"{script.name} imports {module}: only the pack's own files and ComfyUI's"


def test_root_init_also_imports_as_a_plain_module():
    # pytest imports the root __init__.py this way when the checkout's folder name is not a Python
    # name (CI may clone into "comfy-harmovid"): it must not fail on the relative import.
    script = f"""
import importlib.util
spec = importlib.util.spec_from_file_location("__init__", r"{ROOT / '__init__.py'}")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(len(module.NODE_CLASS_MAPPINGS))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.strip().splitlines()[-1]) >= 10


def test_every_node_is_documented_and_in_the_harmovid_category():
    assert nodes.NODE_CLASS_MAPPINGS, "no nodes were collected from nodes/"
    for key, cls in nodes.NODE_CLASS_MAPPINGS.items():
        assert key.startswith("HarmoVid"), f"{key}: node keys are prefixed 'HarmoVid'"
        assert key in nodes.NODE_DISPLAY_NAME_MAPPINGS, f"{key} has no display name"
        assert cls.CATEGORY.startswith("HarmoVid"), f"{key}: category {cls.CATEGORY!r}"
        assert getattr(cls, "DESCRIPTION", "").strip(), f"{key} has no DESCRIPTION"
        assert callable(getattr(cls, cls.FUNCTION)), f"{key}: FUNCTION {cls.FUNCTION!r} is not a method"
        inputs = cls.INPUT_TYPES()
        for group in ("required", "optional"):
            for name, spec in inputs.get(group, {}).items():
                options = spec[1] if len(spec) > 1 else {}
                assert options.get("tooltip"), f"{key}.{name} has no tooltip"
        assert len(cls.RETURN_TYPES) == len(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES))


def test_engine_never_imports_comfyui():
    forbidden = {"comfy", "folder_paths", "server", "execution", "nodes", "comfy_api"}
    for path in (ROOT / "comfy_harmovid").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.relative_to(ROOT)} imports {name}"


def test_requirements_for_comfyui_manager_leave_torch_alone_and_match_pyproject():
    requirements = [
        line.split(";")[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(line.lower().startswith(("torch", "torchvision")) for line in requirements)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = set(pyproject["project"]["dependencies"]) - {d for d in pyproject["project"]["dependencies"] if d.startswith("torch")}
    assert declared <= set(requirements), f"missing from requirements.txt: {declared - set(requirements)}"
    comfy = pyproject["tool"]["comfy"]
    for field in ("PublisherId", "DisplayName", "Icon", "requires-comfyui"):
        assert comfy.get(field), f"[tool.comfy] lacks {field}"


def test_wheel_ships_the_default_weights_and_configs_and_a_plain_install_finds_them(tmp_path):
    import zipfile

    from fresh_env import build_wheel, clean_env, make_venv

    from comfy_harmovid.harmoim.weights import DEFAULT_WEIGHTS_NAME

    wheel = build_wheel(tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    resources = ROOT / "comfy_harmovid" / "resources"
    needed = {f"comfy_harmovid/resources/harmoim/{DEFAULT_WEIGHTS_NAME}"} | {
        path.relative_to(ROOT).as_posix() for path in resources.glob("configs/*/*") if path.suffix in (".json", ".yaml")
    }
    assert len(needed) > 10, f"the shipped configs were not found under {resources}"
    assert needed <= names, f"missing from the wheel: {sorted(needed - names)}"
    assert not any(name.startswith(("models/", "docs/", "tests/")) for name in names)

    python = make_venv(tmp_path / "venv")
    install = subprocess.run([python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
                             capture_output=True, text=True, env=clean_env())
    assert install.returncode == 0, install.stderr[-3000:]
    script = f"""
import comfy_harmovid, pathlib
assert pathlib.Path(comfy_harmovid.__file__).is_relative_to(pathlib.Path(r"{tmp_path / 'venv'}")), comfy_harmovid.__file__
from comfy_harmovid.harmoim import default_method
from comfy_harmovid.harmoim import default_weights_path, load_harmoim
from comfy_harmovid.train.trainer import TrainConfig
assert default_method() == "learned", default_method()
load_harmoim()
TrainConfig.from_file("tiny", manifest="m.yaml", vae="vae.safetensors")
print(default_weights_path())
"""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = subprocess.run([python, "-c", script], cwd=outside, capture_output=True, text=True, env=clean_env())
    assert result.returncode == 0, f"the installed package failed:\n{result.stderr[-3000:]}"
    assert result.stdout.strip().endswith(f"comfy_harmovid/resources/harmoim/{DEFAULT_WEIGHTS_NAME}")


def test_user_models_folder_comes_before_the_shipped_files(tmp_path, monkeypatch):
    from comfy_harmovid import locations
    from comfy_harmovid.harmoim.weights import DEFAULT_WEIGHTS_NAME, default_weights_path

    shipped = locations.shipped_path("harmoim")
    monkeypatch.delenv("HARMOVID_MODELS_DIR", raising=False)
    assert locations.model_folders("harmoim") == [shipped]
    assert locations.model_folders("sam2") == []
    assert default_weights_path() == shipped / DEFAULT_WEIGHTS_NAME

    monkeypatch.setenv("HARMOVID_MODELS_DIR", str(tmp_path))
    assert locations.model_folders("harmoim") == [tmp_path / "harmoim", shipped]
    (tmp_path / "harmoim").mkdir()
    (tmp_path / "harmoim" / DEFAULT_WEIGHTS_NAME).write_bytes(b"")
    assert default_weights_path() == tmp_path / "harmoim" / DEFAULT_WEIGHTS_NAME

    comfy_folder = tmp_path / "ComfyUI" / "models" / "harmoim"
    locations.use_host_model_folders(lambda kind: [str(tmp_path / "ComfyUI" / "models" / kind), str(shipped)])
    try:
        assert locations.model_folders("harmoim") == [comfy_folder, shipped], "a host's folders replace the variable's"
        assert locations.find_model("harmoim", DEFAULT_WEIGHTS_NAME) == shipped / DEFAULT_WEIGHTS_NAME
    finally:
        locations.use_host_model_folders(None)


def test_inside_comfyui_the_models_are_looked_up_in_comfyuis_folders_then_the_shipped_files(tmp_path, monkeypatch):
    import types

    from comfy_harmovid import locations
    from comfy_harmovid.harmoim.weights import DEFAULT_WEIGHTS_NAME, default_weights_path
    from nodes import comfy_adapter

    registered = {"sam2": ([str(tmp_path / "elsewhere" / "sam2")], {".pt"})}
    folder_paths = types.SimpleNamespace(models_dir=str(tmp_path / "models"), folder_names_and_paths=registered,
                                         get_folder_paths=lambda kind: list(registered[kind][0]))
    monkeypatch.setattr(comfy_adapter, "_folder_paths", folder_paths)
    monkeypatch.setattr(comfy_adapter, "IN_COMFYUI", True)
    monkeypatch.setenv("HARMOVID_MODELS_DIR", str(tmp_path / "ignored inside ComfyUI"))
    try:
        comfy_adapter.register_model_folders()
        shipped = locations.shipped_path("harmoim")
        assert comfy_adapter.model_folders("harmoim") == [tmp_path / "models" / "harmoim", shipped]
        assert comfy_adapter.model_folders("sam2") == [tmp_path / "elsewhere" / "sam2", tmp_path / "models" / "sam2"]
        assert registered["sam2"][1] == {".pt", ".safetensors"}
        assert default_weights_path() == shipped / DEFAULT_WEIGHTS_NAME
        assert DEFAULT_WEIGHTS_NAME in comfy_adapter.list_models("harmoim")
        (tmp_path / "models" / "harmoim").mkdir(parents=True)
        (tmp_path / "models" / "harmoim" / DEFAULT_WEIGHTS_NAME).write_bytes(b"")
        assert default_weights_path() == tmp_path / "models" / "harmoim" / DEFAULT_WEIGHTS_NAME
        with pytest.raises(HarmoVidError, match="refresh ComfyUI"):
            comfy_adapter.resolve_model_path("sam2", "absent.safetensors")
    finally:
        locations.use_host_model_folders(None)

"""The package's layers (docs/architecture.md): no module under comfy_harmovid/ imports a layer above
its own, the independent tools do not import each other, and nothing imports ComfyUI or the nodes."""

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "comfy_harmovid"

# Lowest first: the top-level modules and packages of comfy_harmovid in each layer. A module may import
# its own package, any lower layer and, unless its layer's packages are independent, the rest of its layer.
LAYERS = [
    ("foundation", {"__init__", "errors", "validate", "progress", "atomic", "locations", "filters", "color",
                    "flow", "frame_rate", "io", "demo_media", "footage", "contact_sheet", "previews",
                    "weights_files", "threads", "process_status"}, False),
    ("engine", {"segment", "alpha", "composite", "harmoim", "deflicker", "pipeline", "model",
                "sampling", "relight"}, False),
    ("evaluation", {"evaluation"}, False),
    ("tools", {"bench", "train", "batch"}, True),
    ("command line", {"cli", "__main__"}, False),
]
# The ComfyUI side: only nodes/ (outside this package) may import these.
FORBIDDEN = {"nodes", "comfy", "folder_paths", "server", "comfy_api", "comfy_execution"}


def layer_of(part: str):
    for rank, (name, parts, independent) in enumerate(LAYERS):
        if part in parts:
            return rank, name, independent
    return None


def top_level_part(path: Path) -> str:
    """``bench`` for comfy_harmovid/bench/masks.py, ``alpha`` for comfy_harmovid/alpha.py."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imported_modules(path: Path):
    """``(line, absolute module name)`` of every import in the file, also those inside functions."""
    package = ["comfy_harmovid", *path.relative_to(PACKAGE).parent.parts]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module == "comfy_harmovid":  # from .. import metrics: the names are the modules
                for alias in node.names:
                    yield node.lineno, f"comfy_harmovid.{alias.name}"
            else:
                yield node.lineno, module


def layering_violations():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE.parent)
        own = top_level_part(path)
        if layer_of(own) is None:
            problems.append(f"{where}: {own!r} is in no layer; add it to LAYERS here and to docs/architecture.md")
            continue
        rank, name, independent = layer_of(own)
        for line, module in imported_modules(path):
            parts = module.split(".")
            if parts[0] in FORBIDDEN:
                problems.append(f"{where}:{line} imports {module}: only nodes/ may touch ComfyUI or the nodes")
            if parts[0] != "comfy_harmovid" or len(parts) < 2 or parts[1] == own:
                continue
            target = layer_of(parts[1])
            if target is None:
                continue  # reported for that module itself
            target_rank, target_name, _ = target
            if target_rank > rank:
                problems.append(f"{where}:{line} imports {module}: {target_name} is a layer above {name}")
            elif target_rank == rank and independent:
                problems.append(f"{where}:{line} imports {module}: the {name} ({', '.join(sorted(LAYERS[rank][1]))}) "
                                "are independent of each other; move what they share to a lower layer")
    return problems


def test_no_module_imports_a_layer_above_its_own():
    problems = layering_violations()
    assert not problems, "imports against the layers of docs/architecture.md:\n" + "\n".join(problems)


def test_the_check_sees_relative_and_lazy_imports(tmp_path, monkeypatch):
    # A bench module importing the command line inside a function is caught.
    fake = tmp_path / "comfy_harmovid"
    (fake / "bench").mkdir(parents=True)
    (fake / "bench" / "masks.py").write_text("def run():\n    from ..cli.common import print_json\n")
    (fake / "alpha.py").write_text("from . import bench\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert layering_violations() == [
        "comfy_harmovid/alpha.py:1 imports comfy_harmovid.bench: tools is a layer above engine",
        "comfy_harmovid/bench/masks.py:2 imports comfy_harmovid.cli.common: command line is a layer above tools",
    ]

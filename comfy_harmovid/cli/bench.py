"""``harmovid bench NAME``: the benchmark commands, one module each in ``comfy_harmovid.bench``."""

import importlib
import pkgutil

from .. import bench


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="Measure quality, speed and memory.")
    bench_commands = parser.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    bench_commands.required = True
    for module_info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{bench.__name__}.{module_info.name}")
        if hasattr(module, "register"):
            module.register(bench_commands)

"""The ``harmovid`` command.

Each module in this package adds its sub-commands through ``register(subparsers)`` and sets
``func`` on its parser; this module only collects them, so a new command is a new module.
"""

import argparse
import importlib
import pkgutil
import sys

from ..errors import HarmoVidError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harmovid", description="Relightful video portrait harmonization (HarmoVid)."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_") or module_info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HarmoVidError as error:
        print(f"harmovid: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harmovid: interrupted; partial outputs were discarded.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Regenerate workflows/*.json (UI format) and workflows/api/*.json (API format) from
scripts/workflow_definitions/, using this pack's node classes for their inputs and defaults.

    python scripts/make_workflows.py          # write the files
    python scripts/make_workflows.py --check  # exit 1 if the files differ from what would be written
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import nodes  # noqa: E402  (this pack's node classes)
from workflow_definitions import CORE_NODES, dumps, generate, schema_from_class, write_workflows  # noqa: E402


def node_schemas() -> dict:
    """Schemas of the core nodes the workflows use plus every node class of this pack."""
    schemas = dict(CORE_NODES)
    for key, cls in nodes.NODE_CLASS_MAPPINGS.items():
        schemas[key] = schema_from_class(cls, nodes.NODE_DISPLAY_NAME_MAPPINGS.get(key))
    return schemas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="Only compare; exit 1 when a file is stale.")
    args = parser.parse_args()
    folder = ROOT / "workflows"
    if args.check:
        stale = [
            str(path.relative_to(ROOT))
            for name, (ui, api) in generate(node_schemas()).items()
            for path, data in ((folder / f"{name}.json", ui), (folder / "api" / f"{name}.json", api))
            if not path.exists() or path.read_text(encoding="utf-8") != dumps(data)
        ]
        for path in stale:
            print(f"stale: {path}")
        return 1 if stale else 0
    for path in write_workflows(folder, node_schemas()):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

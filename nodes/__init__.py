"""ComfyUI node classes, one module per family.

Each module defines NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS; this package merges them,
so a new family is added by adding a module.
"""

import importlib
import pkgutil

from . import comfy_adapter

comfy_adapter.register_model_folders()
comfy_adapter.register_routes()

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

for _module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _module_info.name == "comfy_adapter":
        continue
    _module = importlib.import_module(f"{__name__}.{_module_info.name}")
    NODE_CLASS_MAPPINGS.update(getattr(_module, "NODE_CLASS_MAPPINGS", {}))
    NODE_DISPLAY_NAME_MAPPINGS.update(getattr(_module, "NODE_DISPLAY_NAME_MAPPINGS", {}))

"""ComfyUI entry point for comfy-harmovid.

ComfyUI imports this folder as a package. The engine (``comfy_harmovid``) is imported by its own
name, so this folder goes on sys.path when it is not pip-installed; it is appended, never put
first, so ComfyUI's own modules (such as ``nodes``) are never shadowed.
"""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
try:
    import comfy_harmovid  # noqa: F401  (pip-installed, or already importable)
except ImportError:
    sys.path.append(_here)

if __package__:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402
else:
    # Imported as a plain module: pytest does this with the root __init__.py of a checkout whose folder
    # name is not a Python name (e.g. "comfy-harmovid"); the repository root is then on sys.path.
    from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

# The canvas widgets (points on the SAM2 Mask frame, dragging the person in Composite, previews):
# plain JavaScript modules ComfyUI's front end loads from here.
WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

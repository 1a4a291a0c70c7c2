"""The example workflows' single definition, which ``scripts/make_workflows.py`` writes to workflows/
in ComfyUI's UI and API formats (not part of the installed package):

- ``graph_format``: a workflow as a list of nodes, and its UI and API JSON;
- ``core_nodes``: the schemas of the ComfyUI core nodes the workflows use;
- ``examples``: the four example workflows.
"""

from .core_nodes import CORE_NODES, FILE_COMBOS
from .examples import WORKFLOWS, generate, write_workflows
from .graph_format import dumps, input_specs, schema_from_class

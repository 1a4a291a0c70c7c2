"""ComfyUI's two workflow formats, written from one definition.

A workflow is a list of ``NodeSpec``: a node's class, the widget values it changes from the class
defaults, and which output feeds each linked input. ``to_api`` and ``to_ui`` turn it into the API
format (what ``harmovid batch`` and ComfyUI's /prompt take) and the UI format (what the front end
opens), using node schemas shaped like ComfyUI's /object_info: ``{"input": {"required": {...},
"optional": {...}}, "output": [...], "output_name": [...], "display_name": ...}``. The core nodes'
schemas are in ``core_nodes.py``; those of this pack's nodes come from the node classes
(``schema_from_class``).
"""

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from comfy_harmovid.errors import HarmoVidError

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
SEED_NAMES = ("seed", "noise_seed")  # the front end adds a "control_after_generate" widget after these

def schema_from_class(cls, display_name: Optional[str] = None) -> Dict[str, Any]:
    """The /object_info-shaped schema of a (V1-style) ComfyUI node class."""
    return {
        "display_name": display_name or cls.__name__,
        "input": cls.INPUT_TYPES(),
        "output": list(cls.RETURN_TYPES),
        "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
    }


@dataclass(frozen=True)
class InputSpec:
    """One input of a node class: its name, type ("IMAGE", "INT", "COMBO", ...) and options."""

    name: str
    type: str
    options: Dict[str, Any]
    optional: bool

    @property
    def is_widget(self) -> bool:
        return self.type in WIDGET_TYPES and not self.options.get("forceInput")

    @property
    def choices(self) -> List[Any]:
        return list(self.options.get("options", []))

    @property
    def has_seed_control(self) -> bool:
        return self.type == "INT" and bool(self.options.get("control_after_generate", self.name in SEED_NAMES))


def input_specs(schema: Dict[str, Any]) -> List[InputSpec]:
    """The inputs of a schema in ComfyUI's order (required, then optional)."""
    specs = []
    for section in ("required", "optional"):
        for name, spec in (schema.get("input", {}).get(section) or {}).items():
            kind, options = spec[0], dict(spec[1]) if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if isinstance(kind, (list, tuple)):  # V1 combo: the list of choices
                options["options"], kind = list(kind), "COMBO"
            specs.append(InputSpec(name, kind, options, section == "optional"))
    return specs


def default_value(spec: InputSpec) -> Any:
    if "default" in spec.options:
        return spec.options["default"]
    if spec.type == "COMBO":
        return spec.choices[0] if spec.choices else ""
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[spec.type]


@dataclass
class NodeSpec:
    id: int
    class_type: str
    pos: Tuple[int, int]
    values: Dict[str, Any] = field(default_factory=dict)  # widget values that differ from the defaults
    links: Dict[str, Tuple[int, int]] = field(default_factory=dict)  # input name -> (source node id, output slot)
    title: Optional[str] = None


@dataclass
class WorkflowSpec:
    name: str  # file name without .json
    nodes: List[NodeSpec]


Schemas = Dict[str, Dict[str, Any]]


def _schema(schemas: Schemas, node: NodeSpec) -> Dict[str, Any]:
    if node.class_type not in schemas:
        raise HarmoVidError(
            f"Node {node.id} uses class '{node.class_type}', which is neither a core node nor one of this pack's "
            "nodes. Add the node class (nodes/) or fix the workflow definition in scripts/workflow_definitions/examples.py."
        )
    return schemas[node.class_type]


def _widget_values(node: NodeSpec, schema: Dict[str, Any]) -> Dict[str, Any]:
    """Every widget input's value (linked ones keep a value too, as the front end does)."""
    specs = {spec.name: spec for spec in input_specs(schema)}
    unknown = set(node.values) - set(specs)
    if unknown:
        raise HarmoVidError(f"Node {node.id} ({node.class_type}) has no input(s) {sorted(unknown)}; it has {sorted(specs)}.")
    return {name: node.values.get(name, default_value(spec)) for name, spec in specs.items() if spec.is_widget}


def topological_order(nodes: Sequence[NodeSpec]) -> List[NodeSpec]:
    by_id = {node.id: node for node in nodes}
    ordered, seen = [], set()

    def visit(node: NodeSpec, path=()):
        if node.id in seen:
            return
        if node.id in path:
            raise HarmoVidError(f"The workflow has a cycle through node {node.id}.")
        for source, _ in node.links.values():
            visit(by_id[source], path + (node.id,))
        seen.add(node.id)
        ordered.append(node)

    for node in sorted(nodes, key=lambda n: n.id):
        visit(node)
    return ordered


def to_api(workflow: WorkflowSpec, schemas: Schemas) -> Dict[str, Any]:
    """The API format: {"<id>": {"inputs": {...}, "class_type": ..., "_meta": {"title": ...}}}."""
    graph = {}
    for node in sorted(workflow.nodes, key=lambda n: n.id):
        schema = _schema(schemas, node)
        if schema.get("virtual"):
            continue
        values = _widget_values(node, schema)
        inputs = {}
        for spec in input_specs(schema):
            if spec.name in node.links:
                source, slot = node.links[spec.name]
                inputs[spec.name] = [str(source), slot]
            elif spec.name in values:
                inputs[spec.name] = values[spec.name]
        graph[str(node.id)] = {
            "inputs": inputs, "class_type": node.class_type,
            "_meta": {"title": node.title or schema.get("display_name", node.class_type)},
        }
    return graph


def _node_size(widgets: int, sockets: int, class_type: str) -> List[int]:
    if class_type in ("Note", "MarkdownNote"):
        return [400, 200]
    if class_type == "LoadVideo":
        return [320, 360]  # room for the video preview
    return [320, 46 + 24 * (widgets + sockets)]


def to_ui(workflow: WorkflowSpec, schemas: Schemas) -> Dict[str, Any]:
    """The UI format (schema version 0.4) the ComfyUI front end saves and opens."""
    order = {node.id: index for index, node in enumerate(topological_order(workflow.nodes))}
    ui_nodes, links, slot_of = [], [], {}
    # First pass: each node's UI input slots (sockets, plus widget inputs that are linked).
    slots: Dict[int, List[InputSpec]] = {}
    for node in workflow.nodes:
        schema = _schema(schemas, node)
        slots[node.id] = [s for s in input_specs(schema) if not s.is_widget or s.name in node.links]
        for index, spec in enumerate(slots[node.id]):
            slot_of[(node.id, spec.name)] = index
    outgoing: Dict[Tuple[int, int], List[int]] = {}
    link_id = 0
    for node in sorted(workflow.nodes, key=lambda n: n.id):
        for name, (source, slot) in sorted(node.links.items(), key=lambda item: slot_of[(node.id, item[0])]):
            link_id += 1
            source_node = next(n for n in workflow.nodes if n.id == source)
            link_type = _schema(schemas, source_node)["output"][slot]
            links.append([link_id, source, slot, node.id, slot_of[(node.id, name)], link_type])
            outgoing.setdefault((source, slot), []).append(link_id)
    incoming = {(link[3], link[4]): link[0] for link in links}
    for node in sorted(workflow.nodes, key=lambda n: n.id):
        schema = _schema(schemas, node)
        values = _widget_values(node, schema)
        widgets_values = []
        for spec in input_specs(schema):
            if spec.is_widget:
                widgets_values.append(values[spec.name])
                if spec.has_seed_control:
                    widgets_values.append("fixed")
                if spec.options.get("video_upload") or spec.options.get("image_upload"):
                    widgets_values.append("image")  # the upload button's value, as the front end saves it
        inputs = []
        for index, spec in enumerate(slots[node.id]):
            entry = {"name": spec.name, "type": spec.type, "link": incoming.get((node.id, index))}
            if spec.is_widget:
                entry["widget"] = {"name": spec.name}
            inputs.append(entry)
        outputs = [
            {"name": name, "type": kind, "links": outgoing.get((node.id, slot), []), "slot_index": slot}
            for slot, (kind, name) in enumerate(zip(schema["output"], schema["output_name"]))
        ]
        ui_node = {
            "id": node.id, "type": node.class_type, "pos": list(node.pos),
            "size": _node_size(len(widgets_values), max(len(inputs), len(outputs)), node.class_type),
            "flags": {}, "order": order[node.id], "mode": 0, "inputs": inputs, "outputs": outputs,
            "properties": {} if schema.get("virtual") else {"Node name for S&R": node.class_type},
            "widgets_values": widgets_values,
        }
        if node.title:
            ui_node["title"] = node.title
        if schema.get("virtual"):
            ui_node["color"], ui_node["bgcolor"] = "#432", "#653"
        ui_nodes.append(ui_node)
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfy-harmovid/workflows/{workflow.name}")),
        "revision": 0,
        "last_node_id": max(node.id for node in workflow.nodes),
        "last_link_id": link_id,
        "nodes": ui_nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.75, "offset": [40, 40]}},
        "version": 0.4,
    }


def dumps(data: Dict[str, Any]) -> str:
    """A workflow's JSON text as the files hold it."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

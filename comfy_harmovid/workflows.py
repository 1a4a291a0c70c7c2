"""The example workflows, defined once here and written in both of ComfyUI's formats.

A workflow is a list of ``NodeSpec``: a node's class, the widget values it changes from the class
defaults, and which output feeds each linked input. ``to_api`` and ``to_ui`` turn it into the API
format (what ``harmovid batch`` and ComfyUI's /prompt take) and the UI format (what the front end
opens), using node schemas shaped like ComfyUI's /object_info: ``{"input": {"required": {...},
"optional": {...}}, "output": [...], "output_name": [...], "display_name": ...}``. This module knows
the core nodes the workflows use (``CORE_NODES``); the schemas of this pack's nodes come from the
node classes (``schema_from_class``), which ``scripts/make_workflows.py`` passes in.
"""

import json
import os
import re
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import HarmoVidError

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
SEED_NAMES = ("seed", "noise_seed")  # the front end adds a "control_after_generate" widget after these

# Core nodes, as defined in ComfyUI (comfy_extras/nodes_video.py, comfy_extras/nodes_mask.py) and in
# its front end (Note and MarkdownNote are front-end-only nodes, left out of the API format).
CORE_NODES: Dict[str, Dict[str, Any]] = {
    "LoadVideo": {
        "display_name": "Load Video",
        "input": {"required": {"file": ("COMBO", {"options": [], "video_upload": True})}},
        "output": ["VIDEO"], "output_name": ["VIDEO"],
    },
    "GetVideoComponents": {
        "display_name": "Get Video Components",
        "input": {"required": {"video": ("VIDEO", {})}},
        "output": ["IMAGE", "AUDIO", "FLOAT"], "output_name": ["images", "audio", "fps"],
    },
    "CreateVideo": {
        "display_name": "Create Video",
        "input": {
            "required": {"images": ("IMAGE", {}),
                         "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0, "step": 1.0})},
            "optional": {"audio": ("AUDIO", {})},
        },
        "output": ["VIDEO"], "output_name": ["VIDEO"],
    },
    "SaveVideo": {
        "display_name": "Save Video",
        "input": {"required": {
            "video": ("VIDEO", {}),
            "filename_prefix": ("STRING", {"default": "video/ComfyUI"}),
            "format": ("COMBO", {"options": ["auto", "mp4"], "default": "auto"}),
            "codec": ("COMBO", {"options": ["auto", "h264"], "default": "auto"}),
        }},
        "output": [], "output_name": [], "output_node": True,
    },
    "MaskToImage": {
        "display_name": "Convert Mask to Image",
        "input": {"required": {"mask": ("MASK",)}},
        "output": ["IMAGE"], "output_name": ["IMAGE"],
    },
    "Note": {
        "display_name": "Note", "virtual": True,
        "input": {"required": {"text": ("STRING", {"multiline": True})}}, "output": [], "output_name": [],
    },
    "MarkdownNote": {
        "display_name": "Markdown Note", "virtual": True,
        "input": {"required": {"text": ("STRING", {"multiline": True})}}, "output": [], "output_name": [],
    },
}

# Combo inputs whose choices are files on the server (input folder, model folders): any name is valid here.
FILE_COMBOS = {("LoadVideo", "file"), ("HarmoVidLoader", "transformer"), ("HarmoVidLoader", "vae"), ("HarmoVidSAM2Mask", "model")}


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
            "nodes. Add the node class (nodes/) or fix the workflow definition in comfy_harmovid/workflows.py."
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


# ---- the workflows ---------------------------------------------------------------------------

def _video_in(first_id: int, y: int, title: str, file: str) -> List[NodeSpec]:
    """Load Video -> Get Video Components, ids ``first_id`` and ``first_id + 1``."""
    return [
        NodeSpec(first_id, "LoadVideo", (0, y), {"file": file}, title=title),
        NodeSpec(first_id + 1, "GetVideoComponents", (360, y), links={"video": (first_id, 0)}),
    ]


def _video_out(first_id: int, x: int, images: Tuple[int, int], fps: Tuple[int, int], prefix: str,
               audio: Optional[Tuple[int, int]] = None) -> List[NodeSpec]:
    """Create Video -> Save Video, ids ``first_id`` and ``first_id + 1``."""
    links = {"images": images, "fps": fps, **({"audio": audio} if audio else {})}
    return [
        NodeSpec(first_id, "CreateVideo", (x, 0), links=links),
        NodeSpec(first_id + 1, "SaveVideo", (x + 360, 0), {"filename_prefix": prefix}, links={"video": (first_id, 0)}),
    ]


def _note(node_id: int, pos: Tuple[int, int], text: str) -> NodeSpec:
    """A Note node. Lines are joined so the note reflows; a blank line or a numbered step starts a new line."""
    paragraphs: List[str] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        for line in (line.strip() for line in block.splitlines()):
            if paragraphs and not re.match(r"\d+\.\s", line) and not block.lstrip().startswith(line):
                paragraphs[-1] += " " + line
            else:
                paragraphs.append(line)
    return NodeSpec(node_id, "Note", pos, {"text": "\n".join(paragraphs)}, title="About this workflow")


def _portrait_front(y_background: int = 420) -> List[NodeSpec]:
    """Foreground and background clips in, the person cut out and composited: nodes 1-7."""
    return [
        *_video_in(1, 0, "Load Video (foreground: the person)", "foreground.mp4"),
        *_video_in(3, y_background, "Load Video (background: the new scene)", "background.mp4"),
        NodeSpec(5, "HarmoVidSAM2Mask", (720, 0), links={"frames": (2, 0)}),
        NodeSpec(6, "HarmoVidPseudoAlpha", (1080, 0), links={"frames": (2, 0), "mask": (5, 0)}),
        NodeSpec(7, "HarmoVidComposite", (1440, 0), links={
            "foreground": (2, 0), "background": (4, 0), "alpha": (6, 0), "foreground_fps": (2, 2), "background_fps": (4, 2)}),
    ]


def builtin_harmonization() -> WorkflowSpec:
    return WorkflowSpec("harmovid_builtin_harmonization", [
        *_portrait_front(),
        NodeSpec(8, "HarmoVidHarmoImFrames", (1800, 0), links={"composite": (7, 0), "alpha": (7, 1), "background": (7, 2)}),
        NodeSpec(9, "HarmoVidLightingDeflicker", (2160, 0), links={"frames": (8, 0), "reference": (7, 0), "mask": (7, 1)}),
        *_video_out(10, 2520, images=(9, 0), fps=(4, 2), prefix="harmovid/harmonized", audio=(2, 1)),
        _note(12, (0, 900), """
Built-in relightful harmonization (no model weights needed).
1. Load the person clip (foreground) and the new scene (background).
2. SAM2 Mask finds the person; Pseudo-Alpha softens the edge; Composite places the person on the scene
   (scale / x / y / anchor) and matches lengths and frame rates.
3. HarmoIm Frames relights each frame to the scene; Lighting Deflicker removes the flicker that
   per-frame relighting leaves, keeping the relit look.

The result keeps the foreground's audio and is saved to output/harmovid/.
"""),
    ])


def diffusion_harmonization() -> WorkflowSpec:
    return WorkflowSpec("harmovid_diffusion", [
        *_portrait_front(),
        NodeSpec(8, "HarmoVidLoader", (1440, 420), {"transformer": "harmovid.safetensors", "vae": "cogvideox_vae.safetensors"}),
        NodeSpec(9, "HarmoVidEncode", (1800, 0), links={"vae": (8, 1), "composite": (7, 0), "background": (7, 2), "alpha": (7, 1)}),
        NodeSpec(10, "HarmoVidMultiDiffusionTiler", (1800, 420), links={"model": (8, 0)}),
        NodeSpec(11, "HarmoVidSampler", (2160, 0), links={"model": (10, 0), "cond": (9, 0)}),
        NodeSpec(12, "HarmoVidDecode", (2520, 0), links={"vae": (8, 1), "latent": (11, 0)}),
        NodeSpec(13, "HarmoVidDetailTransfer", (2880, 0), links={
            "vae": (8, 1), "cond": (9, 0), "frames": (12, 0), "composite": (7, 0)}),
        *_video_out(14, 3240, images=(13, 0), fps=(4, 2), prefix="harmovid/diffusion", audio=(2, 1)),
        _note(16, (0, 900), """
HarmoVid diffusion harmonization (needs HarmoVid weights).

Put the transformer in models/harmovid and the VAE in models/harmovid_vae (make a starting checkpoint with
`harmovid convert`, or train one), then pick them in HarmoVid Loader.

The composite, background and alpha are encoded; the Sampler denoises a harmonized video latent;
MultiDiffusion Tiler splits clips longer than one window (85 frames) into overlapping windows blended
at every step. Decode turns the latent back into frames; Detail Transfer keeps the composite's own
pixels and adds only the light the model changed (the VAE's loss of detail cancels out). The result is
saved to output/harmovid/.
"""),
    ])


def deflicker_only() -> WorkflowSpec:
    return WorkflowSpec("harmovid_deflicker", [
        *_video_in(1, 0, "Load Video (flickering: processed frame by frame)", "flickering.mp4"),
        *_video_in(3, 420, "Load Video (reference: the original, steady clip)", "original.mp4"),
        NodeSpec(5, "HarmoVidLightingDeflicker", (720, 0), links={"frames": (2, 0), "reference": (4, 0)}),
        *_video_out(6, 1080, images=(5, 0), fps=(2, 2), prefix="harmovid/deflickered", audio=(2, 1)),
        _note(8, (0, 900), """
Lighting deflicker only.

Give it a clip that was processed frame by frame (relit, colour graded, stylized) and so flickers, and
the original clip it was made from. Motion is taken from the original; the processed look is kept
while its frame-to-frame flicker (global brightness and local shadows) is removed.
"""),
    ])


def sam2_point_prompts() -> WorkflowSpec:
    return WorkflowSpec("harmovid_sam2_points", [
        *_video_in(1, 0, "Load Video (the person clip)", "foreground.mp4"),
        NodeSpec(3, "HarmoVidSAM2Mask", (720, 0), {
            "model": "sam2.1_hiera_base_plus.safetensors", "points": "256,170; 256,400", "negative_points": "30,30",
        }, links={"frames": (2, 0)}),
        NodeSpec(4, "MaskToImage", (1080, 0), links={"mask": (3, 0)}),
        *_video_out(5, 1440, images=(4, 0), fps=(2, 2), prefix="harmovid/mask"),
        _note(7, (0, 600), """
SAM 2 mask with point prompts (needs a SAM 2 checkpoint in models/sam2, .safetensors; convert the
official .pt files with `harmovid convert-sam2`).

points: pixels on the person on prompt_frame, as 'x,y; x,y' (the example suits a 512x512 portrait:
head and chest). negative_points: pixels that are not the person. Or give a box 'x1,y1,x2,y2'.

SAM 2 tracks the person forward and backward from prompt_frame. Pick "built-in (MediaPipe)" as the
model to mask without weights. The mask video (white = person) is saved to output/harmovid/.
"""),
    ])


WORKFLOWS = (builtin_harmonization, diffusion_harmonization, deflicker_only, sam2_point_prompts)


def generate(schemas: Schemas) -> Dict[str, Tuple[Dict[str, Any], Dict[str, Any]]]:
    """{name: (UI-format workflow, API-format workflow)} for every shipped workflow."""
    result = {}
    for make in WORKFLOWS:
        spec = make()
        result[spec.name] = (to_ui(spec, schemas), to_api(spec, schemas))
    return result


def dumps(data: Dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_workflows(folder, schemas: Schemas) -> List[Path]:
    """Write ``folder/<name>.json`` (UI) and ``folder/api/<name>.json`` (API) for every workflow."""
    folder, written = Path(folder), []
    for name, (ui, api) in generate(schemas).items():
        for path, data in ((folder / f"{name}.json", ui), (folder / "api" / f"{name}.json", api)):
            _write_atomic(path, dumps(data))
            written.append(path)
    return written

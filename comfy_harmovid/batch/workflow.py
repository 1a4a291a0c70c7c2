"""API-format workflows: loading, checking against a server's node list, and per-job overrides.

An API-format workflow (ComfyUI: "Export (API)") maps node ids to ``{"class_type", "inputs"}``; a
link is written as ``[source_node_id, output_index]``. The UI format (the default "Save"/"Export")
has ``nodes`` and ``links`` lists instead and cannot be queued.
"""

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List

from ..errors import HarmoVidError

ApiWorkflow = Dict[str, Dict[str, Any]]

EXPORT_HINT = (
    "In ComfyUI open the workflow, then Workflow > Export (API) (older menus: enable dev mode in the "
    "settings and use 'Save (API Format)'), and pass that file."
)


@dataclass(frozen=True)
class Assignment:
    """``NODE.INPUT=VALUE``: set input ``input_name`` of node ``node_id`` to ``value``."""

    node_id: str
    input_name: str
    value: Any = None

    @property
    def target(self) -> str:
        return f"{self.node_id}.{self.input_name}"


def parse_target(text: str) -> Assignment:
    """Parse ``NODE.INPUT`` (node ids are the keys of the API workflow, e.g. ``3`` or ``12:4``)."""
    node_id, dot, input_name = text.rpartition(".")
    if not dot or not node_id or not input_name:
        raise HarmoVidError(
            f"'{text}' is not NODE.INPUT. Write the node id from the API workflow, a dot, and the "
            "input name, e.g. 3.file or 7.seed."
        )
    return Assignment(node_id, input_name)


def parse_assignment(text: str) -> Assignment:
    """Parse ``NODE.INPUT=VALUE``; VALUE is read as JSON (``42``, ``0.5``, ``true``, ``"x"``), else as text."""
    target, equals, raw = text.partition("=")
    if not equals:
        raise HarmoVidError(f"'{text}' has no '='. Write NODE.INPUT=VALUE, e.g. 7.seed=42 or 9.filename_prefix=out.")
    assignment = parse_target(target)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return Assignment(assignment.node_id, assignment.input_name, value)


def is_ui_format(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def check_api_workflow(data: Any, source: str = "the workflow") -> ApiWorkflow:
    """Return ``data`` if it is an API-format graph, else raise an error that says how to get one."""
    if is_ui_format(data):
        raise HarmoVidError(
            f"{source} is a UI-format workflow (it has 'nodes' and 'links'); ComfyUI's API queues only "
            f"API-format graphs. {EXPORT_HINT} This pack ships API versions of its examples in workflows/api/."
        )
    if not isinstance(data, dict) or not data:
        raise HarmoVidError(f"{source} is not an API-format workflow (expected a JSON object of nodes). {EXPORT_HINT}")
    for node_id, node in data.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str) or not isinstance(node.get("inputs"), dict):
            raise HarmoVidError(
                f"{source}: node '{node_id}' has no 'class_type' and 'inputs', so this is not an API-format "
                f"workflow. {EXPORT_HINT}"
            )
    return data


def load_api_workflow(path) -> ApiWorkflow:
    """Read an API-format workflow JSON file, with a clear error for anything else."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise HarmoVidError(f"Cannot read workflow {path}: {error.strerror}. Check the path.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise HarmoVidError(f"Workflow {path} is not valid JSON ({error.msg} at line {error.lineno}). {EXPORT_HINT}") from None
    return check_api_workflow(data, source=f"Workflow {path}")


def check_target(workflow: ApiWorkflow, assignment: Assignment) -> None:
    """The node of ``assignment`` must exist in the workflow."""
    if assignment.node_id not in workflow:
        known = ", ".join(f"{k} ({v['class_type']})" for k, v in workflow.items())
        raise HarmoVidError(
            f"{assignment.target}: the workflow has no node '{assignment.node_id}'. Its nodes are: {known}."
        )


def apply_assignments(workflow: ApiWorkflow, assignments: Iterable[Assignment]) -> ApiWorkflow:
    """A copy of ``workflow`` with each assignment's value set on its node input."""
    result = copy.deepcopy(workflow)
    for assignment in assignments:
        check_target(result, assignment)
        result[assignment.node_id]["inputs"][assignment.input_name] = assignment.value
    return result


def missing_classes(workflow: ApiWorkflow, object_info: Dict[str, Any]) -> List[str]:
    """Descriptions of nodes whose class the server does not have, e.g. ``'5 (HarmoVidComposite)'``."""
    return [f"{k} ({v['class_type']})" for k, v in workflow.items() if v["class_type"] not in object_info]


def check_inputs_known(workflow: ApiWorkflow, assignments: Iterable[Assignment], object_info: Dict[str, Any]) -> None:
    """Each assignment must name an input the node's class declares on the server."""
    for assignment in assignments:
        check_target(workflow, assignment)
        class_type = workflow[assignment.node_id]["class_type"]
        declared = object_info.get(class_type, {}).get("input", {})
        names = [name for section in ("required", "optional") for name in declared.get(section, {})]
        if names and assignment.input_name not in names:
            raise HarmoVidError(
                f"{assignment.target}: node {assignment.node_id} ({class_type}) has no input "
                f"'{assignment.input_name}'. Its inputs are: {', '.join(names)}."
            )


def _combo_choices(spec: Any):
    """The choices of a combo input spec from /object_info (V1 ``[[...], {...}]`` or V3 ``["COMBO", {"options"}]``)."""
    if not isinstance(spec, (list, tuple)) or not spec:
        return None
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and not options.get("remote") and not options.get("multiselect"):
        return options.get("options")
    return None


def invalid_choices(workflow: ApiWorkflow, object_info: Dict[str, Any], skip: Iterable[Assignment] = ()) -> List[str]:
    """Combo values (model files, input files, modes) the server does not offer, e.g.
    ``"3.model = 'sam2.1_hiera_base_plus.safetensors' (choices: 'built-in (MediaPipe)')"``."""
    skipped = {(a.node_id, a.input_name) for a in skip}
    problems = []
    for node_id, node in workflow.items():
        declared = object_info.get(node["class_type"], {}).get("input", {})
        for section in ("required", "optional"):
            for name, spec in (declared.get(section) or {}).items():
                value = node["inputs"].get(name)
                choices = _combo_choices(spec)
                if (node_id, name) in skipped or choices is None or not isinstance(value, str) or value in choices:
                    continue
                shown = ", ".join(repr(c) for c in choices[:8]) + (", ..." if len(choices) > 8 else "") or "none"
                problems.append(f"{node_id}.{name} = {value!r} (node {node['class_type']}; the server offers: {shown})")
    return problems

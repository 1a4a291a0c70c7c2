"""The shipped example workflows: known nodes with their real inputs, matching link types, valid widget
values, no drift from the generator, and each API graph run in-process through this pack's nodes with
the core video nodes stood in by comfy_harmovid.io."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch

import nodes
from comfy_harmovid.batch import Assignment, apply_assignments, check_api_workflow, load_api_workflow
from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.io import read_video, write_video

from conftest import make_portrait_clip

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # the workflow definitions live beside the script that writes them
import make_workflows  # noqa: E402
from workflow_definitions import FILE_COMBOS, dumps, generate, input_specs  # noqa: E402

WORKFLOWS = ROOT / "workflows"
SCHEMAS = make_workflows.node_schemas()
GENERATED = generate(SCHEMAS)
NAMES = sorted(GENERATED)


def api_file(name):
    return json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())


def ui_file(name):
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


def is_link(value):
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def check_widget_value(class_type, spec, value):
    where = f"{class_type}.{spec.name} = {value!r}"
    if (class_type, spec.name) in FILE_COMBOS:
        assert isinstance(value, str) and value, f"{where}: a file name is expected"
    elif spec.type == "COMBO":
        assert value in spec.choices, f"{where}: not one of {spec.choices}"
    elif spec.type == "BOOLEAN":
        assert isinstance(value, bool), f"{where}: a boolean is expected"
    elif spec.type == "STRING":
        assert isinstance(value, str), f"{where}: a string is expected"
    else:
        expected = int if spec.type == "INT" else (int, float)
        assert isinstance(value, expected) and not isinstance(value, bool), f"{where}: {spec.type} expected"
        low, high = spec.options.get("min", float("-inf")), spec.options.get("max", float("inf"))
        assert low <= value <= high, f"{where}: outside [{low}, {high}]"


@pytest.mark.parametrize("name", NAMES)
def test_workflow_files_equal_what_the_generator_produces(name):
    ui, api = GENERATED[name]
    for path, data in ((WORKFLOWS / f"{name}.json", ui), (WORKFLOWS / "api" / f"{name}.json", api)):
        assert path.exists(), f"{path} is missing: run python scripts/make_workflows.py"
        assert path.read_text() == dumps(data), f"{path} is stale: run python scripts/make_workflows.py"


@pytest.mark.parametrize("name", NAMES)
def test_api_nodes_exist_with_their_real_inputs_and_valid_values(name):
    graph = api_file(name)
    check_api_workflow(graph, name)
    for node_id, node in graph.items():
        assert node["class_type"] in SCHEMAS, f"node {node_id}: unknown class {node['class_type']}"
        schema = SCHEMAS[node["class_type"]]
        assert not schema.get("virtual"), f"node {node_id}: front-end-only {node['class_type']} in the API format"
        specs = {spec.name: spec for spec in input_specs(schema)}
        assert set(node["inputs"]) <= set(specs), f"node {node_id}: unknown inputs {set(node['inputs']) - set(specs)}"
        for spec in specs.values():
            if not spec.optional:
                assert spec.name in node["inputs"], f"node {node_id} ({node['class_type']}): required {spec.name} missing"
            value = node["inputs"].get(spec.name)
            if spec.name not in node["inputs"]:
                continue
            if is_link(value):
                source = graph.get(value[0])
                assert source is not None, f"node {node_id}.{spec.name}: links to missing node {value[0]}"
                outputs = SCHEMAS[source["class_type"]]["output"]
                assert value[1] < len(outputs), f"node {node_id}.{spec.name}: output slot {value[1]} of {source['class_type']}"
                assert outputs[value[1]] == spec.type, (
                    f"node {node_id}.{spec.name} ({spec.type}) is fed {outputs[value[1]]} by node {value[0]}")
            else:
                assert spec.is_widget, f"node {node_id}.{spec.name} ({spec.type}) must be linked, got {value!r}"
                check_widget_value(node["class_type"], spec, value)


@pytest.mark.parametrize("name", NAMES)
def test_ui_links_join_matching_types_and_agree_with_the_slots(name):
    workflow = ui_file(name)
    nodes_by_id = {node["id"]: node for node in workflow["nodes"]}
    assert workflow["version"] == 0.4
    assert workflow["last_node_id"] == max(nodes_by_id), "last_node_id must be the largest node id"
    assert workflow["last_link_id"] == max((link[0] for link in workflow["links"]), default=0)
    for link_id, origin, origin_slot, target, target_slot, kind in workflow["links"]:
        output = nodes_by_id[origin]["outputs"][origin_slot]
        target_input = nodes_by_id[target]["inputs"][target_slot]
        assert output["type"] == kind == target_input["type"], f"link {link_id}: {output['type']} -> {target_input['type']} ({kind})"
        assert link_id in output["links"] and target_input["link"] == link_id, f"link {link_id} is not recorded on both ends"
    for node in workflow["nodes"]:
        for key in ("id", "type", "pos", "size", "flags", "order", "mode", "inputs", "outputs", "properties", "widgets_values"):
            assert key in node, f"node {node['id']} lacks {key!r}"
    assert any(node["type"] in ("Note", "MarkdownNote") and node["widgets_values"][0] for node in workflow["nodes"]), "no note"


def ui_to_api(workflow):
    """What the front end's "Export (API)" makes of a UI workflow (widget values by position)."""
    links = {link[0]: link for link in workflow["links"]}
    graph = {}
    for node in workflow["nodes"]:
        schema = SCHEMAS[node["type"]]
        if schema.get("virtual"):
            continue
        values, inputs = iter(node["widgets_values"]), {}
        linked = {entry["name"]: links[entry["link"]] for entry in node["inputs"] if entry["link"] is not None}
        for spec in input_specs(schema):
            if spec.is_widget:
                value = next(values)
                if spec.has_seed_control:
                    assert next(values) in ("fixed", "increment", "decrement", "randomize")
                if spec.options.get("video_upload"):
                    next(values)
                if spec.name not in linked:
                    inputs[spec.name] = value
            if spec.name in linked:
                inputs[spec.name] = [str(linked[spec.name][1]), linked[spec.name][2]]
        assert next(values, None) is None, f"node {node['id']} ({node['type']}) has extra widget values"
        graph[str(node["id"])] = {"inputs": inputs, "class_type": node["type"]}
    return graph


@pytest.mark.parametrize("name", NAMES)
def test_ui_and_api_files_describe_the_same_graph(name):
    api = {k: {"inputs": v["inputs"], "class_type": v["class_type"]} for k, v in api_file(name).items()}
    assert ui_to_api(ui_file(name)) == api


@pytest.mark.parametrize("name", NAMES)
def test_batch_accepts_the_api_file_and_refuses_the_ui_file(name):
    load_api_workflow(WORKFLOWS / "api" / f"{name}.json")
    with pytest.raises(HarmoVidError, match="UI-format"):
        load_api_workflow(WORKFLOWS / f"{name}.json")


# ---- running API graphs in-process --------------------------------------------------------------

class StandIns:
    """The core nodes, done with comfy_harmovid.io: a VIDEO is a file path or a dict of its parts."""

    def __init__(self, input_dir: Path, output_dir: Path):
        self.input_dir, self.output_dir, self.saved = input_dir, output_dir, []

    def LoadVideo(self, file):
        return (self.input_dir / file,)

    def GetVideoComponents(self, video):
        clip = read_video(video)
        return clip.frames, clip.audio_path, clip.fps

    def CreateVideo(self, images, fps, audio=None):
        return ({"frames": images, "fps": fps, "audio": audio},)

    def SaveVideo(self, video, filename_prefix, format, codec):
        path = self.output_dir / f"{filename_prefix}_{len(self.saved) + 1:05}_.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.saved.append(write_video(path, video["frames"], video["fps"], audio_from=video["audio"]))
        return ()

    def MaskToImage(self, mask):
        return (mask[..., None].expand(-1, -1, -1, 3),)


def run_api_graph(graph, stand_ins: StandIns):
    """Execute an API-format graph in dependency order; returns every node's outputs."""
    results, pending = {}, dict(graph)
    while pending:
        ready = [k for k, n in pending.items() if all(v[0] in results for v in n["inputs"].values() if is_link(v))]
        assert ready, f"cycle or missing node among {sorted(pending)}"
        for node_id in ready:
            node = pending.pop(node_id)
            inputs = {k: results[v[0]][v[1]] if is_link(v) else v for k, v in node["inputs"].items()}
            if hasattr(stand_ins, node["class_type"]):
                results[node_id] = getattr(stand_ins, node["class_type"])(**inputs)
            else:
                cls = nodes.NODE_CLASS_MAPPINGS[node["class_type"]]
                results[node_id] = getattr(cls(), cls.FUNCTION)(**inputs)
    return results


@pytest.fixture
def one_thread():
    """Tiny models on a shared CPU run much faster on one thread than on contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_clips(tmp_path, one_thread):
    """foreground.mp4 / background.mp4 / flickering.mp4 / original.mp4, 6 frames of 64x80 at 12 fps."""
    folder = tmp_path / "input"
    folder.mkdir()
    frames, _, background = make_portrait_clip(frames=6, height=64, width=80)
    gain = torch.tensor([1.0, 0.8, 1.1, 0.85, 1.05, 0.9]).view(-1, 1, 1, 1)
    for name, clip in (("foreground", frames), ("background", background.flip(2)), ("original", frames),
                       ("flickering", (frames * gain).clamp(0, 1))):
        write_video(folder / f"{name}.mp4", clip, 12)
    return folder


def run_shipped(name, small_clips, tmp_path):
    stand_ins = StandIns(small_clips, tmp_path / "output")
    results = run_api_graph(api_file(name), stand_ins)
    assert len(stand_ins.saved) == 1, f"{name} should save one video"
    return results, read_video(stand_ins.saved[0])


def test_builtin_harmonization_runs_in_process(small_clips, tmp_path):
    results, saved = run_shipped("harmovid_builtin_harmonization", small_clips, tmp_path)
    composite = results["7"][0]
    assert saved.frames.shape == composite.shape, f"saved {tuple(saved.frames.shape)} vs composite {tuple(composite.shape)}"
    assert saved.fps == pytest.approx(12)
    assert torch.isfinite(results["9"][0]).all()


def test_deflicker_only_runs_in_process(small_clips, tmp_path):
    results, saved = run_shipped("harmovid_deflicker", small_clips, tmp_path)
    flickering = read_video(small_clips / "flickering.mp4").frames
    means_in, means_out = flickering.mean(dim=(1, 2, 3)), results["5"][0].mean(dim=(1, 2, 3))
    assert means_out.diff().abs().mean() < means_in.diff().abs().mean(), "the deflickered clip should flicker less"
    assert saved.frames.shape == flickering.shape


def test_sam2_point_prompts_names_the_missing_checkpoint_and_runs_with_the_builtin_model(small_clips, tmp_path):
    graph = api_file("harmovid_sam2_points")
    with pytest.raises(HarmoVidError, match="sam2.1_hiera_base_plus.safetensors.*models/sam2"):
        run_api_graph(graph, StandIns(small_clips, tmp_path / "output"))
    # No SAM 2 weights here (the real configs need 1024-pixel inputs): run the same graph on the built-in model.
    graph = apply_assignments(graph, [Assignment("3", "model", "built-in (MediaPipe)")])
    # Its prompts mean something there too: the example's points are for a 512-pixel clip, not these.
    with pytest.raises(HarmoVidError, match=r"point \[256.0, 170.0\] is outside the 80x64 frame"):
        run_api_graph(graph, StandIns(small_clips, tmp_path / "output"))
    graph = apply_assignments(graph, [Assignment("3", "points", ""), Assignment("3", "negative_points", "")])
    stand_ins = StandIns(small_clips, tmp_path / "output")
    results = run_api_graph(graph, stand_ins)
    mask = results["3"][0]
    assert mask.shape == (6, 64, 80) and 0 <= float(mask.min()) and float(mask.max()) <= 1
    assert read_video(stand_ins.saved[0]).frames.shape == (6, 64, 80, 3)


def test_diffusion_graph_runs_in_process_with_tiny_checkpoints(small_clips, tmp_path, monkeypatch):
    from test_diffusion_nodes import write_checkpoints  # the tiny HarmoVid transformer and VAE those tests use

    models = tmp_path / "models"
    for kind in ("harmovid", "harmovid_vae"):
        (models / kind).mkdir(parents=True)
    monkeypatch.setenv("HARMOVID_MODELS_DIR", str(models))
    transformer, vae = write_checkpoints(models)
    graph = apply_assignments(api_file("harmovid_diffusion"), [
        Assignment("8", "transformer", transformer), Assignment("8", "vae", vae), Assignment("8", "dtype", "fp32"),
        Assignment("11", "steps", 2), Assignment("10", "window_frames", 5), Assignment("10", "overlap_frames", 4),
    ])
    stand_ins = StandIns(small_clips, tmp_path / "output")
    results = run_api_graph(graph, stand_ins)
    composite, decoded, relit = results["7"][0], results["12"][0], results["13"][0]
    assert decoded.shape == composite.shape, f"Decode gave {tuple(decoded.shape)} for a composite of {tuple(composite.shape)}"
    assert torch.isfinite(decoded).all()
    assert relit.shape == composite.shape and torch.isfinite(relit).all(), "Detail Transfer must give the composite's shape"
    assert read_video(stand_ins.saved[0]).frames.shape == composite.shape


def test_ic_light_graph_runs_in_process_with_tiny_files(small_clips, tmp_path, monkeypatch):
    from relight_tiny import write_tiny_iclight, write_tiny_sd15, write_tiny_tokenizer

    models = tmp_path / "models"
    for kind in ("checkpoints", "iclight"):
        (models / kind).mkdir(parents=True)
    monkeypatch.setenv("HARMOVID_MODELS_DIR", str(models))
    monkeypatch.setenv("HARMOVID_CLIP_TOKENIZER", str(write_tiny_tokenizer(tmp_path / "tokenizer")))
    unet, _, _ = write_tiny_sd15(models / "checkpoints" / "tiny-sd15.safetensors")
    write_tiny_iclight(models / "iclight" / "tiny-iclight-fbc.safetensors", unet)
    graph = apply_assignments(api_file("harmovid_ic_light"), [
        Assignment("8", "checkpoint", "tiny-sd15.safetensors"), Assignment("8", "iclight", "tiny-iclight-fbc.safetensors"),
        Assignment("8", "dtype", "fp32"), Assignment("9", "steps", 2), Assignment("9", "resolution", 64),
    ])
    stand_ins = StandIns(small_clips, tmp_path / "output")
    results = run_api_graph(graph, stand_ins)
    composite, relit = results["7"][0], results["9"][0]
    assert relit.shape == composite.shape and torch.isfinite(relit).all()
    assert read_video(stand_ins.saved[0]).frames.shape == composite.shape


# ---- against a running ComfyUI (skipped unless HARMOVID_COMFYUI_URL is set) ----------------------------

COMFYUI_URL = os.environ.get("HARMOVID_COMFYUI_URL")
needs_comfyui = pytest.mark.skipif(not COMFYUI_URL, reason="set HARMOVID_COMFYUI_URL to a running ComfyUI with this pack")


@needs_comfyui
def test_listed_core_nodes_match_the_running_comfyui():
    with urllib.request.urlopen(f"{COMFYUI_URL.rstrip('/')}/object_info", timeout=30) as response:
        object_info = json.load(response)
    for name, schema in SCHEMAS.items():
        if schema.get("virtual"):
            continue
        assert name in object_info, f"{name} is not on the server"
        real = object_info[name]
        ours = [(s.name, s.type, s.optional) for s in input_specs(schema)]
        theirs = [(s.name, s.type, s.optional) for s in input_specs(real)]
        assert ours == theirs, f"{name}: inputs {ours} here, {theirs} on the server"
        assert schema["output"] == real["output"], f"{name}: outputs {schema['output']} here, {real['output']} on the server"


@needs_comfyui
def test_front_end_opens_every_workflow_and_its_widgets_work(tmp_path, dev_data):
    """Every workflow opens cleanly; then, on uploaded clips, clicks on the SAM2 Mask frame become points,
    a drag in the Composite preview changes x and y, the API export carries them and runs to success,
    and the previews appear (scripts/check_frontend.py; screenshots in tmp_path)."""
    pytest.importorskip("playwright", reason="pip install playwright (and apt-get install chromium)")
    # Two people side by side (the click picks the right one) over a canal scene, 8 small frames each.
    people, scene = tmp_path / "two_people.mp4", tmp_path / "scene.mp4"
    left = read_video(dev_data / "people/lav_man2.mp4", max_frames=8).frames[:, ::2, ::2]
    right = read_video(dev_data / "people/lav_man4.mp4", max_frames=8).frames[:, ::2, ::2]
    write_video(people, torch.cat([left, torch.full((8, 256, 96, 3), 0.8), right], dim=2), 8)
    write_video(scene, read_video(dev_data / "backgrounds/dvp_venice_canal.mp4", max_frames=8).frames[:, ::4, ::4], 8)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_frontend.py"), "--url", COMFYUI_URL, "--screenshots", str(tmp_path),
         "--sample-video", str(people), "--sample-background", str(scene), "--person-point", "470,120"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"front-end check failed:\n{result.stdout}\n{result.stderr}"
    assert "ok   widgets" in result.stdout, result.stdout
    for name in ("widget-sam2-points", "widget-composite-placement", "widget-sam2-mask-after-run", "widget-previews",
                 "widget-composite-after-run"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0, f"no screenshot {name}.png"
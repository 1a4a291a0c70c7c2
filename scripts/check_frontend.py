#!/usr/bin/env python
"""Open every UI workflow in workflows/ in a running ComfyUI's real front end (headless Chromium via
Playwright) and fail on any missing node or widget problem; save two screenshots per workflow
(<name>-detail.png as saved, <name>.png fitted to the whole graph).

    python scripts/check_frontend.py --url http://127.0.0.1:8188 [--screenshots DIR] [--chromium PATH]

The ComfyUI at URL must have this pack installed (custom_nodes/). For each workflow the check fails when
  - the front end reports a node type it does not know (missing-nodes dialog or unregistered type),
  - a node's widgets after loading differ from the file's widgets_values (a missing, extra or rejected
    widget value), or
  - the front end's own API export ("graphToPrompt") differs from workflows/api/<name>.json,
and reports the browser's console warnings and errors. Without a URL (argument or HARMOVID_COMFYUI_URL)
it prints that it was skipped and exits 0, so CI can call it unconditionally.

With --sample-video (the person) and --sample-background (the scene) it then uses the pack's canvas
widgets as a person would, on the built-in harmonization workflow: clicks and shift-clicks on the SAM2
Mask frame (points appear in the widgets), drags the person in the Composite preview (x and y change),
checks that the front end's API export carries those values, queues it and waits for success (after
clearing the server's cache with POST /free, so every node runs), then checks the previews the run left
in the nodes (--person-point says where the person to click is, e.g. one of two). Screenshots:
widget-sam2-points.png, widget-composite-placement.png, widget-sam2-mask-after-run.png,
widget-previews.png, widget-composite-after-run.png.
Needs `pip install playwright` and a Chromium (Debian: apt-get install chromium).
"""

import argparse
import json
import os
import sys
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

# Runs in the page: load one workflow, then describe what the front end made of it.
LOAD_AND_INSPECT = """
async ([workflow, name]) => {
  const app = window.app ?? window.comfyAPI?.app?.app;
  await app.loadGraphData(workflow, true, true, name);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const registered = window.LiteGraph?.registered_node_types ?? {};
  const saved = app.graph.serialize();
  const prompt = await app.graphToPrompt();
  const dialogs = [...document.querySelectorAll('.p-dialog, [role="dialog"]')].map((d) => d.innerText);
  return {
    unregistered: saved.nodes.filter((n) => !(n.type in registered)).map((n) => `${n.id} (${n.type})`),
    widgets: Object.fromEntries(saved.nodes.map((n) => [n.id, n.widgets_values ?? []])),
    api: prompt.output,
    dialogs,
  };
}
"""


# The workflow the widget check edits and runs (every node in it works without weights).
INTERACTIVE_WORKFLOW = "harmovid_builtin_harmonization.json"

# Runs in the page: centre the view on the first node of a type at zoom 1 and return its box on the page.
SHOW_NODE = """
async (type) => {
  const app = window.app ?? window.comfyAPI?.app?.app;
  const node = app.graph._nodes.find((n) => n.type === type);
  app.canvas.ds.scale = 1;
  app.canvas.centerOnNode(node);
  app.canvas.setDirty(true, true);
  await new Promise((resolve) => setTimeout(resolve, 400));
  const rect = app.canvas.canvas.getBoundingClientRect();
  const [x, y] = app.canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1] - LiteGraph.NODE_TITLE_HEIGHT]);
  return { x: rect.left + x, y: rect.top + y, width: node.size[0], height: node.size[1] + LiteGraph.NODE_TITLE_HEIGHT };
}
"""

WIDGET_VALUES = """
(type) => {
  const app = window.app ?? window.comfyAPI?.app?.app;
  const node = app.graph._nodes.find((n) => n.type === type);
  return { id: String(node.id), values: Object.fromEntries(node.widgets.map((w) => [w.name, w.value])) };
}
"""

# Runs in the page: queue the graph as the Run button does and wait for the server's verdict.
RUN_GRAPH = """
async (seconds) => {
  const app = window.app ?? window.comfyAPI?.app?.app;
  const api = window.comfyAPI.api.api;
  const verdict = new Promise((resolve) => {
    api.addEventListener("execution_success", () => resolve({ ok: true }), { once: true });
    api.addEventListener("execution_error", (e) => resolve({ ok: false, error: e.detail?.exception_message ?? "error" }), { once: true });
    setTimeout(() => resolve({ ok: false, error: `no result after ${seconds} s` }), seconds * 1000);
  });
  await app.queuePrompt(0, 1);
  return await verdict;
}
"""


def declared_inputs(object_info: dict, class_type) -> set:
    spec = object_info.get(class_type, {}).get("input", {})
    return {name for section in ("required", "optional") for name in spec.get(section, {})}


def check_workflow(page, path: Path, api_path: Path, screenshots: Path, console: list, object_info: dict) -> list:
    """Problems found for one workflow (empty when it loads cleanly)."""
    workflow = json.loads(path.read_text())
    console.clear()
    seen = page.evaluate(LOAD_AND_INSPECT, [workflow, path.name])
    page.screenshot(path=str(screenshots / f"{path.stem}-detail.png"))  # as saved: readable widgets
    page.mouse.click(700, 980)  # focus the canvas (an empty spot near the bottom)
    page.keyboard.press(".")  # the front end's "fit view" key
    page.wait_for_timeout(300)
    page.screenshot(path=str(screenshots / f"{path.stem}.png"))
    close_dialogs(page)
    problems = [f"unknown node type {n}" for n in seen["unregistered"]]
    problems += [f"dialog: {text.strip()[:300]}" for text in seen["dialogs"] if "missing" in text.lower() or "not found" in text.lower()]
    for node in workflow["nodes"]:
        after = seen["widgets"].get(str(node["id"]), seen["widgets"].get(node["id"]))
        if after != node["widgets_values"]:
            problems.append(f"node {node['id']} ({node['type']}) widgets {node['widgets_values']} became {after}")
    expected = json.loads(api_path.read_text())
    # Front-end-only widgets (e.g. Load Video's "video-preview") are exported too; the server ignores them.
    exported = {k: {"inputs": {name: value for name, value in v["inputs"].items()
                               if name in declared_inputs(object_info, v["class_type"])} or v["inputs"],
                    "class_type": v["class_type"]} for k, v in seen["api"].items()}
    wanted = {k: {"inputs": v["inputs"], "class_type": v["class_type"]} for k, v in expected.items()}
    if exported != wanted:
        for node_id in sorted(set(exported) | set(wanted)):
            if exported.get(node_id) != wanted.get(node_id):
                problems.append(f"API export of node {node_id}: {exported.get(node_id)} != file {wanted.get(node_id)}")
    inputs = input_files(workflow)
    for kind, text in console:
        if any(f"type=input&filename={quote(name)}&" in text for name in inputs):
            continue  # the preview of an input clip the server does not have (see --sample-video)
        if any(word in text.lower() for word in ("missing", "widget", "not found", "invalid")):
            problems.append(f"console {kind}: {text[:300]}")
    return problems


def screenshot_node(page, node_type: str, path: Path) -> dict:
    """Bring a node into view and save a picture of it; returns its box on the page."""
    box = page.evaluate(SHOW_NODE, node_type)
    page.wait_for_timeout(300)
    margin = 12
    page.screenshot(path=str(path), clip={"x": max(0, box["x"] - margin), "y": max(0, box["y"] - margin),
                                          "width": box["width"] + 2 * margin, "height": box["height"] + 2 * margin})
    return box


def check_widgets(page, url: str, workflows: Path, screenshots: Path, run_seconds: float, person_point=None) -> list:
    """Use the canvas widgets on the built-in workflow as a person would; problems found (empty = all good).

    ``person_point`` (x, y) is where the SAM2 Mask click goes, in pixels of the person clip's first frame."""
    problems = []
    page.evaluate(LOAD_AND_INSPECT, [json.loads((workflows / INTERACTIVE_WORKFLOW).read_text()), INTERACTIVE_WORKFLOW])
    close_dialogs(page)
    # SAM2 Mask: the prompt frame appears; a click adds a point on the person, a shift-click one off it.
    page.evaluate(SHOW_NODE, "HarmoVidSAM2Mask")
    frame = page.locator('canvas[data-harmovid="prompt_canvas"]')
    try:
        page.wait_for_function("() => app.graph._nodes.find((n) => n.type === 'HarmoVidSAM2Mask').harmovidPrompts?.frame",
                               timeout=30000)
    except Exception:  # noqa: BLE001 - reported as a problem below
        return ["SAM2 Mask: the prompt frame of the uploaded clip never appeared in the node"]
    area = frame.bounding_box()
    at = page.evaluate("() => { const e = app.graph._nodes.find((n) => n.type === 'HarmoVidSAM2Mask').harmovidPrompts;"
                       " const l = e.layout(); return { left: l.left, top: l.top, scale: l.scale, width: l.width, height: l.height }; }")

    def on_page(x, y):  # frame pixels -> page position
        return area["x"] + at["left"] + x * at["scale"], area["y"] + at["top"] + y * at["scale"]

    person = person_point or (at["width"] / 2, at["height"] * 0.35)  # default: the face of a centred portrait
    page.mouse.click(*on_page(*person))
    page.keyboard.down("Shift")
    page.mouse.click(*on_page(4, 4))  # the top-left corner: not the person
    page.keyboard.up("Shift")
    page.wait_for_timeout(300)
    sam2 = page.evaluate(WIDGET_VALUES, "HarmoVidSAM2Mask")
    if len([p for p in sam2["values"]["points"].split(";") if p.strip()]) != 1:
        problems.append(f"SAM2 Mask: a click gave points {sam2['values']['points']!r}, not one point")
    if len([p for p in sam2["values"]["negative_points"].split(";") if p.strip()]) != 1:
        problems.append(f"SAM2 Mask: a shift-click gave negative_points {sam2['values']['negative_points']!r}")
    screenshot_node(page, "HarmoVidSAM2Mask", screenshots / "widget-sam2-points.png")
    # Composite: the person appears on the background; dragging them moves x and y.
    page.evaluate(SHOW_NODE, "HarmoVidComposite")
    try:
        page.wait_for_function("() => { const p = app.graph._nodes.find((n) => n.type === 'HarmoVidComposite').harmovidPlacement;"
                               " return p?.layers.foreground && p?.layers.background; }", timeout=30000)
    except Exception:  # noqa: BLE001
        return problems + ["Composite: the placement preview never showed the clips"]
    before = page.evaluate(WIDGET_VALUES, "HarmoVidComposite")["values"]
    person = page.evaluate("() => app.graph._nodes.find((n) => n.type === 'HarmoVidComposite').harmovidPlacement.layout().person")
    area = page.locator('canvas[data-harmovid="placement_canvas"]').bounding_box()
    start = (area["x"] + person["left"] + person["width"] / 2, area["y"] + person["top"] + person["height"] / 2)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] - 40, start[1] - 20, steps=8)
    page.mouse.up()
    page.wait_for_timeout(300)
    composite = page.evaluate(WIDGET_VALUES, "HarmoVidComposite")
    after = composite["values"]
    if not (after["x"] < before["x"] and after["y"] < before["y"]):
        problems.append(f"Composite: dragging left and up moved x {before['x']} -> {after['x']}, y {before['y']} -> {after['y']}")
    screenshot_node(page, "HarmoVidComposite", screenshots / "widget-composite-placement.png")
    # The front end's API export carries what the widgets now say.
    api = page.evaluate("async () => (await app.graphToPrompt()).output")
    for node, names in ((sam2, ("points", "negative_points")), (composite, ("x", "y"))):
        for name in names:
            exported = api[node["id"]]["inputs"].get(name)
            if exported != node["values"][name]:
                problems.append(f"API export of node {node['id']}: {name} = {exported!r}, the widget says {node['values'][name]!r}")
    if problems:
        return problems
    # Nodes whose results the server has cached do not send their previews again: start from a clean cache.
    page.request.post(f"{url.rstrip('/')}/free", data=json.dumps({"free_memory": True}),
                      headers={"Content-Type": "application/json"})
    page.wait_for_timeout(1500)
    result = page.evaluate(RUN_GRAPH, run_seconds)
    if not result["ok"]:
        return [f"the edited workflow did not run to success: {result['error']}"]
    # After the run: the mask over the SAM2 frame, and previews with a frame slider.
    for node_type, ready in (("HarmoVidSAM2Mask", "harmovidPrompts?.run"), ("HarmoVidLightingDeflicker", "harmovidPreview?.pictures.length")):
        try:
            page.wait_for_function(f"() => app.graph._nodes.find((n) => n.type === '{node_type}').{ready}", timeout=30000)
        except Exception:  # noqa: BLE001
            problems.append(f"after the run, {node_type} shows nothing ({ready} never became true)")
    if problems:
        return problems
    screenshot_node(page, "HarmoVidSAM2Mask", screenshots / "widget-sam2-mask-after-run.png")
    slider = page.evaluate("() => { const p = app.graph._nodes.find((n) => n.type === 'HarmoVidLightingDeflicker').harmovidPreview;"
                           " return { frames: p.pictures.length, max: Number(p.slider.max) }; }")
    if slider["frames"] < 2 or slider["max"] != slider["frames"] - 1:
        problems.append(f"Lighting Deflicker preview: {slider['frames']} frames, slider up to {slider['max']}")
    screenshot_node(page, "HarmoVidLightingDeflicker", screenshots / "widget-previews.png")
    screenshot_node(page, "HarmoVidComposite", screenshots / "widget-composite-after-run.png")
    return problems


def close_dialogs(page) -> None:
    """Close whatever dialog a workflow opened, so it is not blamed on the next one."""
    for _ in range(3):
        if not page.locator('.p-dialog, [role="dialog"]').count():
            return
        page.keyboard.press("Escape")
        page.wait_for_timeout(200)


def input_files(workflow: dict) -> list:
    """The clip names the workflow's Load Video nodes expect in the server's input folder."""
    return [node["widgets_values"][0] for node in workflow["nodes"] if node["type"] == "LoadVideo"]


def upload_samples(page, url: str, person: Path, scene, names) -> None:
    """The person clip under each input name, the scene clip (when given) under names with "background"."""
    backgrounds = {name for name in names if "background" in name} if scene else set()
    upload_sample(page, url, person, set(names) - backgrounds)
    if backgrounds:
        upload_sample(page, url, scene, backgrounds)


def upload_sample(page, url: str, sample: Path, names) -> None:
    """Put ``sample`` in the server's input folder under each name (never replacing an existing file)."""
    for name in sorted(set(names)):
        response = page.request.post(f"{url.rstrip('/')}/upload/image", multipart={
            "image": {"name": name, "mimeType": "video/mp4", "buffer": sample.read_bytes()},
            "type": "input", "overwrite": "false"})
        if not response.ok:
            raise SystemExit(f"uploading {sample} as {name} failed: HTTP {response.status}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("HARMOVID_COMFYUI_URL"), help="Running ComfyUI, e.g. http://127.0.0.1:8188.")
    parser.add_argument("--workflows", type=Path, default=ROOT / "workflows", help="Folder of UI workflows (api/ beside them).")
    parser.add_argument("--screenshots", type=Path, default=Path("frontend-check"), help="Where the PNGs go.")
    parser.add_argument("--chromium", default=os.environ.get("HARMOVID_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--sample-video", type=Path,
                        help="Upload this clip under each input name the workflows use (foreground.mp4, ...) so the "
                             "Load Video previews show it; existing files of those names are kept.")
    parser.add_argument("--sample-background", type=Path,
                        help="Upload this clip under the background input names instead (background.mp4); with "
                             "--sample-video this also turns on the widget check, which runs the built-in workflow.")
    parser.add_argument("--person-point", type=lambda text: tuple(float(v) for v in text.split(",")),
                        help="X,Y in pixels of the person clip where the widget check clicks the person (default: "
                             "the middle, a little above centre); e.g. one of two people.")
    parser.add_argument("--run-timeout", type=float, default=600.0, help="Seconds the widget check's run may take.")
    parser.add_argument("--timeout", type=float, default=60.0, help="Seconds to wait for the front end to start.")
    args = parser.parse_args()
    if not args.url:
        print("front-end check skipped: no ComfyUI URL given (--url or HARMOVID_COMFYUI_URL)")
        return 0
    from playwright.sync_api import sync_playwright  # only needed when a URL is given

    args.screenshots.mkdir(parents=True, exist_ok=True)
    files = sorted(args.workflows.glob("*.json"))
    if not files:
        print(f"no workflows in {args.workflows}", file=sys.stderr)
        return 1
    failures = 0
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1800, "height": 1000})
        console: list = []
        page.on("console", lambda message: console.append((message.type, f"{message.text} [{message.location.get('url', '')}]"))
                if message.type in ("warning", "error") else None)
        page.on("pageerror", lambda error: console.append(("pageerror", str(error))))
        if args.sample_video:
            upload_samples(page, args.url, args.sample_video, args.sample_background,
                           [name for path in files for name in input_files(json.loads(path.read_text()))])
        object_info = page.request.get(f"{args.url.rstrip('/')}/object_info").json()
        page.goto(args.url, timeout=args.timeout * 1000)
        page.wait_for_function("() => (window.app ?? window.comfyAPI?.app?.app)?.graph", timeout=args.timeout * 1000)
        page.wait_for_timeout(2000)
        startup = list(console)
        for kind, text in startup:
            print(f"  (at start-up) console {kind}: {text[:200]}")
        for path in files:
            problems = check_workflow(page, path, args.workflows / "api" / path.name, args.screenshots, console, object_info)
            status = "ok  " if not problems else "FAIL"
            print(f"{status} {path.name} -> {args.screenshots / (path.stem + '.png')}")
            for problem in problems:
                print(f"     {problem}")
            for kind, text in console:
                print(f"     (console {kind}: {text[:160]})")
            failures += bool(problems)
        widget_problems = None
        if args.sample_video and args.sample_background:
            widget_problems = check_widgets(page, args.url, args.workflows, args.screenshots, args.run_timeout,
                                            args.person_point)
        browser.close()
    print(f"{len(files) - failures} of {len(files)} workflows open cleanly in the front end at {args.url}")
    if widget_problems is None:
        print("widget check skipped: give --sample-video and --sample-background")
    else:
        print(f"{'FAIL' if widget_problems else 'ok  '} widgets: SAM2 points, Composite placement, API export, run, "
              f"previews -> {args.screenshots}/widget-*.png")
        for problem in widget_problems:
            print(f"     {problem}")
    return 1 if failures or widget_problems else 0


if __name__ == "__main__":
    sys.exit(main())

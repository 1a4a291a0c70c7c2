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
            upload_sample(page, args.url, args.sample_video,
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
        browser.close()
    print(f"{len(files) - failures} of {len(files)} workflows open cleanly in the front end at {args.url}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

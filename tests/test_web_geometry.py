"""The front end's geometry (web/geometry.js) agrees with the engine: the Composite preview puts the
person where composite.Placement will, and the points editor reads prompt text as prompts.py does.
Runs the JavaScript with Node.js; skipped without it."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from comfy_harmovid.composite import ANCHORS, Placement
from comfy_harmovid.segment.prompts import parse_box, parse_points

GEOMETRY = Path(__file__).resolve().parents[1] / "web" / "geometry.js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js runs the front end's JavaScript here")


def run_js(body: str):
    """Evaluate ``body`` (which prints one JSON value) with geometry.js's exports in scope."""
    script = f"import * as g from {json.dumps(GEOMETRY.as_uri())};\n{body}"
    result = subprocess.run([NODE, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_preview_places_the_person_where_the_composite_will():
    cases = [((h, w), (bh, bw), scale, x, y, anchor)
             for (h, w), (bh, bw) in [((512, 512), (576, 1024)), ((720, 1364), (1080, 1920)), ((270, 480), (300, 200))]
             for scale, x, y in [(1.0, 0.0, 0.0), (0.63, -0.12, 0.07), (1.7, 0.31, -0.4)]
             for anchor in ANCHORS]
    js = run_js(f"console.log(JSON.stringify({json.dumps(cases)}.map(([[h, w], [bh, bw], scale, x, y, anchor]) => "
                "g.placement({width: w, height: h}, {width: bw, height: bh}, {scale, x, y, anchor}))));")
    for case, got in zip(cases, js):
        (h, w), (bh, bw), scale, x, y, anchor = case
        placed = Placement((h, w), (bh, bw), scale=scale, x=x, y=y, anchor=anchor)
        expected = (placed.left, placed.top, placed.size[1], placed.size[0])
        # JavaScript rounds halves up, Python to even: a tie may land one pixel apart.
        assert all(abs(a - b) <= 1 for a, b in zip((got["left"], got["top"], got["width"], got["height"]), expected)), (
            f"{case}: preview {got}, composite {expected}")


def test_points_editor_reads_prompt_text_as_the_engine_does():
    texts = ["", "10,20; 30.5, 40\n50 60", '[{"x": 1, "y": 2}]', "  7 ,8 ;"]
    got = run_js(f"console.log(JSON.stringify({json.dumps(texts)}.map((t) => g.parsePoints(t))));")
    assert got == [[list(p) for p in parse_points(t)] for t in texts]
    assert run_js('console.log(JSON.stringify([g.parseBox("1,2,3,4"), g.parseBox("")]))') == [list(parse_box("1,2,3,4")), None]
    assert run_js('console.log(JSON.stringify(g.formatPoints([[10.4, 20.6], [3, 4]])))') == "10,21; 3,4"
    for bad in ("abc; 1,", "10,20,30"):
        with pytest.raises(AssertionError, match="is not x,y"):
            run_js(f"g.parsePoints({json.dumps(bad)}); console.log('null');")

"""The canvas widgets' route (nodes/comfy_adapter.py, GET /harmovid/frame): a frame of a clip in ComfyUI's
input folder as a picture, and clear 4xx answers for anything else. Served by aiohttp's test server, as ComfyUI would."""

import asyncio
import os

import cv2
import numpy as np
import pytest
import torch

from comfy_harmovid.io import write_video
from conftest import make_portrait_clip

web = pytest.importorskip("aiohttp.web", reason="aiohttp (the batch extra) serves the route")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from nodes import comfy_adapter  # noqa: E402


def needs_builtin_segmenter():
    from comfy_harmovid.errors import HarmoVidError
    from comfy_harmovid.segment.mediapipe_model import require_mediapipe

    try:
        require_mediapipe()
    except HarmoVidError as error:
        pytest.skip(f"the built-in segmenter makes the cut-out: {error}")


@pytest.fixture
def input_dir(tmp_path, monkeypatch):
    folder = tmp_path / "input"
    (folder / "clips").mkdir(parents=True)
    frames, _, _ = make_portrait_clip(frames=5, height=48, width=64)
    write_video(folder / "clips" / "person.mkv", frames, 12)  # lossless: frames come back exact
    (folder / "notes.txt").write_text("not a video")
    (tmp_path / "secret.mkv").write_bytes((folder / "clips" / "person.mkv").read_bytes())
    monkeypatch.setattr(comfy_adapter, "input_directory", lambda: folder)
    return folder, frames


def get(query: dict):
    """(status, headers, body) of GET /harmovid/frame with ``query``."""
    async def fetch():
        app = web.Application()
        app.router.add_get(comfy_adapter.FRAME_ROUTE, comfy_adapter.serve_frame)
        async with TestClient(TestServer(app)) as client:
            response = await client.get(comfy_adapter.FRAME_ROUTE, params=query)
            return response.status, response.headers, await response.read()
    return asyncio.run(fetch())


def decode(body):
    return cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)


def test_a_frame_comes_back_as_jpeg_with_the_clip_size_and_length(input_dir):
    _, frames = input_dir
    status, headers, body = get({"filename": "person.mkv", "subfolder": "clips", "index": "3"})
    assert status == 200 and headers["Content-Type"] == "image/jpeg", (status, body[:200])
    assert (headers["X-HarmoVid-Frame-Count"], headers["X-HarmoVid-Width"], headers["X-HarmoVid-Height"]) == ("5", "64", "48")
    image = decode(body)[..., ::-1] / 255.0
    error = np.abs(image - frames[3].numpy()).mean()
    assert error < 0.02, f"the picture is not frame 3 of the clip (mean difference {error:.3f}, JPEG allows < 0.02)"
    other = np.abs(image - frames[0].numpy()).mean()
    assert other > error, "frame 3 looks more like frame 0"


def test_a_large_frame_is_scaled_down_but_the_headers_keep_its_size(input_dir, monkeypatch):
    monkeypatch.setattr(comfy_adapter, "FRAME_SIDE", 32)
    status, headers, body = get({"filename": "person.mkv", "subfolder": "clips", "index": "0"})
    assert status == 200 and decode(body).shape == (24, 32, 3)
    assert (headers["X-HarmoVid-Width"], headers["X-HarmoVid-Height"]) == ("64", "48")


def test_cutout_adds_the_person_mask_as_alpha(input_dir):
    needs_builtin_segmenter()
    status, _, body = get({"filename": "person.mkv", "subfolder": "clips", "index": "0", "cutout": "1"})
    image = decode(body)
    assert status == 200 and image.shape == (48, 64, 4), f"{status} {getattr(image, 'shape', None)}"


@pytest.mark.parametrize(
    "query, status, words",
    [
        ({"filename": "person.mkv", "subfolder": "clips", "index": "5"}, 400, "past the last frame"),
        ({"filename": "person.mkv", "subfolder": "clips", "index": "-1"}, 400, "negative"),
        ({"filename": "person.mkv", "subfolder": "clips", "index": "two"}, 400, "not a frame number"),
        ({"filename": "missing.mp4", "index": "0"}, 404, "not in ComfyUI's input folder"),
        ({"filename": "../secret.mkv", "index": "0"}, 400, "'..'"),
        ({"filename": "secret.mkv", "subfolder": "..", "index": "0"}, 400, "'..'"),
        ({"filename": "secret.mkv", "subfolder": "clips/../..", "index": "0"}, 400, "'..'"),
        ({"filename": "/etc/passwd", "index": "0"}, 400, "absolute"),
        ({"index": "0"}, 400, "filename is missing"),
        ({"filename": "notes.txt", "index": "0"}, 415, "not a video"),
        ({"filename": "person.mkv", "subfolder": "clips", "cutout": "1", "points": "abc; 1,"}, 400, "is not a point"),
        ({"filename": "person.mkv", "subfolder": "clips", "cutout": "1", "points": "5,5", "prompt_frame": "9"}, 400,
         "prompt_frame 9 is past the last frame"),
    ],
)
def test_bad_requests_get_a_clear_4xx(input_dir, query, status, words):
    got, _, body = get(query)
    assert got == status and words in body.decode(), f"{query} -> {got} {body.decode()!r}"


def test_a_symlink_out_of_the_input_folder_is_refused(input_dir, tmp_path):
    folder, _ = input_dir
    os.symlink(tmp_path / "secret.mkv", folder / "link.mkv")
    status, _, body = get({"filename": "link.mkv", "index": "0"})
    assert status == 403 and "outside" in body.decode(), f"{status} {body.decode()!r}"


def test_a_cutout_keeps_only_the_people_the_prompts_pick(tmp_path, monkeypatch, dev_data):
    needs_builtin_segmenter()
    from comfy_harmovid.io import read_video

    folder = tmp_path / "input"
    left = read_video(dev_data / "people/lav_man2.mp4", max_frames=3).frames[:, ::2, ::2]
    right = read_video(dev_data / "people/lav_man4.mp4", max_frames=3).frames[:, ::2, ::2]
    gap = torch.full((3, 256, 96, 3), 0.8)
    write_video(folder / "two.mkv", torch.cat([left, gap, right], dim=2), 8)
    monkeypatch.setattr(comfy_adapter, "input_directory", lambda: folder)
    both = decode(get({"filename": "two.mkv", "index": "0", "cutout": "1"})[2])[..., 3]
    status, _, body = get({"filename": "two.mkv", "index": "0", "cutout": "1", "points": "470,120", "prompt_frame": "2"})
    picked = decode(body)[..., 3]
    assert status == 200 and both[:, :260].mean() > 50 and both[:, 350:].mean() > 50, "the plain cut-out lost someone"
    assert picked[:, :300].max() == 0 and picked[:, 350:].mean() > 50, "the cut-out did not keep only the clicked person"

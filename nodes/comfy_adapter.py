"""The one place where the nodes reach ComfyUI's services.

Everything here works without ComfyUI too (tests, scripts): progress is then silent, the device is
the CPU (or CUDA when present), and model folders are ``$HARMOVID_MODELS_DIR/<kind>``. In both cases
the engine's ``comfy_harmovid.locations.model_folders`` does the lookup (the user's folders, then the
files the package ships); inside ComfyUI this module hands it ComfyUI's folders.
"""

import os
from pathlib import Path
from typing import List

import torch

from comfy_harmovid import locations
from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.segment.prompts import Prompts

try:  # ComfyUI present: use its services.
    import comfy.model_management as _model_management
    import comfy.utils as _comfy_utils
    import folder_paths as _folder_paths
except ImportError:  # Running outside ComfyUI (tests, scripts).
    _model_management = _comfy_utils = _folder_paths = None

IN_COMFYUI = _folder_paths is not None
MODEL_EXTENSIONS = {".safetensors"}

# Model folder names under ComfyUI's models/ directory that this pack uses.
MODEL_KINDS = ("harmovid", "harmovid_vae", "sam2", "harmoim", "iclight")
# Kinds also searched in ComfyUI's own folders of another kind: IC-Light packs keep its files in models/unet
# (ComfyUI's diffusion_models), so files already there are found too.
ALSO_IN = {"iclight": ("diffusion_models",)}
# ComfyUI's folder of Stable Diffusion single-file checkpoints (SD1.5 for IC-Light).
CHECKPOINTS = "checkpoints"


def register_model_folders() -> None:
    """Make ComfyUI know ``models/<kind>`` for each kind, and make the engine search ComfyUI's folders."""
    if not IN_COMFYUI:
        return
    for kind in MODEL_KINDS:
        paths = [os.path.join(_folder_paths.models_dir, kind)]
        for other in ALSO_IN.get(kind, ()):
            if other in _folder_paths.folder_names_and_paths:
                paths += list(_folder_paths.get_folder_paths(other))
        if kind in _folder_paths.folder_names_and_paths:
            known, extensions = _folder_paths.folder_names_and_paths[kind]
            extensions = set(extensions) | MODEL_EXTENSIONS
        else:
            known, extensions = [], set(MODEL_EXTENSIONS)
        known = list(known) + [p for p in paths if p not in known]
        _folder_paths.folder_names_and_paths[kind] = (known, extensions)
    locations.use_host_model_folders(_folder_paths.get_folder_paths)


def model_folders(kind: str) -> List[Path]:
    """The folders searched for models of ``kind``, first match wins (see ``comfy_harmovid.locations``)."""
    return locations.model_folders(kind)


def list_models(kind: str, suffixes=(".safetensors",)) -> List[str]:
    """File and folder names (relative to a model folder) that look like models of ``kind``."""
    names = set()
    for folder in model_folders(kind):
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in suffixes:
                names.add(path.relative_to(folder).as_posix())
    return sorted(names)


def resolve_model_path(kind: str, name: str) -> Path:
    """Find ``name`` in the folders for ``kind``; a clear error names the folders when it is absent."""
    found = locations.find_model(kind, name)
    if found is not None:
        return found
    raise HarmoVidError(f"Model '{name}' not found. {where_models_go(kind)}")


def where_models_go(kind: str) -> str:
    """Where to put models of ``kind``, naming the folders searched now."""
    searched = ", ".join(str(folder) for folder in model_folders(kind))
    if IN_COMFYUI:
        return f"Put it in one of: {searched}, then refresh ComfyUI."
    return (f"Searched: {searched or 'no folder'}. Put it in $HARMOVID_MODELS_DIR/{kind}/ (set that variable), "
            f"or in ComfyUI/models/{kind}/ when running inside ComfyUI.")


def clip_tokenizer_folder():
    """ComfyUI's copy of SD1's CLIP tokenizer (``comfy/sd1_tokenizer``), or None outside ComfyUI."""
    if not IN_COMFYUI:
        return None
    try:
        import comfy.sd1_clip as _sd1_clip
    except ImportError:
        return None
    folder = Path(_sd1_clip.__file__).resolve().parent / "sd1_tokenizer"
    return folder if (folder / "vocab.json").is_file() else None


def torch_device() -> torch.device:
    """The device ComfyUI runs models on (CPU/CUDA outside ComfyUI)."""
    if _model_management is not None:
        return _model_management.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device() -> torch.device:
    """Where ComfyUI parks models and IMAGE tensors between nodes."""
    if _model_management is not None:
        return _model_management.intermediate_device()
    return torch.device("cpu")


def throw_if_interrupted() -> None:
    """Raise ComfyUI's interruption exception when the user pressed Cancel."""
    if _model_management is not None:
        _model_management.throw_exception_if_processing_interrupted()


class NodeProgress:
    """A ``progress(done, total)`` callback for the engine that drives ComfyUI's bar.

    Each call also checks for interruption, so any engine loop that reports progress can be cancelled.
    """

    def __init__(self, total: int = 1):
        self._bar = _comfy_utils.ProgressBar(total) if _comfy_utils is not None else None
        self.last = (0, total)

    def __call__(self, done: int, total: int) -> None:
        throw_if_interrupted()
        self.last = (done, total)
        if self._bar is not None:
            self._bar.update_absolute(done, total)


def progress(total: int = 1) -> NodeProgress:
    return NodeProgress(total)


# ---- HTTP route for the pack's canvas widgets (web/harmovid.js) ------------------------------------

FRAME_ROUTE = "/harmovid/frame"


class RequestError(Exception):
    """A request the frame route refuses: ``status`` is the HTTP status, the message says what to change."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def input_directory() -> Path:
    """ComfyUI's input folder (uploads land there); outside ComfyUI, ``$HARMOVID_INPUT_DIR`` or ./input."""
    if IN_COMFYUI:
        return Path(_folder_paths.get_input_directory())
    return Path(os.environ.get("HARMOVID_INPUT_DIR", "input"))


def input_file(filename: str, subfolder: str = "") -> Path:
    """The file ``subfolder/filename`` inside the input folder, refusing anything that would leave it."""
    if not filename:
        raise RequestError(400, "filename is missing: give the name of a video in ComfyUI's input folder.")
    for part in (filename, subfolder):
        if "\0" in part or os.path.isabs(part) or ".." in Path(part.replace("\\", "/")).parts:
            raise RequestError(400, f"{part!r} is not a plain name inside ComfyUI's input folder ('..' and absolute paths are refused).")
    base = input_directory().resolve()
    path = (base / subfolder / filename).resolve()
    if os.path.commonpath([base, path]) != str(base):  # a symlink pointing out of the folder
        raise RequestError(403, f"{filename!r} is outside ComfyUI's input folder.")
    if not path.is_file():
        raise RequestError(404, f"{filename!r} is not in ComfyUI's input folder; upload it with a Load Video node.")
    return path


def frame_index(text: str, name: str = "index") -> int:
    try:
        index = int(text)
    except (TypeError, ValueError):
        raise RequestError(400, f"{name} {text!r} is not a frame number (0, 1, 2, ...).") from None
    if index < 0:
        raise RequestError(400, f"{name} {index} is negative; frames count from 0.")
    return index


# Longest side of the frames the route serves (the widgets draw them a few hundred pixels wide; the
# clip's own size comes in the headers, so prompts stay in its pixels).
FRAME_SIDE = 1024
# Farthest a cut-out frame may be from the prompt frame whose people it follows (frames decoded per request).
MAX_PROMPT_SPAN = 64


def encode_picture(picture):
    """uint8 ``[h, w, 3]`` -> (JPEG bytes, "jpg"); ``[h, w, 4]`` -> (PNG bytes, "png"), alpha kept."""
    import cv2

    if picture.shape[-1] == 4:
        return cv2.imencode(".png", picture[..., [2, 1, 0, 3]])[1].tobytes(), "png"
    return cv2.imencode(".jpg", picture[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes(), "jpg"


def frame_picture(path: Path, index: int, cutout: bool = False, prompts=None, prompt_frame: int = 0):
    """Frame ``index`` of the clip at ``path``, scaled down to ``FRAME_SIDE``: (bytes, "jpg" or "png",
    the clip's ``VideoInfo``). ``cutout`` adds the built-in segmenter's person mask as the alpha
    channel (the Composite preview's foreground), as PNG; with ``prompts`` (a SAM2 Mask's points and box
    on ``prompt_frame``) only the people they pick, followed from that frame to this one."""
    from comfy_harmovid import previews
    from comfy_harmovid.io import probe_video, read_video
    from comfy_harmovid.segment import segment_portrait

    try:
        info = probe_video(path)
    except HarmoVidError as error:
        raise RequestError(415, f"{path.name} is not a video or image this pack can read: {error}") from None
    for name, value in (("index", index), ("prompt_frame", prompt_frame)):
        if value >= info.frame_count:
            raise RequestError(400, f"{name} {value} is past the last frame of {path.name} (frames 0..{info.frame_count - 1}).")
    if not cutout:
        frame = read_video(path, start=index, max_frames=1).frames
        return (*encode_picture(previews.preview_frames(frame, max_side=FRAME_SIDE)[1][0]), info)
    first = min(index, prompt_frame) if prompts else index
    last = max(index, prompt_frame) if prompts else index
    if last - first >= MAX_PROMPT_SPAN:
        raise RequestError(400, f"prompt_frame {prompt_frame} is more than {MAX_PROMPT_SPAN} frames from frame {index}; "
                                "the preview follows the prompted person only that far.")
    frames = read_video(path, start=first, max_frames=last - first + 1).frames
    try:
        alpha = segment_portrait(frames, temporal_smoothing=0.0, soft=True, prompts=prompts,
                                 prompt_frame=prompt_frame - first)[index - first]
    except HarmoVidError as error:  # prompts that pick nobody, or the built-in segmenter not installed
        raise RequestError(400 if prompts else 501, f"no person cut-out: {error}") from None
    return (*encode_picture(previews.cutout(frames[index - first], alpha, max_side=FRAME_SIDE)), info)


async def serve_frame(request):
    """GET FRAME_ROUTE?filename=&subfolder=&index=&cutout=1 -> that frame of an input clip (JPEG, or
    PNG with the person's alpha for a cut-out), at most FRAME_SIDE pixels on its longest side. A cut-out
    may name the people to keep as SAM2 Mask does: points=&negative_points=&box=&prompt_frame=.

    The clip's frame count, width and height come back in ``X-HarmoVid-Frame-Count``,
    ``X-HarmoVid-Width`` and ``X-HarmoVid-Height``; refusals are plain-text 4xx answers."""
    import asyncio

    from aiohttp import web

    query = request.rel_url.query
    try:
        path = input_file(query.get("filename", ""), query.get("subfolder", ""))
        index = frame_index(query.get("index", "0"))
        cutout = query.get("cutout", "") in ("1", "true")
        try:
            prompts = Prompts.parse(query.get("points", ""), query.get("negative_points", ""), query.get("box", ""))
        except HarmoVidError as error:
            raise RequestError(400, str(error)) from None
        prompt_frame = frame_index(query.get("prompt_frame", "0"), "prompt_frame")
        body, kind, info = await asyncio.get_running_loop().run_in_executor(
            None, frame_picture, path, index, cutout, prompts, prompt_frame)
    except RequestError as error:
        return web.Response(status=error.status, text=str(error))
    headers = {"X-HarmoVid-Frame-Count": str(info.frame_count), "X-HarmoVid-Width": str(info.width),
               "X-HarmoVid-Height": str(info.height), "Cache-Control": "no-store"}
    return web.Response(body=body, content_type="image/png" if kind == "png" else "image/jpeg", headers=headers)


def register_routes() -> None:
    """Add the widgets' route to ComfyUI's server (nothing to do outside ComfyUI)."""
    if not IN_COMFYUI:
        return
    from server import PromptServer

    PromptServer.instance.routes.get(FRAME_ROUTE)(serve_frame)


# ---- previews shown in the nodes after a run (the "ui" part of a node's result) ---------------------

PREVIEW_SUBFOLDER = "harmovid"


def preview_directory():
    """Where previews are saved: ComfyUI's temp folder (emptied at start-up). None outside ComfyUI."""
    return Path(_folder_paths.get_temp_directory()) if IN_COMFYUI else None


def save_pictures(pictures, name: str) -> list:
    """Save uint8 pictures (RGB as JPEG, RGBA as PNG) for the front end to fetch through ``/view``.

    Returns ComfyUI's image references ``[{"filename", "subfolder", "type": "temp"}, ...]``, or [] when
    there is no preview folder (outside ComfyUI)."""
    import uuid

    from comfy_harmovid.atomic import atomic_output

    folder = preview_directory()
    if folder is None:
        return []
    run = uuid.uuid4().hex[:12]
    references = []
    for number, picture in enumerate(pictures):
        encoded, extension = encode_picture(picture)
        filename = f"{name}_{run}_{number:03d}.{extension}"
        with atomic_output(folder / PREVIEW_SUBFOLDER / filename) as partial:
            partial.write_bytes(encoded)
        references.append({"filename": filename, "subfolder": PREVIEW_SUBFOLDER, "type": "temp"})
    return references


def with_ui(result: tuple, make_ui):
    """A node's return value: ``result`` plus ``make_ui()`` (what its widgets show), as ComfyUI takes
    it; just ``result`` when previews cannot be saved (outside ComfyUI), without calling ``make_ui``."""
    if preview_directory() is None:
        return result
    return {"ui": make_ui(), "result": result}


def frames_output(frames, name: str):
    """A node's return value for one IMAGE output: ``frames`` on the offload device, previewed in the node."""
    frames = frames.to(offload_device())
    return with_ui((frames,), lambda: frame_previews(frames, name=name))


def frame_previews(frames, mask=None, name: str = "frames") -> dict:
    """The ``ui`` entries of a clip's preview (web/harmovid.js shows them with a frame slider): a few
    frames spread over the clip, the mask drawn over them when given (or over black without frames)."""
    from comfy_harmovid.previews import preview_frames

    indices, pictures = preview_frames(frames, mask)
    return {"harmovid_preview": save_pictures(pictures, name), "harmovid_preview_index": indices}

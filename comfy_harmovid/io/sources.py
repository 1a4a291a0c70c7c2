"""Sources: a video file, a folder of images or one image, opened and played frame by frame at the
requested rate (what the readers in ``reading.py`` build on).

A source yields one ``(load, time, name)`` per frame: ``load()`` gives the pixels, uint8/uint16
[H, W, 3] for colour or [H, W] for masks (``stack_frames`` turns them into 0..1 floats). Loading is
deferred so frames before ``start`` are decoded but never converted.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import HarmoVidError
from ..frame_rate import source_frame
from .media import DECODE_SCALING, IMAGE_EXTENSIONS, check_fps, open_container, video_stream

DEFAULT_IMAGE_FPS = 24.0


@dataclass
class Source:
    path: Path
    kind: str  # "video", "folder" or "image"
    fps: float
    has_audio: bool
    files: tuple[Path, ...] = ()


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _image_files(folder: Path) -> list[Path]:
    files = [
        f for f in folder.iterdir()
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return sorted(files, key=lambda f: _natural_key(f.name))


def _stream_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return float(rate)
    return DEFAULT_IMAGE_FPS


def open_source(path, fps=None) -> Source:
    check_fps(fps)
    if path is None or str(path) == "":
        raise HarmoVidError("No input path given. Give a video file, an image, or a folder of images.")
    path = Path(path).expanduser()
    if not path.exists():
        raise HarmoVidError(f"{path}: no such file or folder. Check the path.")
    if path.is_dir():
        files = _image_files(path)
        if not files:
            raise HarmoVidError(
                f"{path}: the folder holds no images ({', '.join(IMAGE_EXTENSIONS)}). "
                "Put the frames there, or give a video file."
            )
        return Source(path, "folder", float(fps or DEFAULT_IMAGE_FPS), False, tuple(files))
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return Source(path, "image", float(fps or DEFAULT_IMAGE_FPS), False, (path,))
    with open_container(path) as container:
        stream = video_stream(container, path)
        return Source(path, "video", _stream_fps(stream), bool(container.streams.audio))


def load_image(file: Path, mask: bool) -> np.ndarray:
    try:
        with Image.open(file) as image:
            image = ImageOps.exif_transpose(image)
            if mask:
                if image.has_transparency_data:
                    return np.array(image.convert("RGBA"))[..., 3]
                if image.mode.startswith("I;16"):
                    return np.array(image).astype(np.uint16)
                return np.array(image.convert("L"))
            if image.mode.startswith("I;16"):
                return np.repeat(np.array(image).astype(np.uint16)[..., None], 3, axis=-1)
            return np.array(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise HarmoVidError(f"{file}: cannot read the image ({error}). Replace or remove the file.") from None


def _image_frames(source: Source, mask: bool) -> Iterator[tuple[Callable, float, str]]:
    for index, file in enumerate(source.files):
        yield partial(load_image, file, mask), index / source.fps, str(file)


def _frame_format(stream, mask: bool) -> str:
    """The pixel format to convert decoded frames to: 8 or 16 bit, colour, grey or with alpha."""
    pix_fmt = stream.codec_context.format
    deep = alpha = False
    if pix_fmt is not None:
        deep = any(c.bits > 8 for c in pix_fmt.components)
        alpha = any(c.is_alpha for c in pix_fmt.components)
    if mask:
        if alpha:
            return "rgba64le" if deep else "rgba"
        return "gray16le" if deep else "gray"
    return "rgb48le" if deep else "rgb24"


def _rotate(array: np.ndarray, degrees) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, as PyAV reports it)."""
    turns = round((degrees or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(array, turns)) if turns else array


def _frame_array(frame, pix_fmt: str) -> np.ndarray:
    array = frame.to_ndarray(format=pix_fmt, interpolation=DECODE_SCALING)
    if pix_fmt.startswith("rgba"):
        array = array[..., 3]
    return _rotate(array, getattr(frame, "rotation", 0))


def _video_frames(source: Source, mask: bool) -> Iterator[tuple[Callable, float, str]]:
    with open_container(source.path) as container:
        stream = video_stream(container, source.path)
        stream.thread_type = "AUTO"
        pix_fmt = _frame_format(stream, mask)
        frames = container.decode(stream)
        for index in itertools.count():
            try:
                frame = next(frames)
            except StopIteration:
                return
            except av.FFmpegError as error:
                raise HarmoVidError(
                    f"{source.path}: decoding failed at frame {index} ({error}). The file is damaged; "
                    "re-export it, or read only the frames before it with max_frames."
                ) from None
            time = frame.time if frame.time is not None else index / source.fps
            yield partial(_frame_array, frame, pix_fmt), time, f"{source.path} frame {index}"


def _resample_times(items, source_fps: float, output_fps: float):
    """Pick frames by time to change the frame rate (see :mod:`comfy_harmovid.frame_rate`)."""
    wanted = 0
    count = 0
    for index, item in enumerate(items):
        while wanted == index:
            yield item
            count += 1
            wanted = source_frame(count, source_fps, output_fps)


def check_range(start, max_frames) -> None:
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise HarmoVidError(f"start must be a frame index >= 0, got {start!r}.")
    if max_frames is not None and (not isinstance(max_frames, int) or isinstance(max_frames, bool) or max_frames < 1):
        raise HarmoVidError(f"max_frames must be None (all) or a frame count >= 1, got {max_frames!r}.")


def iter_selected(source: Source, mask: bool, start: int, max_frames, fps) -> Iterator[tuple[np.ndarray, float]]:
    """Frames of ``source`` at the requested rate, from ``start`` on, at most ``max_frames``;
    raises when the range holds no frame."""
    check_range(start, max_frames)
    items = _video_frames(source, mask) if source.kind == "video" else _image_frames(source, mask)
    if source.kind == "video" and fps is not None and float(fps) != source.fps:
        items = _resample_times(items, source.fps, float(fps))
    stop = None if max_frames is None else start + max_frames
    size = None
    for load, time, name in itertools.islice(items, start, stop):
        array = load()
        if size is None:
            size = array.shape[:2]
        elif array.shape[:2] != size:
            raise HarmoVidError(
                f"{name}: is {array.shape[1]}x{array.shape[0]} but the first frame is {size[1]}x{size[0]}. "
                "All frames of a clip must have the same size; resize or remove it."
            )
        yield array, time
    if size is None:
        where = f" from frame {start} on" if start else ""
        raise HarmoVidError(f"{source.path}: has no frames{where}. Check the file and the start frame.")

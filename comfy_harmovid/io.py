"""Video in and out: read clips into IMAGE/MASK tensors, stream them in chunks, write them back.

Sources (``read_video``, ``iter_video_chunks``, ``read_mask``, ``iter_mask_chunks``, ``probe_video``):

- any video PyAV can decode (the display rotation of phone videos is applied; 10/12-bit video is
  read at full precision);
- a folder of images (png, jpg, jpeg, webp, tif, tiff, bmp; natural sort, so ``frame2`` comes before
  ``frame10``; hidden files ignored), played at the ``fps`` argument (default 24);
- a single image, as a one-frame clip.

Outputs (``VideoWriter``, ``write_video``), chosen by the path:

- ``.mp4`` / ``.mov``: H.264 (libx264), yuv420p, BT.709, quality by ``crf``. yuv420p needs an even
  width and height: an odd size is padded by one row/column repeating the edge pixels, so the file
  is up to one pixel larger than the frames.
- ``.mkv``: FFV1 lossless in 8-bit RGB, so 8-bit frames read back exactly.
- a path ending in ``/`` or without a suffix: a folder of PNGs ``000000.png``, ``000001.png``, ...

Audio: ``read_video`` names the file a clip's sound can be taken from (``Video.audio_path``);
``VideoWriter(audio_from=...)`` muxes it in, cut to the video's length: AAC/MP3/AC-3 (and in mkv
Opus/Vorbis) packets are copied, other codecs re-encoded (AAC in mp4/mov, FLAC in mkv). PNG folders
hold no audio.

Writes go to a hidden temporary next to the target that is renamed into place only when the output is
complete; after an error the temporary is removed and the target is as it was. An existing output is
refused unless ``overwrite=True``, and even then it is replaced only once the new one is complete.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
import re
import shutil
import uuid
import weakref
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from functools import partial
from typing import Callable, Iterator

import av
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import HarmoVidError
from .validate import check_frames, check_mask

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv")  # what VideoWriter writes (besides PNG folders)
DEFAULT_IMAGE_FPS = 24.0
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")

# Audio codecs copied packet by packet into each container. Only codecs with short packets (<= 32 ms)
# are copied, because a copy can only be cut at a packet boundary; the others (PCM, FLAC, ALAC, ...)
# are decoded, cut to the sample and re-encoded (FLAC in mkv is lossless; AAC in mp4/mov).
_SHORT_PACKET_AUDIO = {"aac", "mp3", "ac3", "eac3"}
_REMUX_AUDIO = {
    "mp4": _SHORT_PACKET_AUDIO,
    "mov": _SHORT_PACKET_AUDIO,
    "matroska": _SHORT_PACKET_AUDIO | {"opus", "vorbis"},
}
_TRANSCODE_AUDIO = {"mp4": "aac", "mov": "aac", "matroska": "flac"}

# swscale flags for YUV <-> RGB. The defaults round badly (RGB read back about 1.2/255 too dark, and
# chroma upsampled coarsely); accurate rounding with full-resolution chroma interpolation removes the
# bias (measured: smooth clip through yuv420p, 44 -> 53 dB PSNR). It costs ~15 ms per 1080p frame.
_SWS_BILINEAR, _SWS_AREA = 0x2, 0x20
_SWS_FULL_CHROMA = 0x2000 | 0x4000  # SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP
_SWS_ACCURATE_RND = 0x40000
_DECODE_SCALING = _SWS_BILINEAR | _SWS_FULL_CHROMA | _SWS_ACCURATE_RND
_ENCODE_SCALING = _SWS_AREA | _SWS_ACCURATE_RND  # box filter when halving the chroma


@dataclass(frozen=True)
class VideoInfo:
    """What ``read_video`` would return for a source, without decoding it all."""

    path: Path
    width: int
    height: int
    frame_count: int
    fps: float
    has_audio: bool
    start_time: float = 0.0  # source time (s) of the first frame; see VideoWriter's audio_start

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frame_count / self.fps


@dataclass
class Video:
    """A decoded clip: ``frames`` [T, H, W, 3] float32 in 0..1."""

    frames: torch.Tensor
    fps: float
    audio_path: Path | None = None  # the file this clip's audio can be taken from (None: no audio)
    start_time: float = 0.0  # source time (s) of the first frame: pass as VideoWriter(audio_start=)


# ----------------------------------------------------------------------------------------------
# Sources yield one (load, time, name) per frame: ``load()`` gives the pixels, uint8/uint16
# [H, W, 3] for colour or [H, W] for masks (stack_frames turns them into 0..1 floats). Loading is
# deferred so frames before ``start`` are decoded but never converted.


@dataclass
class _Source:
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


def _check_fps(fps, name: str = "fps") -> None:
    valid = isinstance(fps, numbers.Real) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0
    if fps is not None and not valid:
        raise HarmoVidError(f"{name} must be a positive number of frames per second, got {fps!r}.")


def _open_container(path: Path):
    try:
        return av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise HarmoVidError(
            f"{path}: cannot read it as a video ({error}). The file may be corrupt, incomplete or not a "
            f"video; re-export it, or give an image ({', '.join(IMAGE_EXTENSIONS)}) or a folder of images."
        ) from None


def _video_stream(container, path: Path):
    # Cover art in music files is a one-picture "video" stream: not a clip.
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        raise HarmoVidError(f"{path}: has no video stream (is it an audio file?). Give a video file.")
    return streams[0]


def _stream_fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return float(rate)
    return DEFAULT_IMAGE_FPS


def _open_source(path, fps=None) -> _Source:
    _check_fps(fps)
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
        return _Source(path, "folder", float(fps or DEFAULT_IMAGE_FPS), False, tuple(files))
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return _Source(path, "image", float(fps or DEFAULT_IMAGE_FPS), False, (path,))
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        return _Source(path, "video", _stream_fps(stream), bool(container.streams.audio))


def _load_image(file: Path, mask: bool) -> np.ndarray:
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


def _image_frames(source: _Source, mask: bool) -> Iterator[tuple[Callable, float, str]]:
    for index, file in enumerate(source.files):
        yield partial(_load_image, file, mask), index / source.fps, str(file)


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
    array = frame.to_ndarray(format=pix_fmt, interpolation=_DECODE_SCALING)
    if pix_fmt.startswith("rgba"):
        array = array[..., 3]
    return _rotate(array, getattr(frame, "rotation", 0))


def _video_frames(source: _Source, mask: bool) -> Iterator[tuple[Callable, float, str]]:
    with _open_container(source.path) as container:
        stream = _video_stream(container, source.path)
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


def _resample_times(items, ratio: float):
    """Pick frames by time to change the frame rate: output frame k shows the source frame on screen
    at k / fps_out, i.e. source index floor(k * ratio) with ratio = fps_in / fps_out."""
    wanted = 0
    count = 0
    for index, item in enumerate(items):
        while wanted == index:
            yield item
            count += 1
            wanted = math.floor(count * ratio + 1e-9)


def _resampled_count(count: int, ratio: float) -> int:
    """How many frames _resample_times yields from ``count`` source frames."""
    out = math.ceil(count / ratio)
    while out > 0 and math.floor((out - 1) * ratio + 1e-9) >= count:
        out -= 1
    while math.floor(out * ratio + 1e-9) < count:
        out += 1
    return out


def _check_range(start, max_frames) -> None:
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise HarmoVidError(f"start must be a frame index >= 0, got {start!r}.")
    if max_frames is not None and (not isinstance(max_frames, int) or isinstance(max_frames, bool) or max_frames < 1):
        raise HarmoVidError(f"max_frames must be None (all) or a frame count >= 1, got {max_frames!r}.")


def _iter_selected(source: _Source, mask: bool, start: int, max_frames, fps) -> Iterator[tuple[np.ndarray, float]]:
    """Frames of ``source`` at the requested rate, from ``start`` on, at most ``max_frames``;
    raises when the range holds no frame."""
    _check_range(start, max_frames)
    items = _video_frames(source, mask) if source.kind == "video" else _image_frames(source, mask)
    if source.kind == "video" and fps is not None and abs(float(fps) - source.fps) > 1e-6:
        items = _resample_times(items, source.fps / float(fps))
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


def stack_frames(arrays: list[np.ndarray]) -> torch.Tensor:
    """8/16-bit frames (as :func:`iter_frame_arrays` yields them) -> one float32 tensor in 0..1,
    allocated once. (numpy, not torch: torch's element-wise threads were 15x slower than one numpy
    thread on a busy machine.)"""
    out = np.empty((len(arrays), *arrays[0].shape), dtype=np.float32)
    for index, array in enumerate(arrays):
        np.divide(array, np.float32(65535 if array.dtype == np.uint16 else 255), out=out[index])
    return torch.from_numpy(out)


def _read(path, mask: bool, start: int, max_frames, fps) -> tuple[torch.Tensor, _Source, float]:
    source = _open_source(path, fps)
    arrays, first_time = [], 0.0
    for array, time in _iter_selected(source, mask, start, max_frames, fps):
        if not arrays:
            first_time = time
        arrays.append(array)  # kept compact (8/16 bit) until the float tensor is allocated once
    return stack_frames(arrays), source, first_time


def _iter_chunks(path, mask: bool, chunk_frames: int, start: int, max_frames, fps) -> Iterator[torch.Tensor]:
    """Check the arguments and open the source now, so bad input fails at the call, not mid-stream."""
    if not isinstance(chunk_frames, int) or isinstance(chunk_frames, bool) or chunk_frames < 1:
        raise HarmoVidError(f"chunk_frames must be a frame count >= 1, got {chunk_frames!r}.")
    _check_range(start, max_frames)
    return _chunks(_open_source(path, fps), mask, chunk_frames, start, max_frames, fps)


def _chunks(source: _Source, mask: bool, chunk_frames: int, start: int, max_frames, fps) -> Iterator[torch.Tensor]:
    chunk = []
    for array, _ in _iter_selected(source, mask, start, max_frames, fps):
        chunk.append(array)
        if len(chunk) == chunk_frames:
            yield stack_frames(chunk)
            chunk = []
    if chunk:
        yield stack_frames(chunk)


# ----------------------------------------------------------------------------------------------
# Public reading API


def probe_video(path, *, fps=None) -> VideoInfo:
    """Size, exact frame count, frame rate and audio of a source, as ``read_video(path, fps=fps)``
    would return them. ``fps`` sets the rate of image folders and images (default 24); for a video
    it resamples (see ``read_video``)."""
    source = _open_source(path, fps)
    if source.kind != "video":
        first = _load_image(source.files[0], mask=False)
        return VideoInfo(source.path, first.shape[1], first.shape[0], len(source.files), source.fps, False)
    first, first_time = next(_iter_selected(source, False, 0, 1, None))
    count = _count_frames(source.path)
    out_fps = source.fps
    if fps is not None and abs(float(fps) - source.fps) > 1e-6:
        count, out_fps = _resampled_count(count, source.fps / float(fps)), float(fps)
    return VideoInfo(source.path, first.shape[1], first.shape[0], count, out_fps, source.has_audio, first_time)


# Containers that store exactly one video frame per packet (an MP4 sample, a Matroska block).
_ONE_FRAME_PER_PACKET = ("mov", "mp4", "matroska", "webm")


def _count_frames(path: Path) -> int:
    """Exact decodable frame count. Counting packets (skipping those an edit list hides) needs no
    decoding; the count is trusted when it agrees with the header's, or when the container or codec
    stores one frame per packet (it also handles truncated files, whose header promises more).
    Otherwise (AVI, MPEG-TS, raw streams ...) the frames are decoded and counted."""
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        declared = stream.frames
        one_per_packet = any(name in _ONE_FRAME_PER_PACKET for name in container.format.name.split(","))
        one_per_packet |= bool(getattr(stream.codec_context.codec, "intra_only", False))
        try:
            packets = sum(1 for p in container.demux(stream) if p.size > 0 and not p.is_discard)
        except av.FFmpegError:
            packets = -1
    if packets > 0 and (packets == declared or one_per_packet):
        return packets
    with _open_container(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        try:
            return sum(1 for _ in container.decode(stream))
        except av.FFmpegError as error:
            raise HarmoVidError(f"{path}: decoding failed ({error}). The file is damaged; re-export it.") from None


def read_video(path, *, start: int = 0, max_frames: int | None = None, fps: float | None = None) -> Video:
    """Read a clip into ``Video(frames [T, H, W, 3] float32 0..1, fps, audio_path, start_time)``.

    ``start`` / ``max_frames`` select frames (counted at the output rate). ``fps`` is the rate of an
    image folder or image (default 24); for a video file, None keeps its own rate and another value
    resamples it in time (frames are repeated or dropped; the duration stays the same).
    """
    frames, source, first_time = _read(path, False, start, max_frames, fps)
    out_fps = float(fps) if fps is not None else source.fps
    audio_path = source.path if source.has_audio else None
    return Video(frames, out_fps, audio_path, first_time)


def iter_video_chunks(path, chunk_frames: int = 16, *, start: int = 0, max_frames: int | None = None,
                      fps: float | None = None) -> Iterator[torch.Tensor]:
    """Stream a clip as [t <= chunk_frames, H, W, 3] float32 tensors; only one chunk is held at a time.
    Concatenated, the chunks equal ``read_video(...).frames`` for the same arguments."""
    return _iter_chunks(path, False, chunk_frames, start, max_frames, fps)


def iter_frame_arrays(path, *, mask: bool = False, start: int = 0) -> Iterator[np.ndarray]:
    """Stream a clip (or a mask clip) frame by frame as decoded, from frame ``start`` on: uint8 arrays
    (uint16 for 16-bit sources), [H, W, 3] colour or [H, W] mask, a quarter of the size of float32
    frames. :func:`stack_frames` turns a list of them into the float tensor the other readers give."""
    _check_range(start, None)
    source = _open_source(path)
    return (array for array, _ in _iter_selected(source, mask, start, None, None))


def read_mask(path, *, start: int = 0, max_frames: int | None = None, fps: float | None = None) -> torch.Tensor:
    """Read a mask clip into [T, H, W] float32 0..1 (1 = foreground): the luma of a video or image,
    or its alpha channel when it has one (RGBA/LA images, videos with an alpha pixel format)."""
    return _read(path, True, start, max_frames, fps)[0]


def iter_mask_chunks(path, chunk_frames: int = 16, *, start: int = 0, max_frames: int | None = None,
                     fps: float | None = None) -> Iterator[torch.Tensor]:
    """Stream a mask clip as [t, H, W] float32 chunks (see ``read_mask``)."""
    return _iter_chunks(path, True, chunk_frames, start, max_frames, fps)


# ----------------------------------------------------------------------------------------------
# Writing


def _output_kind(path: Path, raw: str) -> str:
    if raw.endswith(("/", os.sep)) or path.suffix == "" or path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix not in VIDEO_EXTENSIONS:
        raise HarmoVidError(
            f"{path}: cannot write '{path.suffix}' files. Use .mp4 or .mov (H.264), .mkv (lossless FFV1), "
            "or a folder path ending in '/' for PNG frames."
        )
    if suffix in (".mp4", ".mov"):
        return suffix[1:]
    return "matroska"


def _as_fraction(fps) -> Fraction:
    # 29.97002997... (30000/1001 as a float) comes back as exactly 30000/1001.
    return Fraction(fps).limit_denominator(100000)


def _to_uint8(frames: torch.Tensor) -> Iterator[np.ndarray]:
    """[t, H, W, 3] or [t, H, W] floats in 0..1 -> uint8 [H, W, 3] frames (masks become grey).

    One frame at a time, so the float temporaries are a frame, not a chunk."""
    for frame in frames.detach():
        array = frame.to("cpu", torch.float32).numpy()
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=-1)
        yield np.rint(np.clip(array, 0, 1) * np.float32(255)).astype(np.uint8)


class _AudioTrack:
    """Copies the audio of a source file into an output container, kept in step with the video.

    Packets are copied as they are when the container accepts the codec, else decoded, cut and
    re-encoded (AAC for mp4/mov, FLAC for mkv). Audio is shifted so ``start`` seconds of the source
    fall on the first video frame, and cut at the end of the video.
    """

    def __init__(self, output, container_format: str, source: Path, start: float):
        self.input = _open_container(source)
        self.in_stream = self.input.streams.audio[0]
        self.start = start
        codec = self.in_stream.codec_context.name
        self.remux = codec in _REMUX_AUDIO[container_format]
        if self.remux:
            self.out_stream = output.add_stream_from_template(self.in_stream)
            self.items = self.input.demux(self.in_stream)
        else:
            encoder = _TRANSCODE_AUDIO[container_format]
            rate = self.in_stream.codec_context.sample_rate
            rates = av.codec.Codec(encoder, "w").audio_rates
            if rates and rate not in rates:
                rate = 48000
            self.out_stream = output.add_stream(encoder, rate=rate)
            layout = self.in_stream.codec_context.layout
            if layout.name.endswith("channels"):  # no channel order given (e.g. WAV): use the usual one
                layout = av.AudioLayout(f"{len(layout.channels)}c")
            self.out_stream.layout = layout
            if encoder == "flac":
                self.out_stream.format = "s32" if self.in_stream.codec_context.format.bytes > 2 else "s16"
            else:
                self.out_stream.format = av.codec.Codec(encoder, "w").audio_formats[0].name
            self.items = self.input.decode(self.in_stream)
            self.samples_out = 0
        self.pending = None  # the first packet/frame past the last call's end, held for the next
        self.output = output
        self.source = source

    def _next(self):
        if self.pending is not None:
            item, self.pending = self.pending, None
            return item
        try:
            return next(self.items)
        except StopIteration:
            return None
        except av.FFmpegError as error:
            raise HarmoVidError(
                f"audio_from {self.source}: reading its audio failed ({error}). The file is damaged; "
                "re-export it or leave audio_from unset."
            ) from None

    def write_until(self, end: float, cut: bool = False) -> None:
        """Write the audio that starts before ``end`` seconds of output time; with ``cut``, the
        audio is also cut at ``end`` (exactly when re-encoding, else at the next packet boundary)."""
        while (item := self._next()) is not None:
            if item.pts is None:
                continue
            begin = float(item.pts * item.time_base) - self.start
            if begin >= end or (not cut and begin + _duration(item) > end):
                self.pending = item
                return
            if self.remux:
                self._copy_packet(item, begin)
            else:
                self._encode_frame(item, begin, end if cut else math.inf)

    def _copy_packet(self, packet, begin: float) -> None:
        if begin < 0 or packet.size == 0:
            return  # before the first video frame (at most one packet's length of audio is lost)
        shift = round(self.start / packet.time_base)
        packet.pts -= shift
        if packet.dts is not None:
            packet.dts -= shift
        packet.stream = self.out_stream
        self.output.mux(packet)

    def _encode_frame(self, frame, begin: float, end: float) -> None:
        rate = frame.sample_rate
        first = max(0, round(-begin * rate))
        last = frame.samples if end == math.inf else min(frame.samples, round((end - begin) * rate))
        if last <= first:
            return
        if first > 0 or last < frame.samples:
            frame = _slice_audio(frame, first, last)
        frame.pts, frame.time_base = self.samples_out, Fraction(1, rate)  # the cut audio is contiguous
        self.samples_out += frame.samples
        for packet in self.out_stream.encode(frame):
            self.output.mux(packet)

    def finish(self, end: float) -> None:
        self.write_until(end, cut=True)
        if not self.remux:
            for packet in self.out_stream.encode(None):
                self.output.mux(packet)
        self.close()

    def close(self) -> None:
        self.input.close()


def _duration(item) -> float:
    """Length in seconds of an audio frame or packet."""
    if isinstance(item, av.AudioFrame):
        return item.samples / item.sample_rate
    return float((item.duration or 0) * item.time_base)


def _slice_audio(frame, first: int, last: int):
    array = frame.to_ndarray()
    if frame.format.is_planar:
        array = array[:, first:last]
    else:
        channels = len(frame.layout.channels)
        array = array[:, first * channels:last * channels]
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(array), format=frame.format.name, layout=frame.layout)
    out.sample_rate = frame.sample_rate
    return out


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


class VideoWriter:
    """Write frames chunk by chunk to an mp4/mov (H.264), mkv (lossless FFV1) or PNG folder.

    Use it as a context manager::

        with VideoWriter("out.mp4", fps=30, audio_from="input.mp4") as writer:
            for chunk in chunks:
                writer.write(chunk)   # [t, H, W, 3] float 0..1, or a [t, H, W] mask (written grey)

    ``crf`` (0..51, lower is better, 18 is visually lossless) and ``preset`` apply to H.264.
    ``audio_from``: a media file whose first audio stream is muxed in, starting ``audio_start``
    seconds into it and cut at the end of the video. To keep a clip read from frame ``start`` in
    sync, pass ``Video.start_time`` (or, when streaming, ``info.start_time + start / info.fps`` with
    ``info = probe_video(path)``). PNG folders cannot hold audio.
    The output appears only when the writer closes without error (see the module notes).
    """

    def __init__(self, path, fps, *, crf: int = 18, preset: str = "medium", audio_from=None,
                 audio_start: float = 0.0, overwrite: bool = False):
        if path is None or str(path) == "":
            raise HarmoVidError("No output path given. Give a .mp4, .mov or .mkv file, or a folder ending in '/'.")
        raw = str(path)
        self.path = Path(path).expanduser()
        self.kind = _output_kind(self.path, raw)
        if fps is None:
            raise HarmoVidError("fps is required to write a video (use the input's fps).")
        _check_fps(fps)
        self.fps = float(fps)
        if not isinstance(crf, int) or not 0 <= crf <= 51:
            raise HarmoVidError(f"crf must be an integer 0..51 (lower is better quality), got {crf!r}.")
        if preset not in X264_PRESETS:
            raise HarmoVidError(
                f"preset must be one of {', '.join(X264_PRESETS)} (faster = bigger files), got {preset!r}."
            )
        self.crf, self.preset, self.overwrite = crf, preset, overwrite
        self.audio_from = None if audio_from is None else Path(audio_from).expanduser()
        self.audio_start = float(audio_start)
        if self.audio_from is not None:
            self._check_audio_source()
        self._refuse_existing()
        token = uuid.uuid4().hex[:8]
        suffix = "" if self.kind == "folder" else self.path.suffix
        self.temp = self.path.with_name(f".{self.path.name}.partial-{token}{suffix}")
        self.frames_written = 0
        self.size = None  # (height, width) of the frames
        self._container = self._stream = self._audio = None
        self._done = False
        # A writer dropped without close() (no `with`) must not leave its temporary behind.
        self._cleanup = weakref.finalize(self, _remove, self.temp)

    def _check_audio_source(self) -> None:
        if self.kind == "folder":
            raise HarmoVidError(
                f"{self.path}: a PNG folder cannot hold audio. Write .mp4/.mov/.mkv to keep the audio, "
                "or leave audio_from unset."
            )
        if not self.audio_from.is_file():
            raise HarmoVidError(f"audio_from {self.audio_from}: no such file. Check the path.")
        with _open_container(self.audio_from) as container:
            if not container.streams.audio:
                raise HarmoVidError(
                    f"audio_from {self.audio_from}: has no audio stream. Pick a file with sound, or leave "
                    "audio_from unset."
                )

    def _refuse_existing(self) -> None:
        if not self.overwrite and (self.path.exists() or self.path.is_symlink()):
            raise HarmoVidError(
                f"{self.path}: already exists and was left untouched. Choose another output path, or "
                "allow replacing it (overwrite=True, or --overwrite on the command line)."
            )

    # -- writing

    def write(self, frames: torch.Tensor) -> None:
        """Append a chunk: [t, H, W, 3] float frames, or a [t, H, W] float mask (written as grey)."""
        if self._done:
            raise HarmoVidError(f"{self.path}: the writer is already closed; open a new VideoWriter.")
        if isinstance(frames, torch.Tensor) and frames.ndim == 3:
            if frames.shape[-1] == 3:
                raise HarmoVidError(
                    f"frames to write: shape {tuple(frames.shape)} is ambiguous. Pass frames as [t, H, W, 3] "
                    "(frame.unsqueeze(0) for a single frame) or a mask as [t, H, W]."
                )
            frames = check_mask(frames, "frames to write")
        else:
            frames = check_frames(frames, "frames to write")
        size = tuple(frames.shape[1:3])
        if self.size is None:
            self.size = size
            try:
                self._open()
            except (OSError, av.FFmpegError) as error:
                self.abort()
                raise HarmoVidError(
                    f"{self.path}: cannot write there ({error}). Choose a folder you can write to."
                ) from None
        elif size != self.size:
            raise HarmoVidError(
                f"{self.path}: this chunk is {size[1]}x{size[0]} but the video is {self.size[1]}x{self.size[0]}. "
                "All frames of one video must have the same size."
            )
        for array in _to_uint8(frames):
            self._write_array(array)
            self.frames_written += 1
        if self._audio is not None:
            self._audio.write_until(self.frames_written / self.fps)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.kind == "folder":
            self.temp.mkdir()
            return
        height, width = self.size
        rate = _as_fraction(self.fps)
        self._container = av.open(str(self.temp), "w", format=self.kind,
                                  options={"movflags": "+faststart"} if self.kind != "matroska" else {})
        if self.kind == "matroska":
            stream = self._container.add_stream("ffv1", rate=rate)
            stream.pix_fmt = "bgr0"  # 8-bit RGB: lossless for our uint8 frames
            stream.options = {"level": "3", "slicecrc": "1"}
        else:
            stream = self._container.add_stream("libx264", rate=rate)
            stream.pix_fmt = "yuv420p"
            # chromaloc=1: the chroma is box-filtered (centre-sited); tell decoders, or they shift it
            stream.options = {"crf": str(self.crf), "preset": self.preset, "x264-params": "chromaloc=1"}
            height, width = height + height % 2, width + width % 2
            context = stream.codec_context
            context.colorspace, context.color_primaries, context.color_trc = 1, 1, 1  # BT.709
            context.color_range = 1  # limited ("tv") range, what players expect
        stream.width, stream.height = width, height
        stream.time_base = 1 / rate
        self._stream = stream
        if self.audio_from is not None:
            self._audio = _AudioTrack(self._container, self.kind, self.audio_from, self.audio_start)

    def _write_array(self, array: np.ndarray) -> None:
        if self.kind == "folder":
            Image.fromarray(array).save(self.temp / f"{self.frames_written:06d}.png", compress_level=4)
            return
        if self.kind == "matroska":
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        else:
            pad = ((0, array.shape[0] % 2), (0, array.shape[1] % 2), (0, 0))
            if pad[0][1] or pad[1][1]:
                array = np.pad(array, pad, mode="edge")
            frame = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(
                format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG", interpolation=_ENCODE_SCALING
            )
        frame.pts = self.frames_written
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    # -- finishing

    def close(self) -> None:
        """Finish the output and move it into place. On error nothing is left behind."""
        if self._done:
            return
        try:
            if self.frames_written == 0:
                raise HarmoVidError(f"{self.path}: no frames were written, so no video was made.")
            if self._container is not None:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                if self._audio is not None:
                    self._audio.finish(self.frames_written / self.fps)
                    self._audio = None
                self._container.close()
                self._container = None
            self._refuse_existing()  # something may have appeared there while we wrote
            self._move_into_place()
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._cleanup.detach()

    def _move_into_place(self) -> None:
        target = self.path
        if target.exists() and (target.is_dir() or self.temp.is_dir()):
            # A folder cannot be replaced in one rename: set the old output aside first, and remove it
            # only once the new one is in place.
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
            try:
                os.replace(self.temp, target)
            except BaseException:
                os.replace(old, target)
                raise
            _remove(old)
        else:
            os.replace(self.temp, target)

    def abort(self) -> None:
        """Stop without output: close everything and delete the temporary."""
        self._done = True
        for closer in (self._audio, self._container):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # noqa: BLE001 - the temporary is deleted anyway
                    pass
        self._audio = self._container = None
        _remove(self.temp)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def write_video(path, frames: torch.Tensor, fps, *, chunk_frames: int = 16, **kwargs) -> Path:
    """Write a whole clip ([T, H, W, 3] frames or a [T, H, W] mask) with ``VideoWriter``; returns the path.
    Other keyword arguments go to ``VideoWriter`` (crf, preset, audio_from, audio_start, overwrite)."""
    with VideoWriter(path, fps, **kwargs) as writer:
        if not isinstance(frames, torch.Tensor) or frames.ndim == 0 or frames.shape[0] == 0:
            writer.write(frames)  # raises the validation error
        for begin in range(0, frames.shape[0], chunk_frames):
            writer.write(frames[begin:begin + chunk_frames])
    return writer.path

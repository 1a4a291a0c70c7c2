"""The readers: clips and mask clips into IMAGE/MASK tensors, whole or in chunks, and a source's size,
frame count and rate without decoding it all."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import torch

from ..errors import HarmoVidError
from ..frame_rate import output_frame_count
from .media import open_container, video_stream
from .sources import Source, check_range, iter_selected, load_image, open_source


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


def stack_frames(arrays: list[np.ndarray]) -> torch.Tensor:
    """8/16-bit frames (as :func:`iter_frame_arrays` yields them) -> one float32 tensor in 0..1,
    allocated once. numpy, because one numpy thread divides faster than torch's element-wise threads
    when the cores are busy (docs/benchmarks.md, "Frame conversion")."""
    out = np.empty((len(arrays), *arrays[0].shape), dtype=np.float32)
    for index, array in enumerate(arrays):
        np.divide(array, np.float32(65535 if array.dtype == np.uint16 else 255), out=out[index])
    return torch.from_numpy(out)


def _read(path, mask: bool, start: int, max_frames, fps) -> tuple[torch.Tensor, Source, float]:
    source = open_source(path, fps)
    arrays, first_time = [], 0.0
    for array, time in iter_selected(source, mask, start, max_frames, fps):
        if not arrays:
            first_time = time
        arrays.append(array)  # kept compact (8/16 bit) until the float tensor is allocated once
    return stack_frames(arrays), source, first_time


def _iter_chunks(path, mask: bool, chunk_frames: int, start: int, max_frames, fps) -> Iterator[torch.Tensor]:
    """Check the arguments and open the source now, so bad input fails at the call, not mid-stream."""
    if not isinstance(chunk_frames, int) or isinstance(chunk_frames, bool) or chunk_frames < 1:
        raise HarmoVidError(f"chunk_frames must be a frame count >= 1, got {chunk_frames!r}.")
    check_range(start, max_frames)
    return _chunks(open_source(path, fps), mask, chunk_frames, start, max_frames, fps)


def _chunks(source: Source, mask: bool, chunk_frames: int, start: int, max_frames, fps) -> Iterator[torch.Tensor]:
    chunk = []
    for array, _ in iter_selected(source, mask, start, max_frames, fps):
        chunk.append(array)
        if len(chunk) == chunk_frames:
            yield stack_frames(chunk)
            chunk = []
    if chunk:
        yield stack_frames(chunk)


def probe_video(path, *, fps=None) -> VideoInfo:
    """Size, exact frame count, frame rate and audio of a source, as ``read_video(path, fps=fps)``
    would return them. ``fps`` sets the rate of image folders and images (default 24); for a video
    it resamples (see ``read_video``)."""
    source = open_source(path, fps)
    if source.kind != "video":
        first = load_image(source.files[0], mask=False)
        return VideoInfo(source.path, first.shape[1], first.shape[0], len(source.files), source.fps, False)
    first, first_time = next(iter_selected(source, False, 0, 1, None))
    count = _count_frames(source.path)
    out_fps = source.fps
    if fps is not None and float(fps) != source.fps:
        count, out_fps = output_frame_count(count, source.fps, float(fps)), float(fps)
    return VideoInfo(source.path, first.shape[1], first.shape[0], count, out_fps, source.has_audio, first_time)


# Containers that store exactly one video frame per packet (an MP4 sample, a Matroska block).
_ONE_FRAME_PER_PACKET = ("mov", "mp4", "matroska", "webm")


def _count_frames(path: Path) -> int:
    """Exact decodable frame count. Counting packets (skipping those an edit list hides) needs no
    decoding; the count is trusted when it agrees with the header's, or when the container or codec
    stores one frame per packet (it also handles truncated files, whose header promises more).
    Otherwise (AVI, MPEG-TS, raw streams ...) the frames are decoded and counted."""
    with open_container(path) as container:
        stream = video_stream(container, path)
        declared = stream.frames
        one_per_packet = any(name in _ONE_FRAME_PER_PACKET for name in container.format.name.split(","))
        one_per_packet |= bool(getattr(stream.codec_context.codec, "intra_only", False))
        try:
            packets = sum(1 for p in container.demux(stream) if p.size > 0 and not p.is_discard)
        except av.FFmpegError:
            packets = -1
    if packets > 0 and (packets == declared or one_per_packet):
        return packets
    with open_container(path) as container:
        stream = video_stream(container, path)
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
    check_range(start, None)
    source = open_source(path)
    return (array for array, _ in iter_selected(source, mask, start, None, None))


def read_mask(path, *, start: int = 0, max_frames: int | None = None, fps: float | None = None) -> torch.Tensor:
    """Read a mask clip into [T, H, W] float32 0..1 (1 = foreground): the luma of a video or image,
    or its alpha channel when it has one (RGBA/LA images, videos with an alpha pixel format)."""
    return _read(path, True, start, max_frames, fps)[0]


def iter_mask_chunks(path, chunk_frames: int = 16, *, start: int = 0, max_frames: int | None = None,
                     fps: float | None = None) -> Iterator[torch.Tensor]:
    """Stream a mask clip as [t, H, W] float32 chunks (see ``read_mask``)."""
    return _iter_chunks(path, True, chunk_frames, start, max_frames, fps)

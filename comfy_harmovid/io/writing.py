"""Writing: frames chunk by chunk to an mp4/mov (H.264), an mkv (lossless FFV1) or a folder of PNGs,
with the sound of another file, moved into place only when complete."""

from __future__ import annotations

import os
import shutil
import uuid
import weakref
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import torch
from PIL import Image

from ..errors import HarmoVidError
from ..validate import check_frames, check_mask
from .audio import AudioTrack
from .media import ENCODE_SCALING, check_fps, open_container

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv")  # what VideoWriter writes (besides PNG folders)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


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


def uint8_frames(frames: torch.Tensor) -> list:
    """Float frames ``[t, H, W, 3]`` in 0..1 as the 8-bit ``[H, W, 3]`` arrays that
    :meth:`VideoWriter.write_arrays` takes (rounded as :meth:`VideoWriter.write` does)."""
    return list(_to_uint8(check_frames(frames, "frames")))


def _to_uint8(frames: torch.Tensor) -> Iterator[np.ndarray]:
    """[t, H, W, 3] or [t, H, W] floats in 0..1 -> uint8 [H, W, 3] frames (masks become grey).

    One frame at a time, so the float temporaries are a frame, not a chunk."""
    for frame in frames.detach():
        array = frame.to("cpu", torch.float32).numpy()
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=-1)
        yield np.rint(np.clip(array, 0, 1) * np.float32(255)).astype(np.uint8)


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
        check_fps(fps)
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
        # Not comfy_harmovid.atomic.atomic_output: the temporary lives across write() calls rather than
        # one with-block, may be a folder of PNGs (replaced with a backup, see _move_into_place), and
        # the target is checked again for a file that appeared meanwhile before the rename.
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
        with open_container(self.audio_from) as container:
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
        self._write_all(_to_uint8(frames), tuple(frames.shape[1:3]))

    def write_arrays(self, arrays) -> None:
        """Append 8-bit ``[H, W, 3]`` RGB arrays (as :func:`~comfy_harmovid.io.iter_frame_arrays` yields them)."""
        if self._done:
            raise HarmoVidError(f"{self.path}: the writer is already closed; open a new VideoWriter.")
        arrays = list(arrays)
        for array in arrays:
            if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
                raise HarmoVidError(
                    "write_arrays takes uint8 [H, W, 3] arrays; write float frames [t, H, W, 3] with write()."
                )
        if arrays:
            self._write_all(arrays, arrays[0].shape[:2])

    def _write_all(self, arrays, size) -> None:
        size = tuple(size)
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
        for array in arrays:
            if array.shape[:2] != size:
                raise HarmoVidError(f"{self.path}: frames of one chunk differ in size; give frames of one size.")
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
            # chromaloc=1: the chroma is box-filtered (centre-sited); tell decoders, or they shift it.
            # rc-lookahead=20 (medium's is 40): x264 holds half as many frames (about 140 MiB less at 1080p).
            stream.options = {"crf": str(self.crf), "preset": self.preset, "x264-params": "chromaloc=1:rc-lookahead=20"}
            height, width = height + height % 2, width + width % 2
            context = stream.codec_context
            context.colorspace, context.color_primaries, context.color_trc = 1, 1, 1  # BT.709
            context.color_range = 1  # limited ("tv") range, what players expect
        stream.width, stream.height = width, height
        stream.time_base = 1 / rate
        self._stream = stream
        if self.audio_from is not None:
            self._audio = AudioTrack(self._container, self.kind, self.audio_from, self.audio_start)

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
                format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG", interpolation=ENCODE_SCALING
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

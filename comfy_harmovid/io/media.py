"""What reading and writing share: opening a file with PyAV, its video stream, checking a frame rate,
and the swscale flags for converting between YUV and RGB."""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import av

from ..errors import HarmoVidError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")

# swscale flags for YUV <-> RGB. swscale's defaults round RGB read back about 1.2/255 too dark and
# upsample the chroma coarsely; accurate rounding with full-resolution chroma interpolation removes
# that bias at a small cost per frame (docs/benchmarks.md, "YUV conversion").
_SWS_BILINEAR, _SWS_AREA = 0x2, 0x20
_SWS_FULL_CHROMA = 0x2000 | 0x4000  # SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP
_SWS_ACCURATE_RND = 0x40000
DECODE_SCALING = _SWS_BILINEAR | _SWS_FULL_CHROMA | _SWS_ACCURATE_RND
ENCODE_SCALING = _SWS_AREA | _SWS_ACCURATE_RND  # box filter when halving the chroma


def check_fps(fps, name: str = "fps") -> None:
    valid = isinstance(fps, numbers.Real) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0
    if fps is not None and not valid:
        raise HarmoVidError(f"{name} must be a positive number of frames per second, got {fps!r}.")


def open_container(path: Path):
    try:
        return av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise HarmoVidError(
            f"{path}: cannot read it as a video ({error}). The file may be corrupt, incomplete or not a "
            f"video; re-export it, or give an image ({', '.join(IMAGE_EXTENSIONS)}) or a folder of images."
        ) from None


def video_stream(container, path: Path):
    # Cover art in music files is a one-picture "video" stream: not a clip.
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        raise HarmoVidError(f"{path}: has no video stream (is it an audio file?). Give a video file.")
    return streams[0]

"""Audio: a source file's sound muxed into an output, kept in step with the video and cut to its length."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import HarmoVidError
from .media import open_container

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


class AudioTrack:
    """Copies the audio of a source file into an output container, kept in step with the video.

    Packets are copied as they are when the container accepts the codec, else decoded, cut and
    re-encoded (AAC for mp4/mov, FLAC for mkv). Audio is shifted so ``start`` seconds of the source
    fall on the first video frame, and cut at the end of the video.
    """

    def __init__(self, output, container_format: str, source: Path, start: float):
        self.input = open_container(source)
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

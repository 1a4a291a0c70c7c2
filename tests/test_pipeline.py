"""The streamed built-in pipeline (`harmovid harmonize`): file in, file out, state kept across chunks."""

import pytest
import torch

from comfy_harmovid import io
from comfy_harmovid.cli import main as harmovid
from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.pipeline import CHUNK_PIXELS, FrameFetcher, HarmonizeSettings, chunk_frames_for, harmonize_video
from conftest import make_portrait_clip
from test_io import make_clip_with_audio


@pytest.fixture
def clip_files(tmp_path):
    """A 12-frame foreground with sound and its mask, and a 9-frame background of another size."""
    frames, mask, _ = make_portrait_clip(frames=12, height=48, width=64, seed=1)
    foreground = make_clip_with_audio(tmp_path / "fg.mkv", frames, fps=24, audio_seconds=1.0)
    mask_file = io.write_video(tmp_path / "mask.mkv", mask, 24)
    background = io.write_video(tmp_path / "bg.mkv", make_portrait_clip(frames=9, height=40, width=72, seed=2)[2], 24)
    return foreground, mask_file, background


def run(clip_files, output, **kwargs):
    foreground, mask, background = clip_files
    return harmonize_video(foreground, background, output, mask=mask, **kwargs)


def test_harmonize_writes_background_sized_video_with_foreground_sound(clip_files, tmp_path):
    result = run(clip_files, tmp_path / "out.mp4")
    info = io.probe_video(result.path)
    assert (info.width, info.height, info.frame_count, info.fps) == (72, 40, 9, 24), info
    assert info.has_audio, "the foreground's sound must be muxed into the output"
    assert set(result.seconds_per_stage) >= {"decode", "pseudo-alpha", "composite", "harmonize", "deflicker", "encode"}


def test_streaming_in_small_chunks_equals_large_chunks(clip_files, tmp_path):
    small = run(clip_files, tmp_path / "small.mkv", settings=HarmonizeSettings(chunk_frames=2))
    large = run(clip_files, tmp_path / "large.mkv", settings=HarmonizeSettings(chunk_frames=16))
    difference = (io.read_video(small.path).frames - io.read_video(large.path).frames).abs()
    # The network's batched arithmetic differs in the last float bit between batch sizes, which may flip
    # the 8-bit rounding of a rare pixel; lost state between chunks would change far more.
    changed = float((difference > 0).float().mean())
    assert difference.max() <= 1.01 / 255 and changed < 1e-3, (
        f"chunking changed {changed:.2%} of the values, by up to {float(difference.max()) * 255:.1f}/255: state is lost"
    )


@pytest.mark.parametrize("policy", ["loop", "ping-pong", "hold"])
def test_length_policies_run_for_the_longer_clip(clip_files, tmp_path, policy):
    foreground, mask, _ = clip_files
    long_background = io.write_video(tmp_path / "long_bg.mkv", make_portrait_clip(frames=20, height=40, width=72)[2], 24)
    result = harmonize_video(foreground, long_background, tmp_path / f"{policy}.mkv", mask=mask,
                             settings=HarmonizeSettings(length_policy=policy), audio="none")
    assert io.probe_video(result.path).frame_count == 20


def test_frame_fetcher_serves_backward_passes_exactly(clip_files):
    foreground = clip_files[0]
    frames = io.read_video(foreground).frames
    fetcher = FrameFetcher(foreground, cache_frames=4)
    for index in [0, 1, 2, 11, 10, 9, 8, 3, 7, 0]:
        assert torch.equal(fetcher[index], frames[index]), f"frame {index} differs"


def test_frame_fetcher_stacks_chunks_equal_to_the_decoded_frames(clip_files):
    foreground, mask, _ = clip_files
    frames, masks = io.read_video(foreground).frames, io.read_mask(mask)
    indices = [3, 4, 5, 11, 10, 0]
    assert torch.equal(FrameFetcher(foreground, cache_frames=4).stack(indices), frames[indices])
    assert torch.equal(FrameFetcher(mask, mask=True).stack(indices), masks[indices])


def test_chunk_frames_follow_a_pixel_budget():
    assert chunk_frames_for(1280 * 720) == 2
    assert chunk_frames_for(1920 * 1080) == 1, "1080p chunks must not be larger than 720p ones"
    assert chunk_frames_for(64 * 48) == CHUNK_PIXELS // (64 * 48)
    assert chunk_frames_for(8192 * 8192) == 1, "a huge frame still makes one-frame chunks"


def test_no_person_found_fails_clearly_and_leaves_no_output(clip_files, tmp_path):
    foreground, mask, background = clip_files
    empty = io.write_video(tmp_path / "empty.mkv", torch.zeros(12, 48, 64), 24)
    output = tmp_path / "out.mp4"
    with pytest.raises(HarmoVidError, match="No person"):
        harmonize_video(foreground, background, output, mask=empty)
    assert not output.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_mask_of_another_size_is_refused(clip_files, tmp_path):
    foreground, _, background = clip_files
    wrong = io.write_video(tmp_path / "wrong.mkv", torch.ones(12, 20, 20), 24)
    with pytest.raises(HarmoVidError, match="mask is 20x20"):
        harmonize_video(foreground, background, tmp_path / "out.mp4", mask=wrong)


def test_cli_refuses_to_overwrite_and_reports_cleanly(clip_files, tmp_path, capsys):
    foreground, mask, background = clip_files
    output = tmp_path / "out.mkv"
    output.write_bytes(b"precious")
    code = harmovid(["harmonize", "--fg", str(foreground), "--bg", str(background), "--mask", str(mask), "-o", str(output)])
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"
    code = harmovid(["harmonize", "--fg", str(foreground), "--bg", str(background), "--mask", str(mask),
                     "-o", str(output), "--overwrite", "--sheet", str(tmp_path / "sheet.png")])
    assert code == 0 and io.probe_video(output).frame_count == 9
    assert (tmp_path / "sheet.png").stat().st_size > 0


def test_person_trims_darken_only_the_person_and_need_a_harmoim(clip_files, tmp_path, capsys):
    foreground, mask, background = clip_files
    arguments = ["harmonize", "--fg", str(foreground), "--bg", str(background), "--mask", str(mask), "--audio", "none"]
    assert harmovid(arguments + ["-o", str(tmp_path / "plain.mkv")]) == 0
    assert harmovid(arguments + ["-o", str(tmp_path / "trimmed.mkv"), "--person-exposure", "-1"]) == 0
    plain, trimmed = (io.read_video(tmp_path / name).frames for name in ("plain.mkv", "trimmed.mkv"))
    darker = (plain - trimmed).mean(-1)
    assert darker.max() > 0.1, "one stop down must darken the person"
    assert 0.02 < float((darker.abs() > 1 / 255).float().mean()) < 0.6, "only the person's pixels may change"
    code = harmovid(arguments + ["-o", str(tmp_path / "x.mkv"), "--person-tint", "0.1", "--harmonize-method", "none"])
    assert code == 2 and "harmonize strength 0" in capsys.readouterr().err
    with pytest.raises(HarmoVidError, match="person_trims: expected PersonTrims"):
        run(clip_files, tmp_path / "y.mkv", settings=HarmonizeSettings(person_trims={"saturation": 0}))


def test_harmonize_real_portrait_over_real_background(dev_data, tmp_path):
    result = harmonize_video(dev_data / "people/lp_d18.mp4", dev_data / "backgrounds/dvp_venice_canal.mp4",
                             tmp_path / "out.mp4", max_frames=12)
    info = io.probe_video(result.path)
    assert (info.frame_count, info.fps, info.width, info.height) == (12, 24, 1024, 576), info
    frames = io.read_video(result.path).frames
    assert frames.std() > 0.05, "the output looks blank"


def test_an_error_in_a_stage_thread_reaches_the_caller_and_leaves_no_output(clip_files, tmp_path, monkeypatch):
    from comfy_harmovid import pipeline

    calls = []
    original = pipeline.PseudoAlpha.process

    def fail_on_the_second_chunk(self, frames, mask):
        calls.append(frames.shape[0])
        if len(calls) == 2:
            raise HarmoVidError("pseudo-alpha failed on purpose")
        return original(self, frames, mask)

    monkeypatch.setattr(pipeline.PseudoAlpha, "process", fail_on_the_second_chunk)
    output = tmp_path / "out.mkv"
    threads = torch.get_num_threads()
    with pytest.raises(HarmoVidError, match="failed on purpose"):
        run(clip_files, output, settings=HarmonizeSettings(chunk_frames=2))
    assert not output.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name]
    assert torch.get_num_threads() == threads, "the caller's torch thread count must be restored"

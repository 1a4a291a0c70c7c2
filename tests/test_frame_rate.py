"""One rule for changing the frame rate by picking frames: reading at another rate and compositing."""

import pytest

from comfy_harmovid.composite import frame_schedule
from comfy_harmovid.frame_rate import output_frame_count, source_frame

NTSC = 30000 / 1001


def schedule(source_frames, source_fps, output_fps):
    return [source_frame(k, source_fps, output_fps) for k in range(output_frame_count(source_frames, source_fps, output_fps))]


def test_equal_rates_keep_every_frame():
    for fps in (24.0, 30.0, NTSC, 59.94):
        assert schedule(1000, fps, fps) == list(range(1000)), fps


def test_halving_the_rate_keeps_every_other_frame():
    assert schedule(10, 30, 15) == [0, 2, 4, 6, 8]
    assert schedule(9, 30, 15) == [0, 2, 4, 6, 8], "the last output frame starts on the last source frame"


def test_24_to_30_repeats_one_frame_in_four():
    assert schedule(8, 24, 30) == [0, 0, 1, 2, 3, 4, 4, 5, 6, 7]
    assert output_frame_count(24, 24, 30) == 30, "one second stays one second"


def test_ntsc_and_30_differ_by_one_frame_in_a_thousand():
    # 29.97 (30000/1001) to 30: 1001 output frames show 1000 source frames, one of them twice.
    frames = schedule(1000, NTSC, 30)
    assert len(frames) == 1001 and sorted(set(frames)) == list(range(1000))
    # and back: 1001 source frames at 30 fps last 1000 output frames at 29.97; the 1001st is dropped
    assert schedule(1001, 30, NTSC) == list(range(1000))
    assert schedule(2002, 30, NTSC)[1000:1002] == [1001, 1002], "one frame in 1001 is dropped"
    # 29.97 typed as the rounded number: 10,000 frames last 10,010.01 output frames, so 10,011 show them
    assert output_frame_count(10000, 29.97, 30) == 10011


@pytest.mark.parametrize("source_fps, output_fps", [(30, 15), (24, 30), (NTSC, 30), (30, NTSC), (25, 24), (12, 60)])
def test_compositing_and_reading_follow_the_same_rule(source_fps, output_fps):
    # frame_schedule at the output rate picks the same source frames as reading at that rate.
    pairs = frame_schedule(200, 10_000, foreground_fps=source_fps, background_fps=output_fps)
    assert [fg for fg, _ in pairs] == schedule(200, source_fps, output_fps)

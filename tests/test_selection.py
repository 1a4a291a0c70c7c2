"""Prompts with the built-in segmenter: points and box pick people, followed through the clip;
malformed prompt text is a clear error with either model."""

import numpy as np
import pytest
import torch

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.io import read_video
from comfy_harmovid.segment import segment_portrait
from comfy_harmovid.segment.prompts import Prompts, parse_box, parse_points
from comfy_harmovid.segment.selection import select_prompted_people


def discs(frames=6, height=60, width=120, centres=((30, 30), (90, 30)), step=3, appear=None):
    """Masks of people as discs of radius 12 moving right by ``step`` px per frame; ``appear`` = (frame, centre)
    adds a third person from that frame on."""
    ys, xs = np.mgrid[:height, :width]
    masks = np.zeros((frames, height, width), np.float32)
    for t in range(frames):
        people = [(x + step * t, y) for x, y in centres]
        if appear is not None and t >= appear[0]:
            people.append(appear[1])
        for x, y in people:
            masks[t][(xs - x) ** 2 + (ys - y) ** 2 <= 144] = 1
    return torch.from_numpy(masks)


def person(masks, index, centres=((30, 30), (90, 30)), step=3):
    """The mask of just one of the discs."""
    return discs(masks.shape[0], *masks.shape[1:], centres=(centres[index],), step=step)


@pytest.mark.parametrize("prompt_frame", [0, 3, 5])
def test_a_positive_point_keeps_only_that_person_in_every_frame(prompt_frame):
    masks = discs()
    x = 90 + 3 * prompt_frame  # the right person's centre on the prompt frame
    kept = select_prompted_people(masks, Prompts(positive=((x, 30),)), prompt_frame)
    assert torch.equal(kept, person(masks, 1)), "the selection did not follow the right person both ways"


def test_a_negative_point_removes_that_person_and_keeps_the_rest():
    masks = discs(centres=((20, 30), (60, 30), (100, 30)), step=1)
    kept = select_prompted_people(masks, Prompts(negative=((60, 30),)), 0)
    expected = discs(centres=((20, 30), (100, 30)), step=1)
    assert torch.equal(kept, expected), "the negative point did not drop exactly the middle person"


def test_a_box_keeps_the_people_mostly_inside_it():
    masks = discs()
    kept = select_prompted_people(masks, Prompts(box=(60, 5, 119, 59)), 0)
    assert torch.equal(kept, person(masks, 1)), "box did not pick the right person"


def test_a_person_entering_later_is_not_added():
    masks = discs(appear=(3, (60, 50)))
    kept = select_prompted_people(masks, Prompts(positive=((30, 30),)), 0)
    assert torch.equal(kept, person(masks, 0)), "a newcomer was added to the prompted person"


def test_a_missed_frame_does_not_lose_the_person():
    masks = discs()
    masks[2] = 0  # the segmenter missed everyone on frame 2
    kept = select_prompted_people(masks, Prompts(positive=((30, 30),)), 0)
    expected = person(masks, 0)
    expected[2] = 0
    assert torch.equal(kept, expected), "the selection was lost after a frame with no detection"


def test_a_click_just_off_the_mask_edge_still_picks_the_person():
    masks = discs()
    kept = select_prompted_people(masks, Prompts(positive=((90, 44),)), 0)  # 2 px below the disc
    assert torch.equal(kept, person(masks, 1))


def test_soft_masks_keep_their_probability_around_the_kept_person_only():
    soft = discs() * 0.9
    kept = select_prompted_people(soft, Prompts(positive=((30, 30),)), 0, soft=True)
    assert torch.equal(kept, person(soft, 0) * 0.9), "soft selection changed the kept person or kept the other"


def test_no_prompts_leave_the_mask_as_it_is():
    masks = discs()
    assert select_prompted_people(masks, Prompts(), 0) is masks


@pytest.mark.parametrize(
    "prompts, frame, words",
    [
        (Prompts(positive=((60, 5),)), 0, "not on a person"),
        (Prompts(positive=((130, 5),)), 0, "outside the 120x60 frame"),
        (Prompts(box=(0, 0, 10, 10)), 0, "holds no person"),
        (Prompts(positive=((30, 30),)), 6, "outside the clip"),
    ],
)
def test_prompts_that_pick_nobody_say_so(prompts, frame, words):
    with pytest.raises(HarmoVidError, match=words):
        select_prompted_people(discs(), prompts, frame)


@pytest.mark.parametrize(
    "points, negative, box, words",
    [
        ("abc; 1,", "", "", "is not a point"),
        ("10,20", "5", "", "negative_points"),
        ("nan,3", "", "", "not finite"),
        ("", "", "1,2,3", "is not a box"),
        ("", "", "30,2,10,40", "x1 < x2"),
        ('[{"x": 1}]', "", "", "JSON points"),
    ],
)
def test_malformed_prompt_text_is_a_clear_error(points, negative, box, words):
    with pytest.raises(HarmoVidError, match=words):
        Prompts.parse(points, negative, box)


@pytest.mark.parametrize("model", ["built-in (MediaPipe)", "sam2.1_hiera_tiny.safetensors"])
def test_sam2_mask_node_rejects_malformed_prompts_with_either_model(portrait_clip, model):
    from nodes.masks import HarmoVidSAM2Mask

    with pytest.raises(HarmoVidError, match="is not a point"):
        HarmoVidSAM2Mask().segment(portrait_clip[0], model, 0, 0.5, 0.6, points="abc; 1,")


def test_prompt_text_round_trips_to_the_same_prompts():
    prompts = Prompts.parse("10,20; 30,40", "5,6", "1,2,3,4")
    assert prompts == Prompts(((10, 20), (30, 40)), ((5, 6),), (1, 2, 3, 4))
    assert parse_points('[{"x": 1, "y": 2}]') == [(1, 2)] and parse_box(" ") is None


@pytest.fixture
def two_people(dev_data):
    """Two real portraits side by side with a plain gap, 256 x 608, 8 frames; the left person spans x < 260."""
    left = read_video(dev_data / "people/lav_man2.mp4", max_frames=8).frames[:, ::2, ::2]
    right = read_video(dev_data / "people/lav_man4.mp4", max_frames=8).frames[:, ::2, ::2]
    gap = torch.full((left.shape[0], left.shape[1], 96, 3), 0.8)
    return torch.cat([left, gap, right], dim=2)


def test_builtin_point_on_one_of_two_people_keeps_only_that_one(two_people):
    everyone = segment_portrait(two_people)
    assert everyone[:, :, :260].mean() > 0.2 and everyone[:, :, 350:].mean() > 0.2, "the built-in model missed someone"
    left = segment_portrait(two_people, prompts=Prompts.parse("130,120"))
    assert torch.equal(left[:, :, :304], everyone[:, :, :304]), "the clicked person lost pixels"
    assert left[:, :, 304:].sum() == 0, "the other person is still in the mask"
    right = segment_portrait(two_people, prompts=Prompts.parse("470,120"), prompt_frame=4)
    assert right[:, :, :304].sum() == 0 and torch.equal(right[:, :, 304:], everyone[:, :, 304:])


def test_builtin_negative_point_removes_one_of_two_people(two_people):
    from nodes.masks import BUILTIN, HarmoVidSAM2Mask

    everyone = segment_portrait(two_people)
    (mask,) = HarmoVidSAM2Mask().segment(two_people, BUILTIN, 0, 0.5, 0.6, negative_points="130,120")
    assert mask[:, :, :304].sum() == 0, "the person under the negative point is still in the mask"
    assert torch.equal(mask[:, :, 304:], everyone[:, :, 304:]), "the other person changed"

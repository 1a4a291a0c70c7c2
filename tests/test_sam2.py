"""SAM 2 path: loader, video predictor loop, prompts, conversion and errors, on tiny random models.

A random model's mask means nothing, so these tests check shapes, ranges, determinism, that the
prompts and prompt frame reach the model, and the errors a user can meet.
"""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

sam2 = pytest.importorskip("sam2", reason="the optional sam2 package is not installed")

from omegaconf import OmegaConf  # noqa: E402  (installed with sam2)

from comfy_harmovid.cli import main as harmovid  # noqa: E402
from comfy_harmovid.errors import HarmoVidError  # noqa: E402
from comfy_harmovid.io import read_video  # noqa: E402
from comfy_harmovid.segment import config_for_checkpoint, load_sam2, segment_with_sam2  # noqa: E402
from comfy_harmovid.segment.sam2_model import build_sam2_model  # noqa: E402
from comfy_harmovid.segment.sam2_video import auto_prompt  # noqa: E402
from conftest import make_portrait_clip  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models on a busy shared CPU: one thread is ~100x faster than contended threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_tiny_config(path: Path, width: int = 32) -> Path:
    """sam2.1 tiny's config shrunk to a ~0.7M-parameter model on 128x128 inputs."""
    cfg = OmegaConf.load(Path(sam2.__file__).parent / "configs/sam2.1/sam2.1_hiera_t.yaml")
    model = cfg.model
    model.image_size = 128
    model.image_encoder.trunk.update(
        embed_dim=8, num_heads=1, stages=[1, 1, 2, 1], global_att_blocks=[3],
        window_pos_embed_bkg_spatial_size=[4, 4], window_spec=[4, 4, 4, 4],
    )
    model.image_encoder.neck.update(d_model=width, backbone_channel_list=[64, 32, 16, 8])
    model.image_encoder.neck.position_encoding.num_pos_feats = width
    model.memory_attention.update(d_model=width, num_layers=1)
    layer = model.memory_attention.layer
    layer.update(d_model=width, dim_feedforward=64)
    for name in ("self_attention", "cross_attention"):
        layer[name].update(embedding_dim=width, feat_sizes=[8, 8])
    layer.cross_attention.kv_in_dim = 16
    model.memory_encoder.update(out_dim=16, in_dim=width)
    model.memory_encoder.position_encoding.num_pos_feats = 16
    model.memory_encoder.mask_downsampler.embed_dim = width
    model.memory_encoder.fuser.layer.dim = width
    OmegaConf.save(cfg, path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(checkpoint path in a models/sam2 folder, config path) of a random tiny SAM 2."""
    folder = tmp_path_factory.mktemp("models") / "sam2"
    folder.mkdir()
    config = write_tiny_config(folder.parent / "tiny.yaml")
    torch.manual_seed(0)
    checkpoint = folder / "tiny_random.safetensors"
    save_file(build_sam2_model(str(config)).state_dict(), str(checkpoint))
    return checkpoint, str(config)


@pytest.fixture(scope="module")
def clip():
    return make_portrait_clip(frames=5, height=64, width=80)[0]


def run(tiny, frames, **kwargs):
    checkpoint, config = tiny
    kwargs.setdefault("points", [(40, 24)])
    return segment_with_sam2(frames, checkpoint=checkpoint, config=config, **kwargs)


def test_tiny_model_gives_one_mask_per_frame_in_range(tiny, clip):
    ticks = []
    binary = run(tiny, clip, progress=lambda done, total: ticks.append((done, total)))
    soft = run(tiny, clip, soft=True)
    assert binary.shape == soft.shape == clip.shape[:3], f"mask shape {tuple(binary.shape)}"
    assert binary.dtype == soft.dtype == torch.float32
    assert set(binary.unique().tolist()) <= {0.0, 1.0}, "binary mask has other values"
    assert 0 <= soft.min() and soft.max() <= 1 and soft.std() > 0, "soft mask is not a varying probability"
    assert torch.equal(binary, (soft > 0.5).float()), "threshold 0 on logits must equal probability 0.5"
    assert ticks[-1] == (5, 5) and len(ticks) == 5, f"progress ticks {ticks}"


def test_tiny_model_is_deterministic(tiny, clip):
    assert torch.equal(run(tiny, clip, soft=True), run(tiny, clip, soft=True)), "two runs differ"


def test_prompts_reach_the_model(tiny, clip):
    base = run(tiny, clip, soft=True)
    assert not torch.equal(base, run(tiny, clip, points=[(10, 50)], soft=True)), "moving the point changed nothing"
    assert not torch.equal(base, run(tiny, clip, points=[(40, 24), (10, 50)], point_labels=[1, 0], soft=True))
    assert not torch.equal(base, run(tiny, clip, points=None, box=(20, 5, 60, 63), soft=True)), "box ignored"


def test_prompt_frame_matters_and_both_directions_are_tracked(tiny, clip):
    first = run(tiny, clip, prompt_frame=0, soft=True)
    middle = run(tiny, clip, prompt_frame=2, soft=True)
    assert not torch.equal(first, middle), "prompt_frame had no effect"
    assert (middle[:2].flatten(1).std(1) > 0).all(), "frames before the prompt frame were not tracked backward"


def test_loader_keeps_the_last_model_and_a_loaded_model_can_be_passed(tiny, clip):
    checkpoint, config = tiny
    model = load_sam2(checkpoint, config=config)
    assert load_sam2(checkpoint, config=config) is model, "the same checkpoint was loaded twice"
    from_model = segment_with_sam2(clip, checkpoint=model, points=[(40, 24)], soft=True)
    assert torch.equal(from_model, run(tiny, clip, soft=True)), "a loaded model gives other masks than its file"


def test_auto_prompt_takes_box_and_inner_points_of_the_largest_region():
    mask = torch.zeros(60, 80)
    mask[10:50, 30:60] = 1
    mask[0:3, 0:3] = 1  # a speck that must be ignored
    points, box = auto_prompt(mask)
    assert box.tolist() == [30, 10, 59, 49], f"box {box.tolist()}"
    assert len(points) == 3 and all(mask[int(y), int(x)] == 1 for x, y in points), f"points {points.tolist()}"
    assert auto_prompt(torch.zeros(8, 8)) == (None, None)


def test_no_prompt_uses_the_builtin_segmenters_person(tiny, dev_data):
    frames = read_video(dev_data / "people/lav_woman.mp4", max_frames=3).frames[:, ::4, ::4].contiguous()
    from comfy_harmovid.segment import segment_portrait

    points, box = auto_prompt(segment_portrait(frames[1:2])[0])
    automatic = run(tiny, frames, points=None, prompt_frame=1, soft=True)
    explicit = run(tiny, frames, points=points, box=box, prompt_frame=1, soft=True)
    assert torch.equal(automatic, explicit), "automatic prompt differs from the built-in segmenter's box and points"
    # Only negative points: still automatic, plus the negatives.
    negative = run(tiny, frames, points=[(2, 2)], point_labels=[0], prompt_frame=1, soft=True)
    expected = run(tiny, frames, points=[*points.tolist(), (2, 2)], point_labels=[1] * len(points) + [0],
                   box=box, prompt_frame=1, soft=True)
    assert torch.equal(negative, expected), "negative-only prompt did not fall back to the automatic prompt"


def test_no_prompt_and_no_person_says_what_to_do(tiny):
    with pytest.raises(HarmoVidError, match="No person found on frame 0"):
        run(tiny, torch.full((2, 64, 80, 3), 0.5), points=None)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"points": [(100, 10)]}, "outside the 80x64 frame"),
        ({"points": [(10, 10)], "point_labels": [1, 0]}, "one label per point"),
        ({"points": None, "box": (50, 10, 20, 40)}, "x1 < x2"),
        ({"prompt_frame": 5}, "outside the clip"),
    ],
)
def test_bad_prompts_raise_clear_errors(tiny, clip, kwargs, words):
    with pytest.raises(HarmoVidError, match=words):
        run(tiny, clip, **kwargs)


def test_config_is_picked_from_the_file_name():
    assert config_for_checkpoint("sam2_hiera_tiny.safetensors") == "sam2_hiera_t"
    assert config_for_checkpoint("sam2.1_hiera_base_plus-fp16.safetensors") == "sam2.1_hiera_b+"
    assert config_for_checkpoint("sam2.1_hiera_large.safetensors") == "sam2.1_hiera_l"
    assert config_for_checkpoint("models/sam2_hiera_small.safetensors") == "sam2_hiera_s"
    with pytest.raises(HarmoVidError, match="Cannot tell the SAM 2 model size"):
        config_for_checkpoint("my_sam.safetensors")


def test_community_file_name_loads_with_the_real_config_and_the_wrong_version_is_refused(tmp_path):
    # A full-size (random) sam2.1 tiny, saved under the community file name: the loader must find
    # the matching config from the name; the same weights named as SAM 2.0 must be refused clearly.
    torch.manual_seed(0)
    state = build_sam2_model("sam2.1_hiera_t").state_dict()
    state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}  # fp16 files exist too
    good = tmp_path / "sam2.1_hiera_tiny.safetensors"
    save_file(state, str(good))
    model = load_sam2(good)
    assert model.image_size == 1024 and next(model.parameters()).dtype == torch.float32
    wrong = tmp_path / "sam2_hiera_tiny.safetensors"
    good.rename(wrong)
    with pytest.raises(HarmoVidError, match=r"does not match config 'sam2_hiera_t'.*unexpected.*sam2\.1"):
        load_sam2(wrong)


def test_mismatched_checkpoint_names_keys_folder_and_expected_files(tiny, tmp_path):
    checkpoint, config = tiny
    from safetensors.torch import load_file

    state = load_file(str(checkpoint))
    dropped = sorted(state)[0]
    state.pop(dropped)
    state["extra.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.safetensors"
    save_file(state, str(broken))
    with pytest.raises(HarmoVidError) as error:
        load_sam2(broken, config=config)
    message = str(error.value)
    for words in ("1 missing", dropped, "1 unexpected", "extra.weight", str(tmp_path), "sam2.1_hiera_"):
        assert words in message, f"'{words}' not in: {message}"
    wider = write_tiny_config(tmp_path / "wider.yaml", width=48)
    with pytest.raises(HarmoVidError, match="wrong shape"):
        load_sam2(checkpoint, config=str(wider))


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("sam2.1_hiera_tiny.pt", b"pickle", "convert-sam2"),
        ("sam2.1_hiera_tiny.safetensors", b"not a safetensors file", "not a readable safetensors"),
        ("absent.safetensors", None, "not found"),
    ],
)
def test_unusable_checkpoint_files_are_refused_with_the_fix(tmp_path, name, content, words):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(HarmoVidError, match=words) as error:
        load_sam2(path)
    assert str(tmp_path) in str(error.value) and "sam2_hiera_{tiny" in str(error.value)


def test_unknown_config_lists_the_known_ones(tiny):
    with pytest.raises(HarmoVidError, match="Unknown SAM 2 config 'sam3_huge'.*sam2.1_hiera_t"):
        load_sam2(tiny[0], config="sam3_huge")


def test_convert_sam2_command_turns_an_official_pt_into_a_loadable_file(tiny, tmp_path, clip):
    from safetensors.torch import load_file

    checkpoint, config = tiny
    state = load_file(str(checkpoint))
    official = tmp_path / "tiny.pt"
    torch.save({"model": state}, official)
    converted = tmp_path / "tiny.safetensors"
    assert harmovid(["convert-sam2", str(official), str(converted)]) == 0
    assert harmovid(["convert-sam2", str(official), str(converted)]) == 2, "an existing output was overwritten"
    out = segment_with_sam2(clip, checkpoint=converted, config=config, points=[(40, 24)], soft=True)
    assert torch.equal(out, run(tiny, clip, soft=True)), "converted checkpoint gives different masks"


def test_sam2_mask_node_runs_a_checkpoint_from_the_models_folder(tiny, clip, monkeypatch):
    import shutil

    from nodes.masks import BUILTIN, HarmoVidSAM2Mask

    checkpoint, config = tiny
    models = checkpoint.parent.parent / "node_models"
    (models / "sam2").mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoint, models / "sam2/person.safetensors")
    shutil.copy(config, models / "sam2/person.yaml")  # a config beside the file names its architecture
    monkeypatch.setenv("HARMOVID_MODELS_DIR", str(models))
    choices = HarmoVidSAM2Mask.INPUT_TYPES()["required"]["model"][0]
    assert choices == [BUILTIN, "person.safetensors"], f"model choices {choices}"
    (mask,) = HarmoVidSAM2Mask().segment(
        clip, "person.safetensors", 1, 0.5, 0.6, points="40,24", negative_points="5,5", box=""
    )
    expected = run(tiny, clip, points=[(40, 24), (5, 5)], point_labels=[1, 0], prompt_frame=1)
    assert mask.shape == clip.shape[:3] and mask.dtype == torch.float32
    assert torch.equal(mask, expected), "node result differs from segment_with_sam2 with the same prompts"


def test_long_clip_tracking_forgets_far_frames_without_changing_the_masks(tiny, monkeypatch):
    from comfy_harmovid.segment import sam2_video

    frames = make_portrait_clip(frames=60, height=32, width=40)[0]
    kept = []
    forget = sam2_video._forget_far_frames

    def forget_and_count(state, *args):
        forget(state, *args)
        kept.append(len(state["output_dict_per_obj"][0]["non_cond_frame_outputs"]))

    monkeypatch.setattr(sam2_video, "_forget_far_frames", forget_and_count)
    pruned = run(tiny, frames, points=[(20, 12)], soft=True)
    monkeypatch.setattr(sam2_video, "_forget_far_frames", lambda *args: None)
    full = run(tiny, frames, points=[(20, 12)], soft=True)
    reach = sam2_video.memory_reach(load_sam2(tiny[0], config=tiny[1]))
    assert max(kept) <= 2 * reach + 1, f"kept up to {max(kept)} tracked frames (reach {reach})"
    assert torch.equal(pruned, full), "forgetting far frames changed the masks"
    middle = run(tiny, frames, points=[(20, 12)], prompt_frame=40, soft=True)
    monkeypatch.setattr(sam2_video, "_forget_far_frames", forget)
    assert torch.equal(run(tiny, frames, points=[(20, 12)], prompt_frame=40, soft=True), middle), (
        "forgetting far frames changed the backward pass"
    )

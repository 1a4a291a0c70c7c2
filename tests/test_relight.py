"""IC-Light relighting: loading SD1.5 + the IC-Light offset, Consistent Light Attention, the relighter.

No real weights here: tiny random models of the same architecture, written in the real file formats
(tests/relight_tiny.py)."""

import copy
import json
import os
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.relight import (
    ICLightRelighter,
    LightMemory,
    RelightSettings,
    install_consistent_light,
    load_clip_tokenizer,
    load_iclight,
    relight_frames,
    working_size,
)
from comfy_harmovid.relight.attention import ConsistentLightAttention
from comfy_harmovid.relight.relighter import make_scheduler
from comfy_harmovid.relight.tokenizer import vocabulary_from_bpe
from conftest import make_portrait_clip
from relight_tiny import unet_to_ldm, write_tiny_iclight, write_tiny_sd15, write_tiny_tokenizer

TOLERANCE = 1e-5  # float32 on the CPU, same operations in another order


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("relight")
    unet, vae, text = write_tiny_sd15(folder / "tiny-sd15.safetensors")
    offset = write_tiny_iclight(folder / "tiny-iclight-fbc.safetensors", unet)
    tokenizer = write_tiny_tokenizer(folder / "tokenizer")
    return {"folder": folder, "checkpoint": folder / "tiny-sd15.safetensors",
            "iclight": folder / "tiny-iclight-fbc.safetensors", "tokenizer": tokenizer,
            "unet": unet, "vae": vae, "text": text, "offset": offset}


@pytest.fixture(scope="module")
def tiny_models(tiny_files):
    return load_iclight(tiny_files["checkpoint"], tiny_files["iclight"], tokenizer=tiny_files["tokenizer"])


def fresh(models):
    """A copy whose UNet processors the test may change."""
    return copy.copy(models).__class__(copy.deepcopy(models.unet), models.vae, models.text_encoder, models.tokenizer)


# -- loading -------------------------------------------------------------------------------------------


def test_single_file_checkpoint_and_offset_load_into_the_models_built_directly(tiny_files, tiny_models):
    unet, offset = tiny_files["unet"], tiny_files["offset"]
    loaded = tiny_models.unet.state_dict()
    assert set(loaded) == set(unet.state_dict()), "the loaded UNet must have SD1.5's diffusers layout"
    for key, weight in unet.state_dict().items():
        if key == "conv_in.weight":
            # SD1.5's 4 channels widened with zeros to 12, then the offset added.
            widened = torch.zeros(weight.shape[0], 12, *weight.shape[2:])
            widened[:, :4] = weight
            expected = widened + offset[key]
        else:
            expected = weight + offset[key]
        assert torch.allclose(loaded[key], expected, atol=TOLERANCE), f"{key}: the offset was not added"
    assert tiny_models.unet.config.in_channels == 12
    for name, reference, model in (("VAE", tiny_files["vae"], tiny_models.vae),
                                   ("text encoder", tiny_files["text"], tiny_models.text_encoder)):
        for key, weight in reference.state_dict().items():
            assert torch.equal(model.state_dict()[key], weight), f"{name} {key} differs from the model written"


def test_iclight_offset_with_ldm_names_loads_the_same_unet(tiny_files, tiny_models, tmp_path):
    ldm = tmp_path / "iclight_sd15_fbc_unet_ldm.safetensors"
    save_file({k: v.contiguous() for k, v in unet_to_ldm(tiny_files["offset"], prefix="diffusion_model.").items()},
              str(ldm))
    models = load_iclight(tiny_files["checkpoint"], ldm, tokenizer=tiny_files["tokenizer"])
    for key, weight in tiny_models.unet.state_dict().items():
        assert torch.equal(models.unet.state_dict()[key], weight), key


def test_the_fc_model_is_refused_saying_the_fbc_file_is_needed(tiny_files, tmp_path):
    fc = tmp_path / "iclight_sd15_fc.safetensors"
    write_tiny_iclight(fc, tiny_files["unet"], channels=8)
    with pytest.raises(HarmoVidError, match=r"fc model.*8 channels.*fbc.*12"):
        load_iclight(tiny_files["checkpoint"], fc, tokenizer=tiny_files["tokenizer"])


def test_a_missing_offset_or_checkpoint_key_is_named(tiny_files, tmp_path):
    partial = tmp_path / "partial.safetensors"
    write_tiny_iclight(partial, tiny_files["unet"], drop=("mid_block.resnets.0.conv1.weight",))
    with pytest.raises(HarmoVidError, match="no offset for mid_block.resnets.0.conv1.weight"):
        load_iclight(tiny_files["checkpoint"], partial, tokenizer=tiny_files["tokenizer"])

    from safetensors.torch import load_file

    weights = load_file(str(tiny_files["checkpoint"]))
    del weights["first_stage_model.decoder.conv_out.weight"]
    broken = tmp_path / "broken-sd15.safetensors"
    save_file(weights, str(broken))
    with pytest.raises(HarmoVidError, match=r"VAE weights .*missing decoder.conv_out.weight"):
        load_iclight(broken, tiny_files["iclight"], tokenizer=tiny_files["tokenizer"])


def test_pickle_files_and_other_models_are_refused_with_the_fix(tiny_files, tmp_path):
    pickled = tmp_path / "v1-5-pruned-emaonly.ckpt"
    torch.save({"state_dict": {}}, pickled)
    with pytest.raises(HarmoVidError, match="pickled.*safetensors only"):
        load_iclight(pickled, tiny_files["iclight"], tokenizer=tiny_files["tokenizer"])
    not_sd15 = tmp_path / "sdxl.safetensors"
    save_file({"conditioner.embedders.1.model.token_embedding.weight": torch.zeros(4, 4)}, str(not_sd15))
    with pytest.raises(HarmoVidError, match="not a Stable Diffusion 1.5"):
        load_iclight(not_sd15, tiny_files["iclight"], tokenizer=tiny_files["tokenizer"])


def test_tokenizer_from_a_bpe_file_equals_the_folder_form(tiny_files, tmp_path):
    import gzip

    merges = "#version: 0.2\nh e\nhe l\nl o</w>\nhel lo</w>\n"
    folder = write_tiny_tokenizer(tmp_path / "tokenizer")
    bpe = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe, "wt", encoding="utf-8") as handle:
        handle.write(merges)
    vocabulary, _ = vocabulary_from_bpe(bpe)
    import json

    (folder / "vocab.json").write_text(json.dumps(vocabulary), encoding="utf-8")
    (folder / "merges.txt").write_text(merges, encoding="utf-8")
    a, b = load_clip_tokenizer(folder), load_clip_tokenizer(bpe)
    assert a("hello world").input_ids == b("hello world").input_ids
    assert vocabulary["hello</w>"] in a("hello").input_ids, "the merges were not used"
    with pytest.raises(HarmoVidError, match="vocab.json and merges.txt"):
        load_clip_tokenizer(tmp_path)


# -- Consistent Light Attention ------------------------------------------------------------------------


def _attention(seed=0):
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(seed)
    return Attention(query_dim=16, heads=2, dim_head=8).eval()


def _plain(attention, tokens):
    from diffusers.models.attention_processor import AttnProcessor2_0

    attention.set_processor(AttnProcessor2_0())
    return attention(tokens)


def _consistent(attention, tokens, memory):
    attention.set_processor(ConsistentLightAttention(memory, "layer"))
    return attention(tokens)


def test_strength_zero_is_plain_attention_and_identical_frames_change_nothing():
    attention = _attention()
    tokens = torch.randn(2 * 3, 5, 16)  # [halves * frames, tokens, channels]
    with torch.no_grad():
        plain = _plain(attention, tokens)
        assert torch.allclose(_consistent(attention, tokens, LightMemory(0.0)), plain, atol=TOLERANCE)
        same = torch.randn(2, 1, 5, 16).expand(2, 3, 5, 16).reshape(6, 5, 16)
        shared = _consistent(attention, same, LightMemory(1.0))
        assert torch.allclose(shared, _plain(attention, same), atol=TOLERANCE), "identical frames must not change"
        assert not torch.allclose(_consistent(attention, tokens, LightMemory(1.0)), plain, atol=1e-3), \
            "different frames must be pulled toward their shared light"


def test_the_two_guidance_halves_are_averaged_separately():
    attention = _attention()
    unconditional = torch.randn(1, 1, 5, 16).expand(1, 3, 5, 16)
    conditional = torch.randn(1, 1, 5, 16).expand(1, 3, 5, 16)
    tokens = torch.cat([unconditional, conditional]).reshape(6, 5, 16)  # each half: 3 identical frames
    with torch.no_grad():
        separate = _consistent(attention, tokens, LightMemory(1.0, halves=2))
        mixed = _consistent(attention, tokens, LightMemory(1.0, halves=1))
        plain = _plain(attention, tokens)
    assert torch.allclose(separate, plain, atol=TOLERANCE), "within each half the frames are identical"
    assert not torch.allclose(mixed, plain, atol=1e-3), "averaging across the halves would mix the prompts"


def test_the_running_light_carries_over_chunks_and_its_memory_does_not_grow():
    attention = _attention()
    frames = torch.randn(2 * 4, 5, 16)
    halves = frames.view(2, 4, 5, 16)
    first, second = halves[:, :2].reshape(4, 5, 16), halves[:, 2:].reshape(4, 5, 16)
    memory = LightMemory(1.0, halves=2)
    with torch.no_grad():
        whole = _consistent(attention, frames, LightMemory(1.0, halves=2))
        _consistent(attention, first, memory)
        entries = len(memory._means)
        later = _consistent(attention, second, memory)
        _consistent(attention, second, memory)
    assert len(memory._means) == entries, "the running light must hold one mean per layer and step"
    # With no history cap the second chunk sees the mean of all four frames, as the whole clip does.
    assert torch.allclose(later, whole.view(2, 4, 5, 16)[:, 2:].reshape(4, 5, 16), atol=TOLERANCE)


# -- the relighter -------------------------------------------------------------------------------------


def _settings(**changes):
    base = dict(steps=3, denoise=1.0, guidance=3.0, consistency=0.8, chunk_frames=4, resolution=64)
    base.update(changes)
    return RelightSettings(**base)


def test_one_denoising_step_matches_diffusers_reference(tiny_models):
    """The relighter's guided step equals diffusers' UNet (plain attention) + DPM-Solver++ for the same input,
    when the frames are identical (Consistent Light Attention then changes nothing)."""
    models = fresh(tiny_models)
    relighter = ICLightRelighter(models, _settings(steps=3, denoise=1.0))
    generator = torch.Generator().manual_seed(3)
    latents = torch.randn(1, 4, 8, 8, generator=generator).expand(3, 4, 8, 8)
    condition = torch.randn(1, 8, 8, 8, generator=generator).expand(3, 8, 8, 8)
    ours_scheduler, reference_scheduler = make_scheduler(), make_scheduler()
    for scheduler in (ours_scheduler, reference_scheduler):
        scheduler.set_timesteps(3)
    timestep = ours_scheduler.timesteps[0]
    with torch.no_grad():
        ours = ours_scheduler.step(relighter.predict_noise(latents, condition, timestep), timestep, latents).prev_sample

        reference_unet = tiny_models.unet  # diffusers' own attention processors
        tokens = models.tokenizer([relighter.settings.negative_prompt, relighter.settings.prompt], padding="max_length",
                                  max_length=77, truncation=True, return_tensors="pt")
        embeddings = models.text_encoder(tokens.input_ids).last_hidden_state
        model_input = torch.cat([torch.cat([latents, condition], 1)] * 2)
        prompts = torch.cat([embeddings[:1].expand(3, -1, -1), embeddings[1:].expand(3, -1, -1)])
        unconditional, conditional = reference_unet(model_input, timestep, encoder_hidden_states=prompts).sample.chunk(2)
        guided = unconditional + 3.0 * (conditional - unconditional)
        reference = reference_scheduler.step(guided, timestep, latents).prev_sample
    assert torch.allclose(ours, reference, atol=1e-4), f"step differs by {(ours - reference).abs().max():.2e}"


def test_consistent_light_is_installed_on_the_up_blocks_self_attention_only(tiny_models):
    models = fresh(tiny_models)
    count = install_consistent_light(models.unet, LightMemory(0.5))
    shared = [name for name, p in models.unet.attn_processors.items() if isinstance(p, ConsistentLightAttention)]
    assert count == len(shared) == 9, "SD1.5 has 3 up blocks with attention, 3 transformer blocks each"
    assert all(name.startswith("up_blocks.") and "attn1" in name for name in shared)


def _roughness(relit, composite):
    """Mean difference of the light change between neighbouring pixels inside the person's head, where
    nothing is clipped to 0..1."""
    change = (relit - composite)[:, 14:30, 27:37]
    inside = relit[:, 14:30, 27:37]
    unclipped = ((inside > 1e-3) & (inside < 1 - 1e-3)).all(dim=-1)
    both = unclipped[:, 1:] & unclipped[:, :-1]
    return (change[:, 1:] - change[:, :-1]).abs().sum(-1)[both].mean()


def test_relit_clip_keeps_the_background_and_only_adds_a_smooth_light_change(tiny_models):
    composite, alpha, background = make_portrait_clip(frames=3, height=64, width=64)
    relit = relight_frames(fresh(tiny_models), composite, alpha, background, _settings(light_smoothing=3.0))
    assert relit.shape == composite.shape and torch.isfinite(relit).all()
    outside = alpha == 0
    assert torch.equal(relit[outside], background[outside]), "the background must never change"
    assert (relit - composite)[:, 14:30, 27:37].abs().mean() > 1e-3, "the tiny model must change the light"
    # The person's detail is the composite's: with smoothing the change has far less fine structure than the
    # change the model decoded.
    raw = relight_frames(fresh(tiny_models), composite, alpha, background, _settings(light_smoothing=0.0))
    assert _roughness(relit, composite) < 0.3 * _roughness(raw, composite), "the light change is not smoothed"


def test_zero_denoise_returns_the_composite(tiny_models):
    composite, alpha, background = make_portrait_clip(frames=2, height=64, width=64)
    relit = relight_frames(fresh(tiny_models), composite, alpha, background, _settings(denoise=0.0))
    assert torch.allclose(relit, composite, atol=1e-5)


def test_chunked_equals_whole_clip_where_it_should(tiny_models):
    composite, alpha, background = make_portrait_clip(frames=4, height=64, width=64)
    # Without shared light the frames are independent: any chunking gives the same clip.
    whole = relight_frames(fresh(tiny_models), composite, alpha, background, _settings(consistency=0.0))
    chunked = relight_frames(fresh(tiny_models), composite, alpha, background, _settings(consistency=0.0, chunk_frames=1))
    assert torch.allclose(whole, chunked, atol=1e-4), f"{(whole - chunked).abs().max():.2e}"
    # Identical frames share their light with or without chunks.
    still = [x[:1].expand(4, *x.shape[1:]).contiguous() for x in (composite, alpha, background)]
    whole = relight_frames(fresh(tiny_models), *still, _settings())
    chunked = relight_frames(fresh(tiny_models), *still, _settings(chunk_frames=3))
    assert torch.allclose(whole, chunked, atol=1e-4), f"{(whole - chunked).abs().max():.2e}"
    assert torch.allclose(whole[0], whole[3], atol=1e-5), "one noise and one light for every frame"


def test_settings_and_inputs_are_checked(tiny_models):
    composite, alpha, background = make_portrait_clip(frames=2, height=64, width=64)
    with pytest.raises(HarmoVidError, match="denoise must be in 0..1"):
        RelightSettings(denoise=1.5).check()
    with pytest.raises(HarmoVidError, match="background"):
        relight_frames(fresh(tiny_models), composite, alpha, background[:1], _settings())
    assert working_size(720, 1280, 512) == (512, 912)


def test_progress_counts_every_step_of_every_chunk(tiny_models):
    composite, alpha, background = make_portrait_clip(frames=3, height=64, width=64)
    calls = []
    relight_frames(fresh(tiny_models), composite, alpha, background, _settings(chunk_frames=2),
                   progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (6, 6), f"2 chunks x 3 steps, got {calls[-1]}"
    assert len(calls) >= 6, "every denoising step must report (and so be cancellable)"
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


# -- the nodes -----------------------------------------------------------------------------------------


@pytest.fixture
def models_dir(tmp_path, monkeypatch, tiny_files):
    """A models folder with the tiny files where a user puts the real ones; the tokenizer from the variable."""
    monkeypatch.setenv("HARMOVID_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("HARMOVID_CLIP_TOKENIZER", str(tiny_files["tokenizer"]))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "iclight").mkdir()
    (tmp_path / "checkpoints" / "tiny-sd15.safetensors").symlink_to(tiny_files["checkpoint"])
    (tmp_path / "iclight" / "tiny-iclight-fbc.safetensors").symlink_to(tiny_files["iclight"])
    return tmp_path


def test_nodes_relight_a_clip_and_tick_progress(models_dir, monkeypatch):
    from nodes import comfy_adapter
    from nodes.relight import HarmoVidICLightLoader, HarmoVidICLightRelight

    required = HarmoVidICLightLoader.INPUT_TYPES()["required"]
    assert required["checkpoint"][0] == ["tiny-sd15.safetensors"] and required["iclight"][0] == ["tiny-iclight-fbc.safetensors"]
    (models,) = HarmoVidICLightLoader().load("tiny-sd15.safetensors", "tiny-iclight-fbc.safetensors", dtype="fp32")
    composite, alpha, background = make_portrait_clip(frames=3, height=48, width=64)
    bars = []
    real_progress = comfy_adapter.progress
    monkeypatch.setattr(comfy_adapter, "progress", lambda total=1: bars.append(real_progress(total)) or bars[-1])
    (relit,) = HarmoVidICLightRelight().relight(models, composite, alpha, background, steps=2, denoise=1.0, cfg=2.0,
                                                chunk_frames=2, resolution=64)
    assert relit.shape == composite.shape and torch.isfinite(relit).all()
    assert torch.equal(relit[alpha == 0], background[alpha == 0])
    assert bars[-1].last == (4, 4), f"2 chunks x 2 steps must tick to 4/4: {bars[-1].last}"

    class Interrupted(Exception):
        pass

    def cancel():
        raise Interrupted()

    monkeypatch.setattr(comfy_adapter, "throw_if_interrupted", cancel)
    with pytest.raises(Interrupted):  # Cancel in ComfyUI stops it at the next denoising step
        HarmoVidICLightRelight().relight(models, composite, alpha, background, steps=2, resolution=64)


def test_loader_without_files_says_which_files_go_where(tmp_path, monkeypatch):
    from nodes.relight import HarmoVidICLightLoader

    monkeypatch.setenv("HARMOVID_MODELS_DIR", str(tmp_path))
    choices = HarmoVidICLightLoader.INPUT_TYPES()["required"]
    with pytest.raises(HarmoVidError, match=r"models/checkpoints.*iclight_sd15_fbc.safetensors"):
        HarmoVidICLightLoader().load(choices["checkpoint"][0][0], choices["iclight"][0][0])


# -- the command ---------------------------------------------------------------------------------------


def test_harmonize_command_relights_with_ic_light(tiny_files, tmp_path):
    from comfy_harmovid import io
    from comfy_harmovid.cli import main as harmovid

    frames, mask, _ = make_portrait_clip(frames=5, height=48, width=64, seed=1)
    foreground = io.write_video(tmp_path / "fg.mkv", frames, 24)
    mask_file = io.write_video(tmp_path / "mask.mkv", mask, 24)
    background = io.write_video(tmp_path / "bg.mkv", make_portrait_clip(frames=5, height=48, width=64, seed=2)[2], 24)
    common = ["harmonize", "--fg", str(foreground), "--bg", str(background), "--mask", str(mask_file),
              "--relight", "ic-light", "--sd15", str(tiny_files["checkpoint"]), "--iclight", str(tiny_files["iclight"]),
              "--tokenizer", str(tiny_files["tokenizer"]), "--relight-steps", "2", "--relight-resolution", "64",
              "--relight-chunk-frames", "3"]
    assert harmovid(common + ["-o", str(tmp_path / "relit.mkv")]) == 0
    assert io.probe_video(tmp_path / "relit.mkv").frame_count == 5
    plain = common[: common.index("--relight")] + ["-o", str(tmp_path / "plain.mkv"), "--harmonize-method", "none"]
    assert harmovid(plain) == 0
    change = (io.read_video(tmp_path / "relit.mkv").frames - io.read_video(tmp_path / "plain.mkv").frames).abs()
    assert change.mean() > 1e-3, "--relight ic-light must change the light"


def test_harmonize_command_without_the_files_says_which_are_needed(tmp_path, capsys):
    from comfy_harmovid.cli import main as harmovid

    code = harmovid(["harmonize", "--fg", "a.mp4", "--bg", "b.mp4", "-o", str(tmp_path / "x.mp4"), "--relight", "ic-light"])
    assert code == 2 and "--sd15" in capsys.readouterr().err


# -- in a real ComfyUI (skipped unless HARMOVID_COMFYUI_URL and HARMOVID_COMFYUI_MODELS are set) ----------

COMFYUI_URL = os.environ.get("HARMOVID_COMFYUI_URL")
COMFYUI_MODELS = os.environ.get("HARMOVID_COMFYUI_MODELS")  # that server's models/ folder, to put the tiny files in


@pytest.mark.skipif(not (COMFYUI_URL and COMFYUI_MODELS),
                    reason="set HARMOVID_COMFYUI_URL to a running ComfyUI with this pack and HARMOVID_COMFYUI_MODELS "
                    "to its models folder")
def test_nodes_run_in_a_real_comfyui_with_the_tiny_files_in_its_model_folders(tmp_path):
    models = Path(COMFYUI_MODELS)
    for kind in ("checkpoints", "iclight"):
        (models / kind).mkdir(parents=True, exist_ok=True)
    unet, _, _ = write_tiny_sd15(models / "checkpoints" / "harmovid-tiny-sd15.safetensors")
    write_tiny_iclight(models / "iclight" / "harmovid-tiny-iclight-fbc.safetensors", unet)
    url = COMFYUI_URL.rstrip("/")
    # The tokenizer is ComfyUI's own comfy/sd1_tokenizer; the clip: solid images and a half-transparent alpha.
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 3, "color": 0x8040C0}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 3, "color": 0x204060}},
        "3": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "red"}},
        "4": {"class_type": "HarmoVidICLightLoader", "inputs": {
            "checkpoint": "harmovid-tiny-sd15.safetensors", "iclight": "harmovid-tiny-iclight-fbc.safetensors",
            "dtype": "fp32"}},
        "5": {"class_type": "HarmoVidICLightRelight", "inputs": {
            "iclight": ["4", 0], "composite": ["1", 0], "alpha": ["3", 0], "background": ["2", 0],
            "prompt": "a person in warm light", "negative_prompt": "worst quality", "seed": 1, "steps": 2,
            "denoise": 1.0, "cfg": 2.0, "consistency": 0.7, "chunk_frames": 2, "resolution": 64,
            "light_smoothing": 4.0}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
    }
    request = urllib.request.Request(f"{url}/prompt", data=json.dumps({"prompt": prompt}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        prompt_id = json.load(response)["prompt_id"]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/history/{prompt_id}", timeout=30) as response:
            history = json.load(response).get(prompt_id)
        if history and history.get("status", {}).get("completed") is not None:
            break
        time.sleep(1)
    assert history, "the prompt did not finish within 5 minutes"
    status = history["status"]
    assert status["status_str"] == "success", f"ComfyUI reported: {status.get('messages')}"
    assert len(history["outputs"]["6"]["images"]) == 3, "one relit image per frame"


# -- the benchmark -------------------------------------------------------------------------------------


def test_running_light_size_in_the_benchmark_is_what_the_relighter_keeps(tiny_models):
    from comfy_harmovid.bench.relight import running_light_bytes

    composite, alpha, background = make_portrait_clip(frames=2, height=64, width=64)
    relighter = ICLightRelighter(fresh(tiny_models), _settings())
    relighter.process(composite, alpha, background)
    kept = sum(t.numel() * t.element_size() for key, value, _ in relighter.memory._means.values() for t in (key, value))
    assert kept == running_light_bytes(tiny_models.unet.config, 64 // 8, 3, bytes_per_value=4)


def test_benchmark_streams_a_clip_through_random_models():
    from comfy_harmovid.bench.relight import measure

    row = measure(dict(height=64, width=80, unet_width=32, chunk_frames=2, steps=1, threads=1, frames=3))
    assert row["seconds_per_frame"] > 0 and row["peak_rss_mib"] >= row["models_rss_mib"] > 0


# -- stage 1 of training -------------------------------------------------------------------------------


def test_training_pairs_are_relit_by_ic_light_where_its_weights_are_given(tiny_models, tmp_path):
    import yaml

    from comfy_harmovid.footage import read_manifest
    from comfy_harmovid.io import write_video
    from comfy_harmovid.train.data import TrainingClips
    from comfy_harmovid.train.trainer import TrainConfig

    frames, mask, _ = make_portrait_clip(frames=5, height=64, width=64, seed=0)
    write_video(tmp_path / "person.mp4", frames, 12, crf=0)
    write_video(tmp_path / "person_mask.mp4", mask, 12, crf=0)
    scene = make_portrait_clip(frames=5, height=64, width=64, seed=3)[2]
    write_video(tmp_path / "scene.mp4", scene, 12, crf=0)
    clips = [{"path": "person.mp4", "role": "portrait", "mask": "person_mask.mp4"}, {"path": "scene.mp4", "role": "background"}]
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"clips": clips}))
    manifest = read_manifest(tmp_path / "manifest.yaml")

    def first_item(relighter):
        return TrainingClips(manifest, "harmovid", frames=5, height=64, width=64, items=1, relighter=relighter)[0]

    relighter = ICLightRelighter(fresh(tiny_models), _settings(steps=2))
    relit, builtin = first_item(relighter), first_item(None)
    assert relit["path"] == "real_to_synthetic"
    assert torch.equal(relit["composite"], builtin["composite"]), "the same pair, only the target's relighting differs"
    assert relit["target"].shape == builtin["target"].shape and torch.isfinite(relit["target"]).all()
    assert (relit["target"] - builtin["target"]).abs().mean() > 1e-3, "IC-Light must make the target, not HarmoIm"
    with pytest.raises(HarmoVidError, match="relight_iclight"):
        TrainConfig(manifest="m.yaml", vae="v.safetensors", relight_sd15="sd15.safetensors").validated()

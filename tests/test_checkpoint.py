"""Checkpoint files: safetensors with the config inside; clear errors for everything else."""

import json
import pickle

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX
from safetensors.torch import save_file

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.model import HarmoVidConfig, HarmoVidTransformer
from comfy_harmovid.model.checkpoint import load_transformer, load_vae, read_safetensors, save_transformer, save_vae

TINY = dict(
    num_attention_heads=2, attention_head_dim=16, out_channels=4, time_embed_dim=16, text_embed_dim=8,
    num_layers=1, sample_width=8, sample_height=8, sample_frames=9, max_text_seq_length=3,
)
VAE = dict(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4, latent_channels=4,
           sample_height=32, sample_width=32)


def tiny_model(**overrides) -> HarmoVidTransformer:
    torch.manual_seed(0)
    model = HarmoVidTransformer(HarmoVidConfig(**{**TINY, **overrides})).eval()
    with torch.no_grad():
        model.text_embedding.normal_()
        model.transformer.patch_embed.proj.weight.normal_(std=0.1)
    return model


# A file round trip promises bit-identical weights, not bit-identical outputs: two module instances hold
# their tensors at different memory addresses, and some CPUs' matmul kernels pick a different blocking
# (and so summation order) by alignment. Outputs agree to float32 rounding: 2.4e-7 was seen on AMD EPYC.
OUTPUT_TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def assert_same_weights(loaded, original, what):
    reference = dict(original.named_parameters())  # buffers such as positional tables are rebuilt, not stored
    different = [name for name, value in loaded.named_parameters() if not torch.equal(value, reference[name])]
    assert not different, f"the {what} changed weights on the round trip: {different[:5]}"


def run(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    latents = [torch.randn(1, 4, 3, 4, 6, generator=generator) for _ in range(3)]
    mask = torch.rand(1, 1, 9, 32, 48, generator=generator)
    with torch.no_grad():
        return model(*latents, mask, torch.tensor([321]))


@pytest.mark.parametrize(
    "layout",
    [dict(), dict(use_rotary_positional_embeddings=True, patch_size_t=2),
     dict(use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True, sample_width=6,
          sample_height=4)],
    ids=["1.0-sincos", "1.5-rope", "1.0-learned-positions"],
)
def test_save_then_load_gives_identical_outputs(tmp_path, layout):
    model = tiny_model(**layout)
    path = save_transformer(model, tmp_path / "harmovid.safetensors")
    loaded = load_transformer(path)
    assert loaded.config == model.config, "the config did not survive the round trip"
    assert_same_weights(loaded, model, "transformer")
    torch.testing.assert_close(run(loaded), run(model), **OUTPUT_TOLERANCE, msg="the loaded model gives different outputs")
    assert not loaded.training, "a loaded model should be in eval mode"


@pytest.mark.parametrize("dtype,torch_dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_half_precision_load_runs_close_to_fp32(tmp_path, dtype, torch_dtype):
    model = tiny_model(use_rotary_positional_embeddings=True)
    path = save_transformer(model, tmp_path / "harmovid.safetensors")
    loaded = load_transformer(path, dtype=dtype)
    assert {p.dtype for p in loaded.parameters()} == {torch_dtype}
    reference, output = run(model), run(loaded)
    assert output.dtype == torch.float32, "outputs come back in the latents' dtype"
    error = (output - reference).abs().max() / reference.abs().max()
    assert error < 0.05, f"{dtype} output differs from fp32 by {error:.3f} (relative)"


def test_pickled_checkpoint_is_rejected_without_unpickling(tmp_path):
    path = tmp_path / "model.pt"

    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("the loader unpickled the file",))

    with open(path, "wb") as handle:
        pickle.dump({"weights": Boom()}, handle)
    with pytest.raises(HarmoVidError, match="pickled PyTorch file; HarmoVid loads safetensors only"):
        load_transformer(path)
    torch.save({"a": torch.zeros(1)}, tmp_path / "zip_format.safetensors")  # zip pickle with a misleading name
    with pytest.raises(HarmoVidError, match="pickled"):
        load_transformer(tmp_path / "zip_format.safetensors")


def test_unreadable_and_missing_files_give_clear_errors(tmp_path):
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(HarmoVidError, match="not a readable safetensors file"):
        load_transformer(tmp_path / "broken.safetensors")
    with pytest.raises(HarmoVidError, match="does not exist"):
        load_transformer(tmp_path / "absent.safetensors")


def test_checkpoint_without_config_is_rejected(tmp_path):
    model = tiny_model()
    path = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    with pytest.raises(HarmoVidError, match="no HarmoVid config .* `harmovid convert"):
        load_transformer(path)


def _resave(tmp_path, model, change):
    state_dict = {k: v.contiguous() for k, v in model.state_dict().items()}
    change(state_dict)
    path = tmp_path / "edited.safetensors"
    save_file(state_dict, str(path), metadata={"harmovid_config": model.config.to_json()})
    return path


def test_shape_mismatch_lists_expected_and_found_shapes(tmp_path):
    model = tiny_model()
    path = _resave(tmp_path, model, lambda sd: sd.update({"text_embedding": torch.zeros(1, 5, 8)}))
    with pytest.raises(HarmoVidError, match=r"text_embedding: expected \(1, 3, 8\), found \(1, 5, 8\)"):
        load_transformer(path)
    other = HarmoVidConfig(**{**TINY, "num_attention_heads": 4})  # weights of a wider model under this config
    path = tmp_path / "wrong_config.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"harmovid_config": other.to_json()})
    with pytest.raises(HarmoVidError, match=r"weights have the wrong shape \(.*expected \(64"):
        load_transformer(path)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    model = tiny_model()
    path = _resave(tmp_path, model, lambda sd: (sd.pop("transformer.proj_out.weight"),
                                                sd.update({"lora.extra": torch.zeros(2)})))
    with pytest.raises(HarmoVidError) as error:
        load_transformer(path)
    message = str(error.value)
    assert "1 weights are missing (transformer.proj_out.weight)" in message, message
    assert "1 weights are unexpected (lora.extra)" in message, message


def test_vae_checkpoint_is_not_loaded_as_a_transformer(tmp_path):
    vae = AutoencoderKLCogVideoX(**VAE)
    path = save_vae(vae, tmp_path / "vae.safetensors")
    with pytest.raises(HarmoVidError, match="is a VAE checkpoint"):
        load_transformer(path)


def test_vae_round_trips_through_file_and_diffusers_folder(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(**VAE).eval()
    frames = torch.rand(1, 32, 32, 3)
    from comfy_harmovid.model.vae import HarmoVidVAE

    reference = HarmoVidVAE(vae).encode(frames)
    from_file = load_vae(save_vae(vae, tmp_path / "vae.safetensors"))
    (tmp_path / "CogVideoX-tiny").mkdir()
    vae.save_pretrained(tmp_path / "CogVideoX-tiny" / "vae")
    from_folder = load_vae(tmp_path / "CogVideoX-tiny")  # the repo root: its vae/ sub-folder is used
    for name, loaded in (("file", from_file), ("diffusers folder", from_folder)):
        assert_same_weights(loaded.vae, vae, f"VAE loaded from a {name}")
        torch.testing.assert_close(loaded.encode(frames), reference, **OUTPUT_TOLERANCE,
                                   msg=f"the VAE loaded from a {name} encodes differently")
    assert load_vae(tmp_path / "vae.safetensors", dtype="bf16").dtype == torch.bfloat16


def test_vae_folder_with_only_pickled_weights_is_rejected(tmp_path):
    folder = tmp_path / "vae"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLCogVideoX"}))
    torch.save({}, folder / "diffusion_pytorch_model.bin")
    with pytest.raises(HarmoVidError, match="only has pickled weights"):
        load_vae(folder)


def test_read_safetensors_returns_metadata(tmp_path):
    path = save_transformer(tiny_model(), tmp_path / "m.safetensors")
    _, metadata = read_safetensors(path)
    assert HarmoVidConfig.from_json(metadata["harmovid_config"]) == tiny_model().config


def test_learned_position_model_rejects_other_sizes_clearly():
    model = tiny_model(use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True)
    with pytest.raises(HarmoVidError, match="runs only on clips of 9 frames at 64x64"):
        run(model)  # latents for 48x32 pixels


# -- harmovid convert ------------------------------------------------------------------------------

BASES = {
    "2b-like t2v (1.0, sin-cos)": dict(in_channels=4),
    "5b-like t2v (1.0, RoPE)": dict(in_channels=4, use_rotary_positional_embeddings=True),
    "5b-i2v-like (1.0, RoPE)": dict(in_channels=8, use_rotary_positional_embeddings=True),
    "1.5 t2v": dict(in_channels=4, use_rotary_positional_embeddings=True, patch_size_t=2, patch_bias=False),
    "1.5 i2v (ofs)": dict(in_channels=8, use_rotary_positional_embeddings=True, patch_size_t=2, patch_bias=False,
                          ofs_embed_dim=16),
}


def make_base_folder(root, **overrides):
    """A tiny CogVideoX saved like a hub repository: sharded transformer/ with an index, scheduler/, vae/."""
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(0)
    base = CogVideoXTransformer3DModel(**{**TINY, **overrides}).eval()
    with torch.no_grad():
        for parameter in base.parameters():  # diffusers zero-initialises some layers; make every path count
            parameter.add_(torch.randn_like(parameter) * 0.05)
    folder = root / "CogVideoX-tiny"
    base.save_pretrained(folder / "transformer", max_shard_size="40KB")
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"snr_shift_scale": 1.0}))
    AutoencoderKLCogVideoX(**VAE).save_pretrained(folder / "vae")
    return base, folder


@pytest.mark.parametrize("base_kind", list(BASES))
def test_converted_model_equals_the_base_model_while_new_inputs_are_zero(tmp_path, base_kind):
    from comfy_harmovid.cli import main
    from comfy_harmovid.model import rotary_embedding

    base, folder = make_base_folder(tmp_path, **BASES[base_kind])
    assert (folder / "transformer" / "diffusion_pytorch_model.safetensors.index.json").is_file(), "not sharded"
    out = tmp_path / "harmovid.safetensors"
    assert main(["convert", "--base", str(folder), "-o", str(out), "--vae-out", str(tmp_path / "vae.safetensors")]) == 0
    model = load_transformer(out)
    assert model.config.scheduler == {"snr_shift_scale": 1.0}, "the base scheduler config should travel along"
    assert load_vae(tmp_path / "vae.safetensors").latent_channels == 4

    generator = torch.Generator().manual_seed(5)
    frames = 4 if model.config.patch_size_t else 3
    noisy = torch.randn(2, 4, frames, 4, 6, generator=generator)
    image = torch.randn(2, 4, frames, 4, 6, generator=generator) if BASES[base_kind]["in_channels"] == 8 else None
    zeros = torch.zeros_like(noisy)
    timestep = torch.tensor([999, 250])
    with torch.no_grad():
        converted = model(noisy, zeros if image is None else image, zeros,
                          torch.zeros(2, 1, 4 * frames - 3, 32, 48), timestep)
        hidden = noisy if image is None else torch.cat([noisy, image], dim=1)
        rope = rotary_embedding(model.config, frames, 4, 6) if model.config.use_rotary_positional_embeddings else None
        ofs = torch.full((2,), 2.0) if model.config.ofs_embed_dim else None
        expected = base(
            hidden_states=hidden.permute(0, 2, 1, 3, 4),
            encoder_hidden_states=model.text_embedding.expand(2, -1, -1),
            timestep=timestep, ofs=ofs, image_rotary_emb=rope, return_dict=False,
        )[0].permute(0, 2, 1, 3, 4)
    difference = (converted - expected).abs().max()
    assert difference == 0, f"{base_kind}: converted model differs from the base by {difference:.2e}"
    with torch.no_grad():  # and the new inputs do reach the model once their weights are trained
        model.transformer.patch_embed.proj.weight.normal_()
        assert (model(noisy, zeros, zeros + 1, torch.zeros(2, 1, 4 * frames - 3, 32, 48), timestep)
                - converted).abs().max() > 1e-3


def test_convert_stores_the_t5_embedding_of_the_empty_prompt(tmp_path):
    from transformers import T5Config, T5EncoderModel

    from comfy_harmovid.model.convert import convert_cogvideox

    _, folder = make_base_folder(tmp_path, in_channels=4)
    torch.manual_seed(1)
    encoder = T5EncoderModel(T5Config(vocab_size=16, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)).eval()
    encoder.save_pretrained(folder / "text_encoder")
    config, state, info = convert_cogvideox(folder, text_encoder_dtype="fp32")
    with torch.no_grad():  # the CogVideoX pipeline: "" -> [</s>, <pad>, <pad>], no attention mask
        expected = encoder(torch.tensor([[1, 0, 0]])).last_hidden_state
    assert info["text_embedding"] == "T5 of the empty prompt"
    assert torch.allclose(state["text_embedding"], expected, atol=1e-6)
    _, state, info = convert_cogvideox(folder, use_text_encoder=False)
    assert info["text_embedding"].startswith("zeros") and not state["text_embedding"].any()


def test_convert_rejects_folders_that_are_not_cogvideox(tmp_path, capsys):
    from comfy_harmovid.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["convert", "--base", str(tmp_path / "empty"), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "has no transformer/config.json of a CogVideoXTransformer3DModel" in capsys.readouterr().err
    _, folder = make_base_folder(tmp_path, in_channels=12)
    with pytest.raises(HarmoVidError, match="takes 12 input channels for 4 latent channels"):
        from comfy_harmovid.model.convert import convert_cogvideox

        convert_cogvideox(folder)


def test_a_folder_passed_as_checkpoint_points_to_convert(tmp_path):
    with pytest.raises(HarmoVidError, match="is a folder, not a checkpoint file.*harmovid convert"):
        load_transformer(tmp_path)


def test_a_failed_write_keeps_the_old_checkpoint_and_leaves_no_partial_file(tmp_path, monkeypatch):
    import comfy_harmovid.weights_files as weights_files
    from comfy_harmovid.harmoim import HarmoImConfig, HarmoImNet, save_harmoim

    path = save_transformer(tiny_model(), tmp_path / "model.safetensors")
    old = path.read_bytes()

    def write_half_then_fail(state, filename, metadata=None):
        save_file(state, filename, metadata=metadata)
        with open(filename, "r+b") as handle:
            handle.truncate(len(old) // 2)
        raise OSError("No space left on device")

    monkeypatch.setattr(weights_files, "save_file", write_half_then_fail)
    savers = {
        "transformer": lambda: save_transformer(tiny_model(num_layers=2), path),
        "harmoim": lambda: save_harmoim(HarmoImNet(HarmoImConfig(input_size=32, bands=3, widths=(8, 16), hidden=32)), path, overwrite=True),
    }
    for what, save in savers.items():
        with pytest.raises(OSError, match="No space"):
            save()
        assert path.read_bytes() == old, f"a failed {what} write changed the existing file"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"], f"a failed {what} write left a partial file"
    assert_same_weights(load_transformer(path), tiny_model(), "the kept checkpoint")


def test_saved_weights_get_the_usual_file_permissions(tmp_path):
    """safetensors creates files readable by their owner only; a shipped or shared weights file must not be."""
    import os
    import stat

    from comfy_harmovid.harmoim import HarmoImConfig, HarmoImNet, save_harmoim

    previous = os.umask(0o022)
    try:
        paths = [save_transformer(tiny_model(), tmp_path / "model.safetensors"),
                 save_harmoim(HarmoImNet(HarmoImConfig(input_size=32, bands=3, widths=(8, 16), hidden=32)),
                              tmp_path / "harmoim.safetensors")]
    finally:
        os.umask(previous)
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, f"{path.name}: {oct(path.stat().st_mode)}"

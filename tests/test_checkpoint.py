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
    assert torch.equal(run(model), run(loaded)), "the loaded model gives different outputs"
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
        assert torch.equal(loaded.encode(frames), reference), f"the VAE loaded from a {name} encodes differently"
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

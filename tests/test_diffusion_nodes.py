"""The diffusion nodes end to end: tiny checkpoints in a models folder, Loader -> Encode -> Tiler -> Sampler -> Decode."""

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLCogVideoX

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.model import HarmoVidConfig, HarmoVidTransformer, save_transformer, save_vae
from comfy_harmovid.sampling import DiffusionModel
from conftest import make_portrait_clip
from nodes import comfy_adapter
from nodes.diffusion import (
    NODE_CLASS_MAPPINGS,
    HarmoVidDecode,
    HarmoVidDetailTransfer,
    HarmoVidEncode,
    HarmoVidLoader,
    HarmoVidMultiDiffusionTiler,
    HarmoVidSampler,
)

TINY = dict(
    num_attention_heads=2, attention_head_dim=16, out_channels=4, time_embed_dim=16, text_embed_dim=8,
    num_layers=1, sample_width=8, sample_height=8, sample_frames=9, max_text_seq_length=3,
)
LAYOUTS = {"1.0": dict(), "1.5": dict(use_rotary_positional_embeddings=True, patch_size_t=2)}
# Tiles of 64 pixels (half the sample size), so the small test clips run untiled and fast.
TINY_VAE = dict(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4, latent_channels=4,
                sample_height=128, sample_width=128)


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """An empty models folder that the nodes use instead of the real one."""
    monkeypatch.setenv("HARMOVID_MODELS_DIR", str(tmp_path))
    (tmp_path / "harmovid").mkdir()
    (tmp_path / "harmovid_vae").mkdir()
    return tmp_path


def write_checkpoints(models_dir, layout="1.0"):
    torch.manual_seed(0)
    transformer = HarmoVidTransformer(HarmoVidConfig(**TINY, **LAYOUTS[layout]))
    with torch.no_grad():
        transformer.text_embedding.normal_()
    save_transformer(transformer, models_dir / "harmovid" / f"tiny-{layout}.safetensors")
    save_vae(AutoencoderKLCogVideoX(**TINY_VAE), models_dir / "harmovid_vae" / "tiny-vae.safetensors")
    return f"tiny-{layout}.safetensors", "tiny-vae.safetensors"


def run_graph(model, vae, frames, alpha, background, window_frames, steps=2):
    (cond,) = HarmoVidEncode().encode(vae, frames, background, alpha)
    (tiled,) = HarmoVidMultiDiffusionTiler().tile(model, window_frames=window_frames, overlap_frames=4)
    (latent,) = HarmoVidSampler().sample(tiled, cond, seed=0, steps=steps, guidance=2.0)
    (out,) = HarmoVidDecode().decode(vae, latent)
    return cond, tiled, latent, out


@pytest.mark.parametrize("layout", ["1.0", "1.5"])
def test_loader_encode_tiler_sampler_decode_gives_frames_shaped_like_the_input(models_dir, layout):
    names = write_checkpoints(models_dir, layout)
    model, vae = HarmoVidLoader().load(*names, dtype="fp32")
    frames, alpha, background = make_portrait_clip(frames=6, height=24, width=40)  # not 4k+1, not 16-aligned
    cond, tiled, latent, out = run_graph(model, vae, frames, alpha, background, window_frames=5)
    assert out.shape == frames.shape, f"Decode returned {tuple(out.shape)} for an input of {tuple(frames.shape)}"
    assert out.dtype == torch.float32 and torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
    assert latent["samples"].shape == cond.composite_latent.shape == (1, 4, 3, 4, 6), "unexpected latent shape"
    assert latent["samples"].device == comfy_adapter.torch_device(), "the latent left the model's device"
    mask = cond.mask[0, 0].float()
    assert mask.shape == (9, 32, 48), f"the alpha must be padded like the VAE pads frames, got {tuple(mask.shape)}"
    assert torch.allclose(mask[:6, :24, :40], alpha, atol=1e-3), "the padded alpha lost the original values"
    assert torch.equal(mask[6:], mask[5:6].expand(3, -1, -1)), "padding frames must repeat the last alpha frame"
    assert tiled is not model and model.multidiffusion is None, "the Tiler must not change the Loader's model"
    assert len(tiled.multidiffusion.layout(cond.composite_latent.shape)) > 1, "5-frame windows must split 3 latent frames"


def test_detail_transfer_relights_the_composite_itself_at_its_own_resolution(models_dir):
    model, vae = HarmoVidLoader().load(*write_checkpoints(models_dir), dtype="fp32")
    frames, alpha, background = make_portrait_clip(frames=5, height=32, width=48)
    cond, _, _, decoded = run_graph(model, vae, frames, alpha, background, window_frames=9)
    (reconstruction,) = HarmoVidDecode().decode(vae, {"samples": cond.composite_latent, "frame_count": 5})
    (unchanged,) = HarmoVidDetailTransfer().transfer(vae, cond, reconstruction, frames, radius=2.0)
    assert torch.allclose(unchanged, frames, atol=1e-5), "decoding the composite's own latent must change nothing"
    (relit,) = HarmoVidDetailTransfer().transfer(vae, cond, decoded, frames, radius=2.0)
    assert relit.shape == frames.shape and not torch.allclose(relit, frames, atol=1e-3)
    large = F.interpolate(frames.permute(0, 3, 1, 2), scale_factor=2, mode="bilinear").permute(0, 2, 3, 1)
    (relit_large,) = HarmoVidDetailTransfer().transfer(vae, cond, decoded, large, radius=2.0)
    assert relit_large.shape == large.shape, "the result must have the given composite's resolution"
    small_again = F.avg_pool2d(relit_large.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    assert float((small_again - relit).abs().mean()) < 0.02, "the large result must carry the same light change"


def test_sampler_ticks_progress_per_window_and_step_and_can_be_interrupted(models_dir, monkeypatch):
    model, vae = HarmoVidLoader().load(*write_checkpoints(models_dir), dtype="fp32")
    frames, alpha, background = make_portrait_clip(frames=9, height=32, width=32)
    (cond,) = HarmoVidEncode().encode(vae, frames, background, alpha)
    (tiled,) = HarmoVidMultiDiffusionTiler().tile(model, window_frames=5, overlap_frames=0)
    bars = []
    real_progress = comfy_adapter.progress
    monkeypatch.setattr(comfy_adapter, "progress", lambda total=1: bars.append(real_progress(total)) or bars[-1])
    HarmoVidSampler().sample(tiled, cond, steps=2, guidance=1.0)
    ticks = 2 * len(tiled.multidiffusion.layout(cond.composite_latent.shape))
    assert ticks == 4 and bars[-1].last == (ticks, ticks), f"2 windows x 2 steps must tick to 4/4: {bars[-1].last}"

    class Interrupted(Exception):
        pass

    def cancel():
        raise Interrupted()

    monkeypatch.setattr(comfy_adapter, "throw_if_interrupted", cancel)
    with pytest.raises(Interrupted):
        HarmoVidSampler().sample(tiled, cond, steps=2, guidance=1.0)


def test_loader_with_an_empty_folder_names_it_and_says_how_to_get_weights(models_dir):
    choices = HarmoVidLoader.INPUT_TYPES()["required"]["transformer"][0]
    assert len(choices) == 1 and "no models" in choices[0], f"an empty folder must show one hint entry: {choices}"
    with pytest.raises(HarmoVidError, match="harmovid convert") as error:
        HarmoVidLoader().load(choices[0], "missing.safetensors")
    assert str(models_dir / "harmovid") in str(error.value), f"the error must name the folder: {error.value}"


def test_loader_rejects_a_vae_in_the_transformer_slot_and_a_corrupt_file(models_dir):
    _, vae_name = write_checkpoints(models_dir)
    (models_dir / "harmovid" / "vae-copy.safetensors").write_bytes((models_dir / "harmovid_vae" / vae_name).read_bytes())
    with pytest.raises(HarmoVidError, match="VAE checkpoint"):
        HarmoVidLoader().load("vae-copy.safetensors", vae_name)
    (models_dir / "harmovid" / "broken.safetensors").write_bytes(b"not a checkpoint at all")
    with pytest.raises(HarmoVidError, match="not a readable safetensors"):
        HarmoVidLoader().load("broken.safetensors", vae_name)


def test_encode_rejects_mismatched_inputs_with_one_clear_error(models_dir):
    _, vae = HarmoVidLoader().load(*write_checkpoints(models_dir), dtype="fp32")
    frames, alpha, background = make_portrait_clip(frames=5, height=32, width=32)
    with pytest.raises(HarmoVidError, match="frames"):
        HarmoVidEncode().encode(vae, frames, background[:4], alpha)
    with pytest.raises(HarmoVidError, match="empty"):
        HarmoVidEncode().encode(vae, frames, background, torch.zeros_like(alpha))
    with pytest.raises(HarmoVidError, match="Connect the output of HarmoVid Sampler"):
        HarmoVidDecode().decode(vae, {"samples": torch.zeros(1, 4, 8, 8)})


def test_every_input_has_a_tooltip_and_every_node_a_description():
    for name, node in NODE_CLASS_MAPPINGS.items():
        assert node.DESCRIPTION and node.CATEGORY == "HarmoVid", f"{name} lacks a description or category"
        assert len(node.OUTPUT_TOOLTIPS) == len(node.RETURN_TYPES) == len(node.RETURN_NAMES), f"{name} outputs"
        for section in node.INPUT_TYPES().values():
            for input_name, spec in section.items():
                assert spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"


def test_real_clip_runs_through_the_graph(models_dir, dev_data):
    from comfy_harmovid.io import read_video

    person = read_video(dev_data / "people" / "lav_man2.mp4", max_frames=5).frames
    scene = read_video(dev_data / "backgrounds" / "dvp_venice_canal.mp4", max_frames=5).frames

    def small(clip):
        return F.interpolate(clip.permute(0, 3, 1, 2), size=(32, 48), mode="area").permute(0, 2, 3, 1).contiguous()

    person, scene = small(person), small(scene)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 48), indexing="ij")
    alpha = ((xs / 0.5) ** 2 + (ys / 0.8) ** 2 <= 1).float().expand(5, -1, -1).contiguous()
    composite = person * alpha[..., None] + scene * (1 - alpha[..., None])
    model, vae = HarmoVidLoader().load(*write_checkpoints(models_dir), dtype="fp32")
    _, _, _, out = run_graph(model, vae, composite, alpha, scene, window_frames=85)
    assert out.shape == composite.shape and torch.isfinite(out).all(), "the real clip did not round-trip in shape"


def test_tiler_converts_video_units_to_the_latent_grid():
    model = DiffusionModel(HarmoVidTransformer(HarmoVidConfig(**TINY)))
    (tiled,) = HarmoVidMultiDiffusionTiler().tile(model, 85, 24, "pyramid", tile_size=480, tile_overlap=64)
    settings = tiled.multidiffusion
    assert (settings.window, settings.overlap) == (22, 6), f"85 frames / 24 shared must be 22 / 6 latent: {settings}"
    assert (settings.tile, settings.tile_overlap, settings.weighting) == (60, 8, "pyramid"), f"tiles: {settings}"


def test_loader_takes_a_diffusers_vae_folder_listed_by_its_weights_file(models_dir):
    transformer_name, _ = write_checkpoints(models_dir)
    AutoencoderKLCogVideoX(**TINY_VAE).save_pretrained(models_dir / "harmovid_vae" / "cogvideox")
    choices = HarmoVidLoader.INPUT_TYPES()["required"]["vae"][0]
    name = "cogvideox/diffusion_pytorch_model.safetensors"
    assert name in choices, f"the diffusers VAE folder is not listed: {choices}"
    _, vae = HarmoVidLoader().load(transformer_name, name, dtype="fp32")
    assert vae.latent_channels == 4, "the VAE folder did not load as the tiny VAE"

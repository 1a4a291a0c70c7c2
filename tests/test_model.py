"""The HarmoVid transformer: both CogVideoX layouts, conditioning layout, RoPE, guidance input."""

import json
from types import SimpleNamespace

import pytest
import torch

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.model import HarmoVidConfig, HarmoVidTransformer, fold_mask, null_condition, rotary_embedding

TINY = dict(
    num_attention_heads=2, attention_head_dim=16, out_channels=4, time_embed_dim=16, text_embed_dim=8,
    num_layers=1, sample_width=8, sample_height=8, sample_frames=9, max_text_seq_length=3,
)
LAYOUTS = {
    "1.0-sincos": dict(),
    "1.0-rope": dict(use_rotary_positional_embeddings=True),
    "1.5-rope": dict(use_rotary_positional_embeddings=True, patch_size_t=2),
}


def tiny_model(layout: str, seed: int = 0, **overrides) -> HarmoVidTransformer:
    torch.manual_seed(seed)
    model = HarmoVidTransformer(HarmoVidConfig(**{**TINY, **LAYOUTS[layout], **overrides})).eval()
    with torch.no_grad():  # a non-zero text embedding, so tests see it used
        model.text_embedding.normal_()
    return model


def inputs(frames=3, height=6, width=10, batch=1, seed=1):
    generator = torch.Generator().manual_seed(seed)
    latents = [torch.randn(batch, 4, frames, height, width, generator=generator) for _ in range(3)]
    mask = torch.rand(batch, 1, (frames - 1) * 4 + 1, height * 8, width * 8, generator=generator)
    return (*latents, mask, torch.full((batch,), 400))


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("frames", [2, 3])
def test_forward_returns_latent_shaped_v_in_both_layouts(layout, frames):
    model = tiny_model(layout)
    noisy, composite, background, mask, timestep = inputs(frames=frames, batch=2)
    with torch.no_grad():
        v = model(noisy, composite, background, mask, timestep)
    assert v.shape == noisy.shape, f"{layout}: v has shape {tuple(v.shape)}, expected {tuple(noisy.shape)}"
    assert torch.isfinite(v).all(), f"{layout}: v has NaN/inf"


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_forward_uses_every_condition(layout):
    model = tiny_model(layout)
    noisy, composite, background, mask, timestep = inputs()
    with torch.no_grad():
        # Make the widened input weights non-zero so every condition block reaches the output.
        model.transformer.patch_embed.proj.weight.normal_(std=0.2)
        base = model(noisy, composite, background, mask, timestep)
        changed = {
            "composite": model(noisy, composite + 1, background, mask, timestep),
            "background": model(noisy, composite, background + 1, mask, timestep),
            "mask": model(noisy, composite, background, 1 - mask, timestep),
            "timestep": model(noisy, composite, background, mask, timestep * 0 + 900),
        }
    for name, out in changed.items():
        assert (out - base).abs().max() > 1e-4, f"{layout}: changing the {name} did not change the output"


def test_text_embedding_is_used_and_trainable():
    model = tiny_model("1.0-rope")
    assert model.text_embedding.shape == (1, TINY["max_text_seq_length"], TINY["text_embed_dim"])
    assert model.text_embedding.requires_grad, "the text embedding must be learnable after conversion"
    args = inputs()
    with torch.no_grad():
        before = model(*args)
        model.text_embedding.add_(1.0)
        after = model(*args)
    assert (before - after).abs().max() > 1e-4, "the stored text embedding does not reach the output"


def test_odd_latent_frames_in_15_layout_match_the_pipeline_front_padding():
    """T' = 3 in the 1.5 layout: the first latent frame is repeated in front and its output dropped."""
    model = tiny_model("1.5-rope")
    noisy, composite, background, mask, timestep = inputs(frames=3)
    with torch.no_grad():
        v = model(noisy, composite, background, mask, timestep)
        padded = [torch.cat([x[:, :, :1], x], dim=2) for x in (noisy, composite, background)]
        mask_padded = torch.cat([mask[:, :, :1].expand(-1, -1, 4, -1, -1), mask], dim=2)
        v_even = model(*padded, mask_padded, timestep)
    assert torch.allclose(v, v_even[:, :, 1:], atol=1e-5), "odd T' is not handled as a front-padded even T'"


def test_latent_sizes_not_divisible_by_patch_are_padded_and_cropped():
    model = tiny_model("1.0-rope")
    noisy, composite, background, mask, timestep = inputs(height=5, width=7)
    with torch.no_grad():
        v = model(noisy, composite, background, mask, timestep)
    assert v.shape == noisy.shape


def test_sincos_positions_follow_the_clip_size_not_the_config_size():
    """diffusers recomputes the sin-cos table when the size differs from sample_height/width; check it is used."""
    from diffusers.models.embeddings import get_3d_sincos_pos_embed

    model = tiny_model("1.0-sincos")
    embed = model.transformer.patch_embed
    frames, height, width = 3, 6, 10  # sample size is 8x8 latents, 3 frames
    x = torch.randn(1, frames, model.config.in_channels, height, width)
    text = torch.zeros(1, TINY["max_text_seq_length"], TINY["text_embed_dim"])
    with torch.no_grad():
        with_positions = embed(text, x)
        embed.use_positional_embeddings = False
        without = embed(text, x)
        embed.use_positional_embeddings = True
    table = get_3d_sincos_pos_embed(model.config.inner_dim, (width // 2, height // 2), frames, 1.875, 1.0)
    added = (with_positions - without)[0, TINY["max_text_seq_length"]:]
    assert torch.allclose(added, table.flatten(0, 1).float(), atol=1e-5), "sin-cos positions do not match the clip size"
    with torch.no_grad():
        v = model(*inputs(frames, height, width))
    assert v.shape == (1, 4, frames, height, width)


def _pipeline_rope(config: HarmoVidConfig, latent_frames: int, latent_height: int, latent_width: int):
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline

    fake = SimpleNamespace(transformer=SimpleNamespace(config=config), vae_scale_factor_spatial=8)
    return CogVideoXPipeline._prepare_rotary_positional_embeddings(
        fake, latent_height * 8, latent_width * 8, latent_frames, torch.device("cpu")
    )


@pytest.mark.parametrize(
    "config",
    [
        dict(attention_head_dim=64, sample_height=60, sample_width=90, patch_size=2),  # CogVideoX 1.0 (2B/5B)
        dict(attention_head_dim=64, sample_height=300, sample_width=300, patch_size=2, patch_size_t=2),  # 1.5
    ],
    ids=["1.0", "1.5"],
)
@pytest.mark.parametrize("size", [(13, 60, 90), (4, 30, 44), (22, 96, 60), (2, 68, 120)])
def test_rotary_embedding_equals_the_diffusers_pipeline(config, size):
    config = HarmoVidConfig(**{**TINY, **config, "use_rotary_positional_embeddings": True})
    latent_frames, latent_height, latent_width = size
    cos, sin = rotary_embedding(config, latent_frames, latent_height, latent_width)
    expected_cos, expected_sin = _pipeline_rope(config, latent_frames, latent_height, latent_width)
    assert cos.shape == expected_cos.shape, f"RoPE shape {tuple(cos.shape)} != pipeline {tuple(expected_cos.shape)}"
    assert torch.equal(cos, expected_cos) and torch.equal(sin, expected_sin), f"RoPE differs at {size}"


def test_rotary_embedding_15_extends_beyond_the_training_grid():
    config = HarmoVidConfig(**{**TINY, **LAYOUTS["1.5-rope"], "attention_head_dim": 64})
    small_cos, _ = rotary_embedding(config, 4, 8, 8)  # inside the 8x8 training grid
    big_cos, _ = rotary_embedding(config, 4, 16, 8)  # twice the training height: diffusers' slice table fails
    tokens_per_row = 8 // 2
    assert big_cos.shape[0] == 2 * (16 // 2) * tokens_per_row
    assert torch.equal(big_cos.view(2, 8, 4, -1)[:, :4], small_cos.view(2, 4, 4, -1)), "the grid is not an extension"


def test_fold_mask_keeps_every_alpha_value():
    mask = torch.rand(2, 1, 9, 16, 24)
    folded = fold_mask(mask, latent_frames=3, latent_height=2, latent_width=3)
    assert folded.shape == (2, 256, 3, 2, 3)
    # latent frame 1 covers pixel frames 1..4; cell (1, 2) covers rows 8..15, columns 16..23.
    cell = folded[1, :, 1, 1, 2].view(4, 8, 8)
    assert torch.equal(cell, mask[1, 0, 1:5, 8:16, 16:24]), "folding moved or changed alpha values"
    assert torch.equal(folded[0, :, 0].view(4, 8, 8, 2, 3)[1], folded[0, :, 0].view(4, 8, 8, 2, 3)[0]), (
        "latent frame 0 must hold frame 0 in every temporal slot"
    )


def test_fold_mask_pads_short_masks_and_rejects_larger_ones():
    mask = torch.rand(1, 1, 7, 15, 20)  # 7 frames -> padded to 9; 15x20 -> 16x24
    folded = fold_mask(mask, 3, 2, 3)
    cell = folded[0, :, 2, 1, 2].view(4, 8, 8)  # frames 5..8 (7, 8 repeat frame 6), rows 8..15, cols 16..23
    assert torch.equal(cell[3, :7, :4], mask[0, 0, 6, 8:15, 16:20]), "the last frame was not repeated"
    with pytest.raises(HarmoVidError, match="latents cover at most"):
        fold_mask(torch.rand(1, 1, 13, 16, 24), 3, 2, 3)


def test_null_condition_is_all_zero_and_keeps_shapes():
    _, composite, background, mask, _ = inputs()
    null = null_condition(composite, background, mask)
    for given, empty in zip((composite, background, mask), null):
        assert empty.shape == given.shape and not empty.any()


def test_config_round_trips_through_json_and_rejects_unknown_keys():
    config = HarmoVidConfig(**{**TINY, **LAYOUTS["1.5-rope"]}, scheduler={"snr_shift_scale": 1.0})
    again = HarmoVidConfig.from_json(config.to_json())
    assert again == config
    assert again.in_channels == 3 * 4 + 256
    with pytest.raises(HarmoVidError, match="Unknown HarmoVid config keys: colour"):
        HarmoVidConfig.from_dict({**json.loads(config.to_json()), "colour": 1})
    with pytest.raises(HarmoVidError, match="1.5 needs RoPE"):
        HarmoVidConfig(patch_size_t=2)


def test_bad_latents_give_clear_errors():
    model = tiny_model("1.0-rope")
    noisy, composite, background, mask, timestep = inputs()
    with pytest.raises(HarmoVidError, match="channels but this model takes 4"):
        model(noisy, composite[:, :3], background, mask, timestep)
    with pytest.raises(HarmoVidError, match="same length and size"):
        model(noisy, composite[:, :, :2], background, mask, timestep)
    with pytest.raises(HarmoVidError, match="timestep"):
        model(noisy, composite, background, mask, torch.tensor([1, 2, 3]))


@pytest.mark.parametrize("layout", ["1.0-sincos", "1.5-rope"])
def test_flops_per_step_matches_torch_flop_counter(layout):
    from torch.utils.flop_counter import FlopCounterMode

    from comfy_harmovid.model import flops_per_step, token_count

    extra = {"ofs_embed_dim": 16} if layout == "1.5-rope" else {}
    model = tiny_model(layout, num_layers=2, **extra).requires_grad_(False)
    noisy, composite, background, mask, timestep = inputs(frames=3, height=6, width=10)
    with FlopCounterMode(display=False) as counter:
        model(noisy, composite, background, mask, timestep)
    # FlopCounterMode does not count the CPU attention kernel: add the two S x S products per layer.
    sequence = token_count(model.config, 9, 48, 80) + TINY["max_text_seq_length"]
    attention = 2 * 4 * sequence**2 * model.config.inner_dim
    assert counter.get_total_flops() + attention == flops_per_step(model.config, 9, 48, 80)


def test_count_parameters_counts_the_checkpoint_tensors():
    from comfy_harmovid.model import count_parameters

    model = tiny_model("1.5-rope")
    assert count_parameters(model.config) == sum(t.numel() for t in model.state_dict().values())


@pytest.mark.parametrize("name", ["tiny", "tiny-1.5", "small", "cogvideox-2b", "cogvideox-5b", "cogvideox1.5-5b"])
def test_config_cards_load(name):
    from comfy_harmovid.locations import shipped_path

    card = shipped_path("configs", "models", f"{name}.json")
    config = HarmoVidConfig.from_json(card)
    assert config.in_channels == 3 * config.out_channels + 256
    if name.startswith("cogvideox"):
        assert config.scheduler.get("prediction_type") == "v_prediction", f"{name}: no scheduler config"
        assert (config.num_layers, config.num_attention_heads) == ((30, 30) if name == "cogvideox-2b" else (42, 48))


def test_one_mask_serves_a_whole_batch():
    model = tiny_model("1.0-rope")
    noisy, composite, background, mask, timestep = inputs(batch=2)
    with torch.no_grad():
        shared = model(noisy, composite, background, mask[:1], timestep)
        explicit = model(noisy, composite, background, mask[:1].expand(2, -1, -1, -1, -1), timestep)
    assert torch.equal(shared, explicit)
    with pytest.raises(HarmoVidError, match="mask has batch 2 but the latents have batch 3"):
        model(*[torch.cat([x, x[:1]]) for x in (noisy, composite, background)], mask, torch.tensor([1, 2, 3]))

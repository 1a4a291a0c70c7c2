"""Training: manifest items (shapes, roles, masks), the objective, the trainer, resume and two processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from diffusers import AutoencoderKLCogVideoX

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.footage import read_manifest
from comfy_harmovid.io import write_video
from comfy_harmovid.model import HarmoVidConfig, HarmoVidTransformer, load_transformer, save_vae
from comfy_harmovid.sampling import make_scheduler
from comfy_harmovid.train.data import TrainingClips, remove_person
from comfy_harmovid.train.objective import harmovid_loss
from comfy_harmovid.train.trainer import TrainConfig, train
from conftest import make_portrait_clip

torch.set_num_threads(1)
SIZE, FRAMES = 32, 9
TINY_VAE = dict(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4, latent_channels=4,
                sample_height=32, sample_width=32)
TINY_MODEL = dict(num_layers=1, num_attention_heads=2, attention_head_dim=16, time_embed_dim=16)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Two synthetic portrait clips with mask videos, a background clip, a manifest and a tiny VAE."""
    root = tmp_path_factory.mktemp("train")
    clips = []
    for seed in range(2):
        frames, mask, _ = make_portrait_clip(frames=12, height=SIZE, width=SIZE, seed=seed)
        write_video(root / f"person{seed}.mp4", frames, 12, crf=0)
        write_video(root / f"person{seed}_mask.mp4", mask, 12, crf=0)
        clips.append({"path": f"person{seed}.mp4", "role": "portrait", "mask": f"person{seed}_mask.mp4"})
    ys = torch.linspace(0, 1, SIZE).view(1, SIZE, 1, 1)
    scene = torch.cat([0.6 * ys, 0.3 + 0.0 * ys, 0.9 - 0.5 * ys], dim=-1).expand(12, SIZE, SIZE, 3)
    write_video(root / "scene.mp4", scene.contiguous(), 12, crf=0)
    clips.append({"path": "scene.mp4", "role": "background"})
    (root / "manifest.yaml").write_text(yaml.safe_dump({"clips": clips}))
    torch.manual_seed(0)
    save_vae(AutoencoderKLCogVideoX(**TINY_VAE).eval(), root / "vae.safetensors")
    return root


def run_config(workspace, output: str, **overrides) -> TrainConfig:
    values = dict(stage="harmovid", manifest=str(workspace / "manifest.yaml"), vae=str(workspace / "vae.safetensors"),
                  output_dir=str(workspace / output), model_overrides=TINY_MODEL, frames=FRAMES, height=SIZE,
                  width=SIZE, items=6, steps=4, batch_size=2, learning_rate=3e-3, warmup_steps=1, save_every=2)
    values.update(overrides)
    return TrainConfig(**values).validated()


def test_harmovid_items_have_training_shapes_roles_and_asymmetric_masks(workspace):
    dataset = TrainingClips(read_manifest(workspace / "manifest.yaml"), "harmovid", frames=FRAMES, height=SIZE,
                            width=SIZE, items=3)
    items = {dataset[i]["path"]: dataset[i] for i in range(3)}
    assert set(items) == {"real_to_synthetic", "synthetic_to_real", "lut"}
    for path, item in items.items():
        for name in ("target", "composite", "background"):
            assert item[name].shape == (FRAMES, SIZE, SIZE, 3), f"{path}.{name} is {tuple(item[name].shape)}"
        assert item["mask"].shape == (FRAMES, SIZE, SIZE)
    binary = items["real_to_synthetic"]["mask"]
    assert set(binary.unique().tolist()) <= {0.0, 1.0}, "the real -> synthetic path must use the binary mask"
    soft = items["synthetic_to_real"]["mask"]
    assert ((soft > 0.02) & (soft < 0.98)).any(), "the synthetic -> real path must use the soft pseudo-alpha"
    real = items["synthetic_to_real"]
    person = soft > 0.5
    assert (real["composite"] - real["target"]).abs()[person].mean() > 0.02, "the foreground should be recoloured"
    outside = soft == 0
    assert torch.equal(real["composite"][outside], real["background"][outside]), "outside the alpha: the background"
    assert (real["background"] - real["target"]).abs()[outside].mean() < 0.02, "the background is the real one"


def test_remove_person_recovers_the_background_behind_the_person():
    frames, mask, background = make_portrait_clip(frames=9, height=SIZE, width=SIZE)
    plate = remove_person(frames, mask)
    inside = mask > 0.5
    error = (plate - background).abs()[inside].mean()
    person_error = (frames - background).abs()[inside].mean()
    assert error < 0.3 * person_error, f"plate differs from the true background by {error:.3f} (person: {person_error:.3f})"


def test_manifest_and_config_errors_name_the_problem(workspace, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"clips": [{"path": str(workspace / "scene.mp4"), "role": "actor"}]}))
    with pytest.raises(HarmoVidError, match="role"):
        read_manifest(bad)
    with pytest.raises(HarmoVidError, match="4k \\+ 1"):
        run_config(workspace, "x", frames=8)


def test_condition_dropout_feeds_the_models_null_condition():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, noisy, composite, background, mask, timestep):
            seen.append((composite.abs().sum(), background.abs().sum(), mask.abs().sum()))
            return noisy

    latent = torch.ones(2, 4, 3, 4, 4)
    mask = torch.ones(2, 1, 9, 32, 32)
    scheduler = make_scheduler("ddim", {})
    for probability in (1.0, 0.0):
        harmovid_loss(Spy(), scheduler, latent, latent, latent, mask, generator=torch.Generator().manual_seed(0),
                      uncond_probability=probability)
    assert all(float(v) == 0 for v in seen[0]), "with probability 1 every condition must be the null condition"
    assert all(float(v) > 0 for v in seen[1]), "with probability 0 the condition must be kept"


def fixed_loss(transformer, workspace) -> float:
    from comfy_harmovid.model import load_vae
    from comfy_harmovid.train.trainer import LatentItems

    config = run_config(workspace, "eval")
    dataset = TrainingClips(read_manifest(config.manifest), "harmovid", frames=FRAMES, height=SIZE, width=SIZE,
                            items=config.items, seed=config.seed)
    items = LatentItems(dataset, load_vae(config.vae), "cpu")
    batch = items.batch(range(config.items))
    scheduler = make_scheduler("ddim", transformer.config.scheduler)
    losses = []
    with torch.no_grad():
        for seed in range(4):
            losses.append(float(harmovid_loss(transformer, scheduler, *batch, generator=torch.Generator().manual_seed(seed),
                                              uncond_probability=0.0)))
    return sum(losses) / len(losses)


def test_training_changes_the_weights_and_lowers_the_loss(workspace):
    config = run_config(workspace, "fit", steps=40, save_every=40)
    result = train(config)
    trained = load_transformer(result["transformer"])
    torch.manual_seed(config.seed)
    initial = HarmoVidTransformer(HarmoVidConfig.from_dict({**trained.config.to_dict()}))
    changed = [name for name, value in initial.state_dict().items() if not torch.equal(value, trained.state_dict()[name])]
    assert changed, "no weight changed after 40 training steps"
    before, after = fixed_loss(initial, workspace), fixed_loss(trained, workspace)
    assert after < 0.8 * before, f"held-fixed loss went from {before:.4f} to {after:.4f}; it should fall"


def test_resume_continues_bit_exactly(workspace):
    straight = train(run_config(workspace, "straight"))
    first = train(run_config(workspace, "resumed"), max_steps=2)
    assert first["step"] == 2 and not Path(first["transformer"]).exists()
    resumed = train(run_config(workspace, "resumed"), resume="latest")
    assert resumed["losses"] == straight["losses"][2:], "losses after resuming differ from the uninterrupted run"
    a, b = load_transformer(straight["transformer"]).state_dict(), load_transformer(resumed["transformer"]).state_dict()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"weights differ after resume: {different[:3]}"


def test_two_process_cpu_run_through_accelerate_launch(workspace, tmp_path):
    config = run_config(workspace, str(tmp_path / "ddp"), steps=2, save_every=2)
    config_path = tmp_path / "ddp.yaml"
    values = {k: v for k, v in vars(config).items()}
    config_path.write_text(yaml.safe_dump(values))
    launcher = Path(sys.executable).parent / "accelerate"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # --multi_gpu makes Accelerate spawn the processes (torchrun); without a GPU they join over gloo on the CPU.
    command = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
               "-m", "comfy_harmovid", "train", "harmovid", "--config", str(config_path), "--threads", "1"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, f"accelerate launch failed:\n{done.stderr[-3000:]}"
    state = json.loads((tmp_path / "ddp" / "checkpoint-000002" / "trainer_state.json").read_text())
    assert state["processes"] == 2, f"the run used {state['processes']} process(es), not 2"
    assert (tmp_path / "ddp" / "transformer.safetensors").is_file()


@pytest.mark.parametrize("name", ["tiny", "2b", "5b"])
def test_shipped_configs_load_and_name_existing_model_configs(name):
    from comfy_harmovid.train.trainer import MODEL_CONFIGS

    config = TrainConfig.from_file(name, manifest="m.yaml", vae="vae.safetensors")
    assert (MODEL_CONFIGS / f"{config.model}.json").is_file(), f"{name}: model config {config.model} not found"
    assert (config.frames - 1) % 4 == 0
    with pytest.raises(HarmoVidError, match="manifest"):
        TrainConfig.from_file(name)


def test_real_portrait_clip_gives_a_segmented_deflicker_pair(dev_data, tmp_path):
    manifest = tmp_path / "dev.yaml"
    manifest.write_text(yaml.safe_dump({"clips": [{"path": str(dev_data / "people" / "lp_d0.mp4"), "role": "portrait"}],
                                        "luts": [str(dev_data / "luts" / "warm_cinema.cube")]}))
    item = TrainingClips(read_manifest(manifest), "deflicker", frames=5, height=48, width=48, items=1)[0]
    assert item["path"] == "deflicker" and item["target"].shape == (5, 48, 48, 3)
    coverage = float((item["mask"] > 0.5).float().mean())
    assert 0.05 < coverage < 0.9, f"the built-in segmenter's person covers {coverage:.0%} of a talking-head clip"
    change = (item["composite"] - item["target"]).abs().mean(dim=(1, 2, 3))
    assert change.std() > 0.002, "the flickering foreground should change differently from frame to frame"


def test_accumulation_checkpointing_and_bf16_train_finite_weights(workspace):
    config = run_config(workspace, "options", steps=2, save_every=2, gradient_accumulation=2,
                        gradient_checkpointing=True, mixed_precision="bf16")
    result = train(config)
    assert len(result["losses"]) == 2 and all(torch.isfinite(torch.tensor(result["losses"])))
    weights = load_transformer(result["transformer"]).state_dict()
    initial = load_transformer(Path(config.output_dir) / "initial_transformer.safetensors").state_dict()
    assert all(torch.isfinite(value).all() for value in weights.values())
    assert any(not torch.equal(value, initial[name]) for name, value in weights.items()), "no weight changed"


def test_evaluate_scores_each_model_plain_and_with_detail_transfer(dev_data, workspace):
    result = train(run_config(workspace, "evaluated", steps=2, save_every=2))
    command = [sys.executable, "-m", "comfy_harmovid", "train", "evaluate", "--threads", "1",
               "--vae", str(workspace / "vae.safetensors"), "--model", f"tiny={result['transformer']}",
               "--clips", str(dev_data / "people" / "lav_man4.mp4"), "--luts", str(dev_data / "luts" / "warm_cinema.cube"),
               "--frames", "5", "--size", "32", "--steps", "2", "--detail-radius", "2"]
    scores = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    assert scores["cases"] == ["lav_man4/warm_cinema"] and scores["settings"]["detail_radius"] == 2.0
    assert set(scores["mean"]) == {"input (do nothing)", "built-in HarmoIm (statistics)", "VAE round trip of the original",
                                   "tiny", "tiny + detail transfer"}
    plain, detail = scores["mean"]["tiny"], scores["mean"]["tiny + detail transfer"]
    assert plain != detail and all(0 < value < 100 for value in scores["mean"].values()), scores["mean"]

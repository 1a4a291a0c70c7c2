"""The Accelerate training loop for stage 2 (deflicker) and stage 3 (HarmoVid): one CPU to many GPUs.

Every random draw of optimizer step ``s`` (which items, timesteps, noise, condition dropout) comes
from generators seeded by ``(seed, s, micro-batch, process)``, so the data position and the RNG are
fixed by the step alone and resuming from a checkpoint continues bit-exactly. Items are encoded by
the frozen VAE once and kept (the tiny config's data fits in memory; for large runs set ``items`` to
the size of your set and let each process encode what it draws).
"""

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional

import torch

from ..errors import HarmoVidError
from ..footage import read_manifest
from ..locations import shipped_path
from ..model import HarmoVidConfig, HarmoVidTransformer, load_transformer, load_vae
from ..model.layout import pad_by_repeating
from ..sampling import make_scheduler
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .data import TrainingClips, check_frame_count
from .objective import harmovid_loss

MODEL_CONFIGS = shipped_path("configs", "models")
TRAINING_CONFIGS = shipped_path("configs", "training")


@dataclass
class TrainConfig:
    """One training run (a YAML file such as the shipped ``comfy_harmovid/resources/configs/training/*.yaml`` sets these fields)."""

    stage: str = "harmovid"  # "deflicker" (stage 2) or "harmovid" (stage 3)
    manifest: str = ""  # the data manifest (see data.py)
    vae: str = ""  # the frozen VAE: a save_vae file or a diffusers CogVideoX (vae) folder
    output_dir: str = "runs/harmovid"
    model: str = "tiny"  # a shipped model config name (resources/configs/models) or a config JSON path (ignored when init is given)
    model_overrides: Dict = field(default_factory=dict)
    init: str = ""  # start from these transformer weights (e.g. a converted CogVideoX, or stage 2)
    frames: int = 9
    height: int = 64
    width: int = 64
    items: int = 64  # distinct training pairs (clip windows) made from the manifest
    cache_latents: bool = True  # keep encoded items in memory (small runs); off: re-make each item when drawn
    steps: int = 200  # optimizer steps
    batch_size: int = 2  # per process and micro-batch
    gradient_accumulation: int = 1
    learning_rate: float = 1e-3
    warmup_steps: int = 20
    final_lr_ratio: float = 0.1  # the cosine decay ends at this fraction of learning_rate
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    uncond_probability: float = 0.1  # how often the condition is replaced by model.null_condition
    mixed_precision: str = "no"  # "no", "bf16" or "fp16" (Accelerate)
    gradient_checkpointing: bool = False
    seed: int = 0
    # Stage 1 with IC-Light: the real -> synthetic targets are relit by SD1.5 (a single-file checkpoint) + the
    # IC-Light fbc offset when both are given (else the built-in HarmoIm); relight_settings: RelightSettings fields.
    relight_sd15: str = ""
    relight_iclight: str = ""
    relight_tokenizer: str = ""
    relight_settings: Dict = field(default_factory=dict)
    save_every: int = 100
    log_every: int = 10

    @classmethod
    def from_file(cls, path, **overrides) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            named = TRAINING_CONFIGS / f"{path}.yaml"
            if not named.is_file():
                raise HarmoVidError(f"training config {path} not found; pass a YAML/JSON file or a shipped name (tiny, 2b, 5b).")
            path = named
        import yaml

        data = yaml.safe_load(path.read_text()) or {}
        data.update({key: value for key, value in overrides.items() if value is not None})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HarmoVidError(f"training config {path}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**data).validated()

    def validated(self) -> "TrainConfig":
        check_frame_count(self.frames)
        if self.stage not in ("deflicker", "harmovid"):
            raise HarmoVidError(f"stage must be 'deflicker' or 'harmovid', got {self.stage!r}.")
        if not self.manifest or not self.vae:
            raise HarmoVidError("a training config needs 'manifest' (your clips) and 'vae' (a VAE checkpoint).")
        if bool(self.relight_sd15) != bool(self.relight_iclight):
            raise HarmoVidError("relighting the training targets with IC-Light needs both relight_sd15 (an SD1.5 "
                                "checkpoint) and relight_iclight (iclight_sd15_fbc.safetensors).")
        for name in ("steps", "batch_size", "gradient_accumulation", "items", "save_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise HarmoVidError(f"{name} must be at least 1, got {getattr(self, name)}.")
        return self


def build_relighter(config: TrainConfig, device):
    """The IC-Light relighter of stage 1 when its weights are given, else None (the built-in HarmoIm)."""
    if not config.relight_sd15:
        return None
    from ..relight import ICLightRelighter, RelightSettings, load_iclight

    known = {f.name for f in dataclasses.fields(RelightSettings)}
    unknown = sorted(set(config.relight_settings) - known)
    if unknown:
        raise HarmoVidError(f"relight_settings: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    models = load_iclight(config.relight_sd15, config.relight_iclight, tokenizer=config.relight_tokenizer or None,
                          dtype="fp16" if device.type == "cuda" else "fp32", device=device)
    return ICLightRelighter(models, RelightSettings(**config.relight_settings))


def build_transformer(config: TrainConfig) -> HarmoVidTransformer:
    if config.init:
        return load_transformer(config.init).train()
    path = Path(config.model)
    if not path.is_file():
        path = MODEL_CONFIGS / f"{config.model}.json"
    model_config = HarmoVidConfig.from_json(path)
    model_config = HarmoVidConfig.from_dict({**model_config.to_dict(), **config.model_overrides})
    torch.manual_seed(config.seed)  # the same initial weights in every process
    return HarmoVidTransformer(model_config)


class LatentItems:
    """Training pairs as latents, made and encoded when drawn (and kept when ``cache``)."""

    def __init__(self, dataset: TrainingClips, vae, device, cache: bool = True):
        self.dataset, self.vae, self.device, self.cache, self._cache = dataset, vae, device, cache, {}

    @torch.no_grad()
    def __getitem__(self, index: int):
        if index not in self._cache:
            item = self.dataset[index]
            latents = [self.vae.encode(item[name]).to(self.device) for name in ("target", "composite", "background")]
            frames, height, width = self.vae.padded_shape(*item["mask"].shape)
            mask = item["mask"][None, None]  # [1, 1, T, H, W], padded as the VAE pads the frames
            mask = pad_by_repeating(pad_by_repeating(pad_by_repeating(mask, 2, frames), 3, height), 4, width)
            if not self.cache:
                return (*latents, mask.to(self.device))
            self._cache[index] = (*latents, mask.to(self.device))
        return self._cache[index]

    def batch(self, indices):
        parts = list(zip(*(self[i] for i in indices)))
        return [torch.cat(part) for part in parts]


def _generator(*keys: int) -> torch.Generator:
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + int(key)) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


def batch_indices(config: TrainConfig, step: int, micro: int, process: int, processes: int):
    """Which items process ``process`` trains on in micro-batch ``micro`` of optimizer step ``step``:
    each epoch is a seeded permutation of all items, consumed in order by all processes together."""
    first = ((step * config.gradient_accumulation + micro) * processes + process) * config.batch_size
    indices = []
    for position in range(first, first + config.batch_size):
        epoch, offset = divmod(position, config.items)
        order = torch.randperm(config.items, generator=_generator(config.seed, 7, epoch))
        indices.append(int(order[offset]))
    return indices


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``final_lr_ratio`` of the peak at the last step."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    ratio = config.final_lr_ratio + (1 - config.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.learning_rate * ratio


def train(config: TrainConfig, *, resume: Optional[str] = None, max_steps: Optional[int] = None,
          log: Optional[Callable[[dict], None]] = None) -> dict:
    """Run (or continue) a training run; returns ``{"losses": [...], "transformer": path, "step": n}``.

    ``resume``: a checkpoint folder, or ``"latest"`` for the newest in ``output_dir``. ``max_steps``
    stops early (at that global step) without changing the schedule, e.g. to test resuming.
    ``log(record)`` receives ``{"step", "loss", "mean_loss", "lr", "seconds"}`` every ``log_every`` steps
    (main process; ``mean_loss`` over the steps since the last record).
    """
    from accelerate import Accelerator

    accelerator = Accelerator(
        mixed_precision=config.mixed_precision, gradient_accumulation_steps=config.gradient_accumulation, cpu=not torch.cuda.is_available()
    )
    output_dir = Path(config.output_dir)
    transformer = build_transformer(config)
    if config.gradient_checkpointing:
        transformer.transformer.enable_gradient_checkpointing()
    transformer.train()
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)

    step = 0
    if resume:
        folder = latest_checkpoint(output_dir) if resume == "latest" else Path(resume)
        if folder is None:
            raise HarmoVidError(f"no checkpoint to resume in {output_dir}; drop --resume to start a new run.")
        step = load_checkpoint(folder, transformer, optimizer)
    elif accelerator.is_main_process:  # the starting weights, e.g. to compare trained with untrained
        from ..model import save_transformer

        save_transformer(transformer, output_dir / "initial_transformer.safetensors")
    model, optimizer = accelerator.prepare(transformer, optimizer)
    scheduler = make_scheduler("ddim", transformer.config.scheduler)

    vae = load_vae(config.vae, device=accelerator.device)
    if vae.latent_channels != transformer.config.out_channels:
        raise HarmoVidError(
            f"the VAE makes {vae.latent_channels}-channel latents but the model takes {transformer.config.out_channels}; "
            "use the VAE the model belongs to."
        )
    dataset = TrainingClips(read_manifest(config.manifest), config.stage, frames=config.frames, height=config.height,
                            width=config.width, items=config.items, seed=config.seed,
                            relighter=build_relighter(config, accelerator.device))
    items = LatentItems(dataset, vae, accelerator.device, config.cache_latents)

    losses, started, last = [], time.time(), min(config.steps, max_steps or config.steps)
    rank, world = accelerator.process_index, accelerator.num_processes
    while step < last:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        step_loss = 0.0
        for micro in range(config.gradient_accumulation):
            target, composite, background, mask = items.batch(batch_indices(config, step, micro, rank, world))
            with accelerator.accumulate(model), accelerator.autocast():
                loss = harmovid_loss(model, scheduler, target, composite, background, mask,
                                     generator=_generator(config.seed, 11, step, micro, rank),
                                     uncond_probability=config.uncond_probability)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            step_loss += float(accelerator.reduce(loss.detach(), "mean")) / config.gradient_accumulation
        step += 1
        losses.append(step_loss)
        if accelerator.is_main_process and log is not None and (step % config.log_every == 0 or step == last):
            recent = losses[-config.log_every:]
            log({"step": step, "loss": step_loss, "mean_loss": sum(recent) / len(recent),
                 "lr": learning_rate(config, step - 1), "seconds": time.time() - started})
        if step % config.save_every == 0 or step == last:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(output_dir / f"checkpoint-{step:06d}", accelerator.unwrap_model(model), optimizer,
                                step, {"processes": world, "config": dataclasses.asdict(config)})
    accelerator.wait_for_everyone()
    final = output_dir / "transformer.safetensors"
    if accelerator.is_main_process and step >= config.steps:
        from ..model import save_transformer

        save_transformer(accelerator.unwrap_model(model), final)
    # Free the DDP wrapper (and Accelerate's references to it) before its process group goes, not when
    # this function returns: a two-process run once hung there, one rank waiting inside gloo after training.
    del model, optimizer
    accelerator.free_memory()
    accelerator.end_training()
    # Accelerate keeps one state per process; forget this run's mixed precision and accumulation so a
    # later train() in the same process can choose others (the distributed setup itself is kept).
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    return {"losses": losses, "transformer": str(final), "step": step}

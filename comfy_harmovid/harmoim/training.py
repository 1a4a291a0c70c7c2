"""Training the learned HarmoIm on real portrait footage, on the CPU.

Data: frames sampled evenly from each portrait clip of a training manifest (the format of
``comfy_harmovid.footage``; a still image counts as a clip of one frame), masked by the built-in
segmenter (or the clip's own mask video) and softened by the pseudo-alpha, held in memory at a small
size. Each step takes a batch of them at a random crop and flip, drawing a clip or still first and then
one of its frames (``per_source``), so that a long clip does not outweigh many stills. Some samples get
a binary alpha instead of the soft one (``binary_alpha``), as a segmenter's mask gives at inference.

Most frames are first given a random grade as a whole (person and scene alike: a new "scene light", so
the network cannot learn a fixed skin tone and must read the light from the scene); some people then
get a small grade of their own that counts as natural; then each person gets a random grade
(``grades.py``) and is composited back over its frame through the alpha, and the network is asked for
the colour maps that restore the person. The loss is the log of the foreground mean squared error,
averaged over the batch: the benchmark's mean fPSNR, so a sample that is already right (ungraded)
counts as much as a badly graded one, and changing a person who fits costs dearly.

Everything depends on the seed: the same config and data give the same weights.
"""

import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from ..alpha import pseudo_alpha
from ..color import Lut, read_cube
from ..errors import HarmoVidError
from ..filters import resize
from ..io import iter_mask_chunks, iter_video_chunks, probe_video
from ..progress import ProgressCallback, report
from .grades import GradeOptions, random_grades
from .learned import area_resize
from .network import HarmoImConfig, HarmoImNet, check_known_fields
from .transform import apply_through_alpha

SEGMENT_SIZE = 256  # short side the built-in segmenter and pseudo-alpha run at while building the pool
LOSS_FLOOR = 1e-4  # MSE floor inside the log (40 dB): a perfect sample does not dominate the mean


@dataclass
class HarmoImTrainConfig:
    network: HarmoImConfig = field(default_factory=HarmoImConfig)
    grades: GradeOptions = field(default_factory=GradeOptions)
    frames_per_clip: int = 64  # frames sampled evenly from each clip
    pool_size: int = 128  # frames are kept at pool_size x pool_size; crops are area-shrunk to the input size
    min_crop: float = 0.7  # smallest crop side, as a share of the pool frame
    binary_alpha: float = 0.0  # share of samples whose alpha is cut to a binary mask (as a segmenter's)
    per_source: bool = False  # draw a clip or still first, then one of its frames (a still counts as a clip)
    scene_grade: float = 0.6  # share of frames given a random grade as a whole before the person's grade
    person_variation: float = 0.5  # share of people given a small grade of their own that counts as natural
    max_person_variation: float = 0.35  # how much of a random grade that natural variation is, at most
    steps: int = 2000
    batch_size: int = 24
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    seed: int = 0
    threads: int = 0  # torch threads (0: torch's default)
    log_every: int = 50

    @classmethod
    def from_dict(cls, values: dict) -> "HarmoImTrainConfig":
        values = dict(values)
        check_known_fields(cls, values, "HarmoIm training setting(s)")
        network = HarmoImConfig.from_dict(values.pop("network", {}))
        grade_values = values.pop("grades", {})
        check_known_fields(GradeOptions, grade_values, "grade setting(s)")
        return cls(network=network, grades=GradeOptions(**grade_values), **values)

    @classmethod
    def from_file(cls, path) -> "HarmoImTrainConfig":
        import yaml

        path = Path(path)
        if not path.is_file():
            raise HarmoVidError(f"HarmoIm training config {path} does not exist.")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise HarmoVidError(f"HarmoIm training config {path} is not valid YAML ({error}).") from error
        return cls.from_dict(values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class FramePool:
    """Training frames ``[N, S, S, 3]`` and their soft alpha ``[N, S, S]`` (S = pool size), with the clip
    each frame came from."""

    frames: torch.Tensor
    alpha: torch.Tensor
    sources: List[str]

    @functools.cached_property
    def frames_by_source(self) -> List[List[int]]:
        """The pool indices of each source's frames, sources in first-seen order."""
        groups = {}
        for index, source in enumerate(self.sources):
            groups.setdefault(source, []).append(index)
        return list(groups.values())


def _sample_clip(path: Path, mask_path: Optional[Path], count: int):
    """``count`` evenly spaced frames of ``path`` at the segmenter's working size (and its mask's, if given)."""
    info = probe_video(path)
    wanted = set(np.linspace(0, info.frame_count - 1, min(count, info.frame_count)).round().astype(int).tolist())
    scale = min(1.0, SEGMENT_SIZE / min(info.height, info.width))
    size = (max(2, round(info.height * scale)), max(2, round(info.width * scale)))
    masks = iter_mask_chunks(mask_path, 16) if mask_path is not None else None
    frames, mask_frames, index = [], [], 0
    for chunk in iter_video_chunks(path, 16):
        mask_chunk = next(masks) if masks is not None else None
        picks = [t for t in range(chunk.shape[0]) if index + t in wanted]
        if picks:
            frames.append(resize(chunk[picks].permute(0, 3, 1, 2), size).permute(0, 2, 3, 1))
            if mask_chunk is not None:
                mask_frames.append(resize(mask_chunk[picks], size))
        index += chunk.shape[0]
    frames = torch.cat(frames).clamp(0.0, 1.0)
    return frames, (torch.cat(mask_frames).round() if mask_frames else None)


def build_pool(clips, frames_per_clip: int, pool_size: int, progress: ProgressCallback = None) -> FramePool:
    """Sample, mask and shrink the training frames of ``clips`` (``ClipEntry`` items with role portrait)."""
    from ..segment import segment_portrait

    all_frames, all_alpha, sources = [], [], []
    square = (pool_size, pool_size)
    for number, clip in enumerate(clips, 1):
        frames, mask = _sample_clip(clip.path, clip.mask, frames_per_clip)
        if mask is None:  # frames are far apart: no temporal smoothing
            mask = segment_portrait(frames, temporal_smoothing=0.0)
        keep = mask.flatten(1).mean(1) > 0.01  # frames where the person is visible
        if not bool(keep.any()):
            raise HarmoVidError(f"{clip.path}: no person found in the sampled frames; remove it from the manifest.")
        frames, mask = frames[keep], mask[keep]
        alpha = pseudo_alpha(frames, mask, temporal_smoothing=0.0)
        all_frames.append(resize(frames.permute(0, 3, 1, 2), square).permute(0, 2, 3, 1))
        all_alpha.append(resize(alpha, square))
        sources += [clip.path.name] * frames.shape[0]
        report(progress, number, len(clips))
    if not all_frames:
        raise HarmoVidError("the manifest lists no portrait clips; HarmoIm training needs people (role: portrait).")
    return FramePool(torch.cat(all_frames).clamp(0, 1).contiguous(), torch.cat(all_alpha).clamp(0, 1), sources)


def _random_crop(image: torch.Tensor, input_size: int, min_crop: float, generator: torch.Generator) -> torch.Tensor:
    """A random square crop of ``image`` ``[S, S, C]``, mirrored half of the time, shrunk to ``input_size`` as
    inference shrinks frames (``area_resize``)."""
    size = image.shape[0]
    side = int(size * (min_crop + (1 - min_crop) * float(torch.rand((), generator=generator))))
    top, left = (int(torch.randint(size - side + 1, (), generator=generator)) for _ in range(2))
    crop = image[top:top + side, left:left + side]
    if bool(torch.rand((), generator=generator) < 0.5):
        crop = crop.flip(1)
    small = area_resize(np.ascontiguousarray(crop.numpy()), input_size)
    return torch.from_numpy(small)


def _frame_indices(pool: FramePool, count: int, per_source: bool, generator: torch.Generator) -> List[int]:
    """``count`` random pool frames: uniform over frames, or uniform over sources, then over their frames."""
    if not per_source:
        return torch.randint(pool.frames.shape[0], (count,), generator=generator).tolist()
    groups = pool.frames_by_source
    picks = []
    for group in torch.randint(len(groups), (count,), generator=generator).tolist():
        picks.append(groups[group][int(torch.randint(len(groups[group]), (), generator=generator))])
    return picks


def sample_batch(pool: FramePool, batch_size: int, input_size: int, min_crop: float, generator: torch.Generator,
                 per_source: bool = False):
    """A batch of random crops (resized to ``input_size``), half of them mirrored: ``([B, S, S, 3], [B, S, S])``."""
    frames, alpha = [], []
    for index in _frame_indices(pool, batch_size, per_source, generator):
        crop = _random_crop(torch.cat([pool.frames[index], pool.alpha[index, ..., None]], -1), input_size,
                            min_crop, generator)
        frames.append(crop[..., :3])
        alpha.append(crop[..., 3])
    return torch.stack(frames).clamp(0, 1), torch.stack(alpha).clamp(0, 1)


def foreground_log_mse(output: torch.Tensor, target: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``log(fMSE + floor)``: fMSE is the alpha-weighted squared error per image."""
    weight = alpha.unsqueeze(-1)
    mse = (weight * (output - target) ** 2).flatten(1).sum(1) / (3 * alpha.flatten(1).sum(1)).clamp(min=1.0)
    return torch.log(mse + LOSS_FLOOR).mean()


def _mix_rows(original: torch.Tensor, changed: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """Per image ``original + amount * (changed - original)``; ``amount`` ``[B]``."""
    return original + amount.view(-1, 1, 1, 1) * (changed - original)


def training_step(net: HarmoImNet, frames: torch.Tensor, alpha: torch.Tensor, luts: Sequence[Lut],
                  config: HarmoImTrainConfig, generator: torch.Generator) -> torch.Tensor:
    """The loss of one batch: relight some scenes, vary and grade the people, composite them back, restore them.

    Two changes count as the truth, so the network learns to leave them alone: a grade of the whole
    frame (a scene lit differently) and a small grade of the person alone (people differ from their
    surroundings in ways no method can know). Only the person's grade on top of those is to be undone.
    """
    count = frames.shape[0]
    binary = (torch.rand(count, generator=generator) < config.binary_alpha).view(-1, 1, 1)
    alpha = torch.where(binary, (alpha > 0.5).to(alpha), alpha)
    weight = alpha.unsqueeze(-1)
    relit = (torch.rand(count, generator=generator) < config.scene_grade).float()
    frames = _mix_rows(frames, random_grades(frames, luts, generator, config.grades), relit)
    varied = (torch.rand(count, generator=generator) < config.person_variation).float()
    amount = varied * config.max_person_variation * torch.rand(count, generator=generator)
    natural = _mix_rows(frames, random_grades(frames, luts, generator, config.grades), amount)
    target = frames + weight * (natural - frames)
    composite = target + weight * (random_grades(target, luts, generator, config.grades) - target)
    maps = net.predict_maps(composite.permute(0, 3, 1, 2), alpha.unsqueeze(1))
    restored = apply_through_alpha(composite, alpha, maps)
    return foreground_log_mse(restored, target, alpha)


def _learning_rate(config: HarmoImTrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_harmoim(
    config: HarmoImTrainConfig,
    pool: FramePool,
    lut_paths: Sequence[Path] = (),
    *,
    log: Callable[[dict], None] = None,
    progress: ProgressCallback = None,
):
    """Train a ``HarmoImNet`` on ``pool``; returns ``(net, record)`` where ``record`` says how it was made."""
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    luts = [read_cube(path) for path in lut_paths]
    net = HarmoImNet(config.network)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    started, recent = time.monotonic(), []
    net.train()
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(config, step)
        frames, alpha = sample_batch(pool, config.batch_size, config.network.input_size, config.min_crop, generator,
                                     config.per_source)
        loss = training_step(net, frames, alpha, luts, config, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        recent.append(loss.item())
        if log is not None and ((step + 1) % config.log_every == 0 or step + 1 == config.steps):
            # -10 log10(MSE): the batch's mean foreground PSNR (capped by the loss floor).
            log({"step": step + 1, "fpsnr": -10 * float(np.mean(recent)) / math.log(10),
                 "lr": optimizer.param_groups[0]["lr"], "seconds": time.monotonic() - started})
            recent = []
        report(progress, step + 1, config.steps)
    net.eval()
    record = {
        "config": config.to_dict(),
        "clips": sorted(set(pool.sources)),
        "frames": int(pool.frames.shape[0]),
        "luts": [Path(path).name for path in lut_paths],
        "seconds": round(time.monotonic() - started, 1),
        "torch": torch.__version__,
    }
    return net, record

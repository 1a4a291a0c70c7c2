"""Shared test data: small synthetic clips made here, and the real dev clips when present."""

import math
import os
from pathlib import Path

import pytest
import torch

DEV_DATA = Path(os.environ.get("HARMOVID_DEV_DATA", Path(__file__).resolve().parents[1].parent / "shared/data/dev"))


def make_portrait_clip(frames: int = 8, height: int = 64, width: int = 80, seed: int = 0):
    """A textured 'person' (head and shoulders ellipses) moving over a gradient background.

    Returns (frames [T,H,W,3], mask [T,H,W] with 1 = person, background [T,H,W,3]).
    """
    generator = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, height).view(height, 1).expand(height, width)
    xs = torch.linspace(0, 1, width).view(1, width).expand(height, width)
    texture = torch.rand(height, width, 3, generator=generator) * 0.1
    clip, masks, backgrounds = [], [], []
    for t in range(frames):
        shift = 0.08 * math.sin(t / max(frames - 1, 1) * math.pi)
        background = torch.stack([0.2 + 0.5 * xs, 0.3 + 0.2 * ys, 0.6 - 0.3 * xs], dim=-1)
        head = ((xs - 0.5 - shift) / 0.16) ** 2 + ((ys - 0.35) / 0.2) ** 2 <= 1
        body = ((xs - 0.5 - shift) / 0.35) ** 2 + ((ys - 1.0) / 0.4) ** 2 <= 1
        mask = (head | body).float()
        person = torch.stack([0.8 - 0.2 * ys, 0.55 + 0.1 * xs, 0.45 + 0.0 * xs], dim=-1) + texture
        frame = background * (1 - mask[..., None]) + person.clamp(0, 1) * mask[..., None]
        clip.append(frame)
        masks.append(mask)
        backgrounds.append(background)
    return torch.stack(clip), torch.stack(masks), torch.stack(backgrounds)


@pytest.fixture
def portrait_clip():
    return make_portrait_clip()


@pytest.fixture
def dev_data() -> Path:
    if not DEV_DATA.is_dir():
        pytest.skip(f"real dev clips not found at {DEV_DATA} (set HARMOVID_DEV_DATA to their folder)")
    return DEV_DATA

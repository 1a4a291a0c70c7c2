#!/usr/bin/env python
"""Measure natural skin for the learned HarmoIm's skin balance (``comfy_harmovid/harmoim/skin.py``): the
mean and covariance of the median skin colour of every person in a manifest, ungraded.

    python scripts/make_skin_prior.py                      # the shipped prior, from the v3 training manifest
    python scripts/make_skin_prior.py --manifest WORKDIR/A_all.yaml -o WORKDIR/A_skin-prior.json

Each clip or still: its first 4 frames at 256 px, the built-in segmenter's mask, the person's pixels of
skin hue (``skin.natural_skin_pixels``); a person with fewer than 50 such pixels is left out.
"""

import argparse
import json
from pathlib import Path

import torch
import yaml

from comfy_harmovid.atomic import atomic_output
from comfy_harmovid.evaluation.dev_data import load_clip
from comfy_harmovid.harmoim.skin import natural_skin_pixels, skin_chroma
from comfy_harmovid.segment import segment_portrait

ROOT = Path(__file__).resolve().parents[1]
FRAMES, SIZE, MIN_PIXELS = 4, 256, 50


def measure(manifest: Path) -> dict:
    sources = [(manifest.parent / c).resolve() for c in yaml.safe_load(manifest.read_text())["clips"]]
    points = []
    for path in sources:
        frames = load_clip(path, FRAMES, SIZE, min_frames=1)  # a still is a clip of one frame
        skin = natural_skin_pixels(frames, segment_portrait(frames, temporal_smoothing=0.0))
        if int(skin.sum()) < MIN_PIXELS:
            print(f"{path.name}: too little skin, left out")
            continue
        points.append(skin_chroma(frames[skin]))
        print(f"{path.name}: log red/green {float(points[-1][0]):+.3f}, log blue/green {float(points[-1][1]):+.3f}")
    points = torch.stack(points).double()
    return {"mean": points.mean(0).tolist(), "covariance": torch.cov(points.T).tolist(), "people": len(points),
            "manifest": str(manifest.relative_to(ROOT) if manifest.is_relative_to(ROOT) else manifest),
            "frames": FRAMES, "size": SIZE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=ROOT / "models" / "harmoim" / "harmoim-v3-manifest.yaml")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "comfy_harmovid" / "resources" / "harmoim" / "skin-prior.json")
    args = parser.parse_args()
    prior = measure(args.manifest.resolve())
    with atomic_output(args.output) as partial:
        partial.write_text(json.dumps(prior, indent=1) + "\n")
    print(f"wrote {args.output}: {prior['people']} people, mean {[round(v, 3) for v in prior['mean']]}")


if __name__ == "__main__":
    main()

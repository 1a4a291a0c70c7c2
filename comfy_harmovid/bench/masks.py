"""``harmovid bench masks``: portrait mask quality against a green-screen key.

On a talking head filmed on a green screen (dev clip people/lp_d0.mp4), the chroma key gives a near
ground-truth alpha. Against it we measure, for the built-in segmenter with and without temporal
smoothing, the pseudo-alpha made from its binary mask, and optionally SAM 2:

- IoU with the key (both at 0.5), and the mean absolute alpha error over the picture and inside a
  band around the key's boundary (where the errors are);
- mask flicker: the mean motion-compensated change between consecutive frames (lower = steadier);
- the paper's boundary metrics (Laplacian variance and Tenengrad in a narrow band around the key's
  boundary) of composites over a background video made with each alpha; the composite made with
  the key itself is the reference for what a correct edge scores;
- time per frame (wall and process CPU, after one warm-up frame that loads the libraries).

``--flicker-clips`` adds a second table: the built-in mask's flicker with and without temporal
smoothing on other clips (no key needed), e.g. ones with head motion or a moving camera.
"""

import json
import time
from pathlib import Path

import torch

from ..alpha import pseudo_alpha
from ..composite import alpha_over, decontaminate_foreground
from ..errors import HarmoVidError
from ..evaluation import metrics
from ..evaluation.dev_data import dev_data_dir, load_clip
from ..filters import resize
from ..progress import progress_bar
from ..segment import segment_portrait, segment_with_sam2
from ..segment.chroma import chroma_key, picture_area
from ..segment.portrait import DEFAULT_TEMPORAL_SMOOTHING
from ..segment.temporal import mask_flicker

COLUMNS = (
    ("iou", "IoU vs key", "{:.4f}"),
    ("mae", "MAE vs key", "{:.4f}"),
    ("mae_band", "MAE edge band", "{:.4f}"),
    ("flicker", "Flicker", "{:.2e}"),
    ("edge_laplacian_var", "Edge LapVar", "{:.1f}"),
    ("edge_tenengrad", "Edge Tenengrad", "{:.0f}"),
    ("ms_per_frame", "ms/frame", "{:.1f}"),
    ("cpu_ms_per_frame", "CPU ms/frame", "{:.1f}"),
)


def cover(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Scale and centre-crop ``[T, h, w, 3]`` frames to fill ``height`` x ``width``."""
    scale = max(height / frames.shape[1], width / frames.shape[2])
    size = (max(height, round(frames.shape[1] * scale)), max(width, round(frames.shape[2] * scale)))
    scaled = resize(frames.permute(0, 3, 1, 2), size).permute(0, 2, 3, 1).clamp(0, 1)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return scaled[:, top : top + height, left : left + width].contiguous()


def score_alpha(alpha, key, band, frames, background, edge_band: int) -> dict:
    error = (alpha - key).abs()
    composite = alpha_over(decontaminate_foreground(frames, alpha), background, alpha)
    sharpness = metrics.boundary_sharpness(composite, key, band=edge_band)
    return {
        "iou": float(((alpha > 0.5) & (key > 0.5)).sum() / ((alpha > 0.5) | (key > 0.5)).sum()),
        "mae": float(error.mean()),
        "mae_band": float(error[band].mean()),
        "flicker": mask_flicker(alpha, frames),
        "edge_laplacian_var": sharpness["laplacian_variance"],
        "edge_tenengrad": sharpness["tenengrad"],
    }


def pseudo_alpha_settings(args) -> dict:
    """The Pseudo-Alpha settings given on the command line (the rest keep their defaults)."""
    settings = {"band_width": args.alpha_band, "edge_awareness": args.alpha_edge}
    return {name: value for name, value in settings.items() if value is not None}


def timed(function, frames: int):
    """``(result, {"ms_per_frame": wall, "cpu_ms_per_frame": process CPU})``; on a busy machine the
    CPU time (all threads) is the steadier measure."""
    start, cpu_start = time.perf_counter(), time.process_time()
    result = function()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return result, {"ms_per_frame": 1000.0 * wall / frames, "cpu_ms_per_frame": 1000.0 * cpu / frames}


def run_benchmark(args, progress=None) -> dict:
    clip_path, background_path = _dev_path(args.clip), _dev_path(args.background)
    frames = load_clip(clip_path, args.frames, args.size)
    rows, cols = picture_area(frames)  # green-screen clips are often letterboxed: score the picture only
    frames = frames[:, rows, cols].contiguous()
    count, height, width = frames.shape[:3]
    background = cover(load_clip(background_path, count, max(height, width)), height, width)
    if background.shape[0] < count:
        raise HarmoVidError(f"{background_path} has {background.shape[0]} frames; need {count} (lower --frames).")
    key = chroma_key(frames)
    band = metrics.boundary_band(key, band=args.edge_band)

    segment_portrait(frames[:1])  # warm-up: the first call loads mediapipe's graph
    alphas, times = {}, {}
    alphas["built-in, no smoothing"], times["built-in, no smoothing"] = timed(
        lambda: segment_portrait(frames, temporal_smoothing=0.0), count
    )
    binary, times["built-in"] = timed(lambda: segment_portrait(frames, temporal_smoothing=args.smoothing), count)
    alphas["built-in"] = binary
    alphas["pseudo-alpha of built-in"], times["pseudo-alpha of built-in"] = timed(
        lambda: pseudo_alpha(frames, binary, **pseudo_alpha_settings(args)), count
    )
    if args.sam2:
        alphas["SAM 2 (auto prompt)"], times["SAM 2 (auto prompt)"] = timed(
            lambda: segment_with_sam2(frames, checkpoint=args.sam2), count
        )
    alphas["chroma key (reference)"] = key

    results = {}
    for step, (name, alpha) in enumerate(alphas.items()):
        results[name] = score_alpha(alpha, key, band, frames, background, args.edge_band)
        results[name].update(times.get(name, {}))
        if progress is not None:
            progress(step + 1, len(alphas))
    return {
        "clip": str(clip_path),
        "background": str(background_path),
        "frames": count,
        "size": [height, width],
        "temporal_smoothing": args.smoothing,
        "edge_band": args.edge_band,
        "pseudo_alpha_settings": pseudo_alpha_settings(args),
        "results": results,
    }


def flicker_benchmark(paths, frames: int, size: int, smoothing: float) -> dict:
    """Built-in mask flicker without and with temporal smoothing, per clip."""
    results = {}
    for path in paths:
        clip = load_clip(path, frames, size)
        raw = mask_flicker(segment_portrait(clip, temporal_smoothing=0.0), clip)
        smoothed = mask_flicker(segment_portrait(clip, temporal_smoothing=smoothing), clip)
        results[Path(path).name] = {
            "frames": clip.shape[0],
            "flicker_no_smoothing": raw,
            "flicker_smoothed": smoothed,
            "reduction": 1.0 - smoothed / raw if raw > 0 else 0.0,
        }
    return results


def _dev_path(name: str) -> Path:
    """``name`` as given when it exists, else ``name`` inside the dev data folder."""
    path = Path(name)
    return path if path.exists() else dev_data_dir() / name


def print_table(report: dict) -> None:
    height, width = report["size"]
    print(f"Mask quality on {Path(report['clip']).name}: {report['frames']} frames at {width}x{height}, "
          f"composites over {Path(report['background']).name}, edge band {report['edge_band']} px")
    name_width = max(len(name) for name in report["results"]) + 2
    print("".ljust(name_width) + "".join(header.rjust(16) for _, header, _ in COLUMNS))
    for name, values in report["results"].items():
        cells = [fmt.format(values[key]) if key in values else "-" for key, _, fmt in COLUMNS]
        print(name.ljust(name_width) + "".join(cell.rjust(16) for cell in cells))
    if report.get("flicker"):
        print(f"\nBuilt-in mask flicker, temporal smoothing 0 vs {report['temporal_smoothing']}:")
        print("clip".ljust(20) + "frames".rjust(8) + "no smoothing".rjust(16) + "smoothed".rjust(16) + "reduction".rjust(12))
        for name, values in report["flicker"].items():
            print(name.ljust(20) + str(values["frames"]).rjust(8) + f"{values['flicker_no_smoothing']:.2e}".rjust(16)
                  + f"{values['flicker_smoothed']:.2e}".rjust(16) + f"{values['reduction']:.0%}".rjust(12))


def run(args) -> int:
    with progress_bar("scoring masks", unit="alpha") as progress:
        report = run_benchmark(args, progress)
    if args.flicker_clips:
        paths = [_dev_path(name) for name in args.flicker_clips]
        report["flicker"] = flicker_benchmark(paths, args.frames, args.size, args.smoothing)
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "masks", help="Portrait mask quality against a green-screen key (IoU, alpha error, flicker, edges).",
        description=__doc__,
    )
    parser.add_argument("--clip", default="people/lp_d0.mp4", help="a green-screen portrait clip (default: %(default)s in the dev data)")
    parser.add_argument(
        "--background", default="backgrounds/dvp_venice_canal.mp4",
        help="background video for the composites (default: %(default)s in the dev data)"
    )
    parser.add_argument("--frames", type=int, default=78, help="frames to use from the start (default 78)")
    parser.add_argument("--size", type=int, default=512, help="short side in pixels (never upscaled; default 512)")
    parser.add_argument(
        "--smoothing", type=float, default=DEFAULT_TEMPORAL_SMOOTHING, help="built-in segmenter temporal smoothing"
    )
    parser.add_argument("--alpha-band", type=int, help="Pseudo-Alpha band_width in px (default: its own)")
    parser.add_argument("--alpha-edge", type=float, help="Pseudo-Alpha edge_awareness 0..1 (default: its own)")
    parser.add_argument("--edge-band", type=int, default=5, help="half-width in px of the boundary band (default 5)")
    parser.add_argument("--sam2", metavar="CHECKPOINT", help="also score SAM 2 from this .safetensors checkpoint")
    parser.add_argument(
        "--flicker-clips", nargs="*", metavar="CLIP",
        help="also measure the built-in mask's flicker with and without smoothing on these clips "
        "(paths, or names under the dev data folder such as people/lp_d3.mp4)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.set_defaults(func=run)

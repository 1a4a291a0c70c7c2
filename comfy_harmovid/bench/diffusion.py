"""``harmovid bench diffusion``: sampler speed and memory as the clip grows, with and without MultiDiffusion.

For each config card (tiny and small by default) and clip length, one run of the sampler in a fresh
subprocess (so peak memory is that run's own) with randomly initialised weights: seconds per step
(guidance on, so two model passes per step, as in real use), wall clock and CPU time, and peak
resident memory (VmHWM; ``resource.getrusage`` off Linux). Then a seam report (frame-to-frame change
across MultiDiffusion window borders against elsewhere, per weighting; the bench's own windows and the
paper's 85-frame windows) and the parameter count and FLOPs per step of the full-size layouts at
49x480x720, for planning GPU runs.
"""

import json
import time
from pathlib import Path

import torch
from torch import nn

from ..locations import shipped_path
from ..progress import progress_bar
from .isolated import main_for, peak_rss_mib, run_isolated

CONFIG_DIR = shipped_path("configs", "models")
DEFAULT_CONFIGS = ("tiny", "small")
DEFAULT_FRAMES = (17, 49, 97, 193)
DEFAULT_SIZE = (128, 192)  # height, width in pixels
PLANNING_LAYOUTS = ("cogvideox-2b", "cogvideox-5b", "cogvideox1.5-5b")
PLANNING_CLIP = (49, 480, 720)  # frames, height, width
TILER = dict(window=7, overlap=2)  # latent frames: 25 video frames per window, 8 shared
PAPER_TILER = dict(window=22, overlap=6)  # the paper's 85-frame windows, 24 frames shared


def register(subparsers) -> None:
    parser = subparsers.add_parser("diffusion", help="Sampler seconds/step and peak memory vs clip length; seams.")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS), help="shipped model configs (comfy_harmovid/resources/configs/models; default %(default)s)")
    parser.add_argument("--frames", default=",".join(map(str, DEFAULT_FRAMES)), help="clip lengths in frames (default %(default)s)")
    parser.add_argument("--size", default="x".join(map(str, DEFAULT_SIZE)), help="HEIGHTxWIDTH in pixels (default %(default)s)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per run, after one warm-up step (default %(default)s)")
    parser.add_argument(
        "--window", type=int, default=TILER["window"], help="MultiDiffusion window in latent frames (default %(default)s)"
    )
    parser.add_argument("--overlap", type=int, default=TILER["overlap"], help="MultiDiffusion overlap in latent frames (default %(default)s)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="CPU threads per run (default 1: steady numbers on a shared machine; 0: torch's default)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.set_defaults(func=run)


def run(args) -> int:
    height, width = (int(v) for v in args.size.lower().split("x"))
    configs = args.configs.split(",")
    frame_counts = [int(v) for v in args.frames.split(",")]
    tiler = dict(window=args.window, overlap=args.overlap)
    jobs = [
        dict(
            config=name, frames=frames, height=height, width=width, steps=args.steps, threads=args.threads,
            tiler=tiler if tiled else None,
        )
        for name in configs
        for frames in frame_counts
        for tiled in (False, True)
    ]
    results = {"speed": [], "seams": [], "planning": planning_rows()}
    with progress_bar("bench diffusion", unit="run") as progress:
        for done, job in enumerate(jobs):
            progress(done, len(jobs) + 1)
            results["speed"].append({**job, **_measure_in_subprocess(job)})
        results["seams"] = seam_runs(configs[0], height, width, tiler) + seam_runs(
            configs[0], height, width, PAPER_TILER, frames=241
        )
        progress(len(jobs) + 1, len(jobs) + 1)
    print_tables(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def load_card(name: str):
    from ..model import HarmoVidConfig

    return HarmoVidConfig.from_json(CONFIG_DIR / f"{name}.json")


def _measure_in_subprocess(job: dict) -> dict:
    return run_isolated("comfy_harmovid.bench.diffusion", job, threads=job.get("threads") or 0)


def _random_condition(config, frames: int, height: int, width: int, seed: int = 0):
    """Latents and mask of the right shapes for a clip of ``frames`` x ``height`` x ``width``."""
    from ..model import latent_frame_count, pixel_frame_count
    from ..sampling import HarmoVidCondition

    generator = torch.Generator().manual_seed(seed)
    t, s = config.temporal_compression_ratio, config.spatial_compression_ratio
    latent_shape = (1, config.out_channels, latent_frame_count(frames, t), height // s, width // s)
    mask_shape = (1, 1, pixel_frame_count(latent_shape[2], t), latent_shape[3] * s, latent_shape[4] * s)
    return HarmoVidCondition(
        torch.randn(latent_shape, generator=generator),
        torch.randn(latent_shape, generator=generator),
        (torch.rand(mask_shape, generator=generator) > 0.5).float(),
        frames,
    )


def measure(job: dict) -> dict:
    """One timed sampler run (called in a fresh process)."""
    from ..model import HarmoVidTransformer
    from ..sampling import MultiDiffusion, sample

    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    config = load_card(job["config"])
    model = HarmoVidTransformer(config).eval()
    condition = _random_condition(config, job["frames"], job["height"], job["width"])
    multidiffusion = MultiDiffusion(**job["tiler"]) if job["tiler"] else None
    windows = multidiffusion.layout(condition.composite_latent.shape) if multidiffusion else [None]
    model_rss = peak_rss_mib()
    sample(model, condition, steps=1, guidance=1.0, multidiffusion=multidiffusion)  # warm-up: one pass
    start, start_cpu = time.perf_counter(), time.process_time()
    sample(model, condition, steps=job["steps"], guidance=6.0, multidiffusion=multidiffusion)
    seconds = (time.perf_counter() - start) / job["steps"]
    cpu_seconds = (time.process_time() - start_cpu) / job["steps"]
    return {
        "latent_frames": condition.composite_latent.shape[2],
        "windows": len(windows),
        "threads": torch.get_num_threads(),
        "seconds_per_step": round(seconds, 4),
        "cpu_seconds_per_step": round(cpu_seconds, 4),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "model_rss_mib": round(model_rss, 1),
        "sampling_mib": round(peak_rss_mib() - model_rss, 1),
    }


class WindowGainDenoiser(nn.Module):
    """The seam report's stand-in for a trained harmonizer (no weights exist to measure with).

    It predicts the clean latent as the composite times a gain set by the mean of the background it is
    shown, and returns the matching v. Over a clip whose light changes, windows see different
    backgrounds and disagree about the gain, as a real model judging the light of its window would;
    random transformer weights would instead bury any seam in noise.
    """

    def __init__(self, alphas_cumprod: torch.Tensor, strength: float = 0.5):
        super().__init__()
        self.register_buffer("alphas_cumprod", alphas_cumprod.float())
        self.strength = strength

    def forward(self, noisy_latent, composite_latent, background_latent, mask, timestep):
        alpha = self.alphas_cumprod[timestep.long()].view(-1, 1, 1, 1, 1)
        gain = 1 + self.strength * background_latent.mean(dim=(1, 2, 3, 4), keepdim=True)
        clean = composite_latent * gain
        return (alpha.sqrt() * noisy_latent - clean) / (1 - alpha).sqrt()  # v for x0 = clean


def seam_runs(config_name: str, height: int, width: int, tiler: dict, frames: int = 97) -> list:
    """Frame-to-frame change at window borders vs elsewhere, per weighting, with ``WindowGainDenoiser``
    on a clip whose composite drifts slowly and whose background brightens from start to end."""
    from ..model import latent_frame_count
    from ..sampling import HarmoVidCondition, MultiDiffusion, make_scheduler, sample, seam_report

    config = load_card(config_name)
    generator = torch.Generator().manual_seed(0)
    t, s = config.temporal_compression_ratio, config.spatial_compression_ratio
    shape = (1, config.out_channels, latent_frame_count(frames, t), height // s, width // s)
    time = torch.linspace(0, 1, shape[2]).view(1, 1, -1, 1, 1)
    start = torch.randn(shape[:2] + (1,) + shape[3:], generator=generator)
    end = torch.randn(shape[:2] + (1,) + shape[3:], generator=generator)
    composite = start * (1 - time) + end * time  # slow drift
    background = torch.randn(shape[:2] + (1,) + shape[3:], generator=generator) * 0.1 + 2 * time  # brightening
    mask = torch.ones(1, 1, (shape[2] - 1) * t + 1, shape[3] * s, shape[4] * s)
    condition = HarmoVidCondition(composite, background.expand(shape).contiguous(), mask, frames)
    model = WindowGainDenoiser(make_scheduler("ddim", config.scheduler).alphas_cumprod)
    rows = []
    for weighting in ("flat", "pyramid", "overlap-linear", None):
        multidiffusion = MultiDiffusion(weighting=weighting or "flat", **tiler)
        windows = multidiffusion.layout(shape)
        latent = sample(model, condition, steps=10, guidance=1.0, multidiffusion=multidiffusion if weighting else None)
        label = weighting or "none (one pass)"
        window = f"{tiler['window']}/{tiler['overlap']}"
        rows.append({"frames": frames, "tiler": window, "weighting": label, **seam_report(latent, windows)})
    return rows


def planning_rows() -> list:
    """Parameters and FLOPs per step of the full-size layouts at 49x480x720, for planning GPU runs."""
    from ..model import count_parameters, flops_per_step
    from ..model.cost import token_count

    frames, height, width = PLANNING_CLIP
    rows = []
    for name in PLANNING_LAYOUTS:
        config = load_card(name)
        parameters = count_parameters(config)
        flops = flops_per_step(config, frames, height, width)
        rows.append(
            {
                "layout": name,
                "clip": f"{frames}x{height}x{width}",
                "parameters": parameters,
                "weights_gib_bf16": round(parameters * 2 / 2**30, 2),
                "tokens": token_count(config, frames, height, width),
                "tflops_per_pass": round(flops / 1e12, 2),
                "tflops_per_step_cfg": round(2 * flops / 1e12, 2),
            }
        )
    return rows


def print_tables(results: dict) -> None:
    size = f"{results['speed'][0]['height']}x{results['speed'][0]['width']}" if results["speed"] else ""
    threads = results["speed"][0].get("threads") if results["speed"] else None
    print(
        f"Sampler speed and memory at {size} (CPU, {threads or 'default'} thread(s), random weights, "
        "guidance 6 = 2 passes per step)"
    )
    print("s/step: wall clock; cpu s/step: CPU time of all threads (steadier on a busy machine)")
    print(
        f"{'config':8} {'frames':>6} {'latent':>6} {'tiler':>6} {'windows':>7} {'s/step':>8} {'cpu s/step':>10} "
        f"{'peak MiB':>9} {'sampling MiB':>12}"
    )
    for row in results["speed"]:
        tiler = f"{row['tiler']['window']}/{row['tiler']['overlap']}" if row["tiler"] else "off"
        if "error" in row:
            print(f"{row['config']:8} {row['frames']:>6} {'':>6} {tiler:>6} error: {row['error']}")
            continue
        print(
            f"{row['config']:8} {row['frames']:>6} {row['latent_frames']:>6} {tiler:>6} {row['windows']:>7} "
            f"{row['seconds_per_step']:>8.3f} {row['cpu_seconds_per_step']:>10.3f} {row['peak_rss_mib']:>9.0f} "
            f"{row['sampling_mib']:>12.0f}"
        )
    print("tiler W/O: MultiDiffusion windows of W latent frames sharing O; sampling MiB: peak minus the peak before")
    print("\nSeams: mean |frame-to-frame change| across window borders vs elsewhere (ratio 1 = no seam),")
    print("with a stand-in denoiser whose light estimate depends on the window it sees (see WindowGainDenoiser)")
    print(f"{'frames':>6} {'tiler':>6} {'weighting':>16} {'borders':>7} {'border':>8} {'interior':>8} {'ratio':>6}")
    for row in results["seams"]:
        print(
            f"{row['frames']:>6} {row['tiler']:>6} {row['weighting']:>16} {row['borders']:>7} "
            f"{row['border_jump']:>8.4f} {row['interior_jump']:>8.4f} {row['ratio']:>6.2f}"
        )
    print("\nFull-size layouts at 49x480x720 (TFLOPs/step: with guidance, two passes; 50 steps per clip)")
    print(f"{'layout':16} {'parameters':>14} {'bf16 GiB':>8} {'tokens':>7} {'TFLOPs/pass':>11} {'TFLOPs/step':>11}")
    for row in results["planning"]:
        print(
            f"{row['layout']:16} {row['parameters']:>14,} {row['weights_gib_bf16']:>8.2f} {row['tokens']:>7} "
            f"{row['tflops_per_pass']:>11.2f} {row['tflops_per_step_cfg']:>11.2f}"
        )


if __name__ == "__main__":  # the measuring subprocess
    main_for(measure)

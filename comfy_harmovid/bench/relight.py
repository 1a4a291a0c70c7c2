"""``harmovid bench relight``: IC-Light relighting's peak memory as the clip grows, and its cost at full size.

Memory: each clip length runs in a fresh process (its peak resident memory is its own). The frames are
made chunk by chunk and each relit chunk is dropped, as the streamed ``harmovid harmonize`` does, so the
peak shows the relighter's own working memory: the models, one chunk and the running light. With
``--sd15``/``--iclight`` the real models run; without them, random models of SD1.5's architecture at a
tenth of its widths (``--width``), which exercise the same code.

Full size: SD1.5 + IC-Light's floating-point operations per frame at 512 and 768 pixels, counted by
PyTorch's FLOP counter on a model without weights (``meta`` tensors), and the activation memory of one
chunk's UNet pass, tracked tensor by tensor with attention assumed memory-efficient (as PyTorch's
flash / memory-efficient kernels are on a GPU: the output, not the score matrix). Time per frame on a
GPU is then FLOPs / ``--gpu-tflops`` — an estimate, not a measurement.
"""

import json
import time
import weakref
from pathlib import Path

import torch

from ..progress import progress_bar
from .isolated import main_for, peak_rss_mib, run_isolated

DEFAULT_FRAMES = (8, 32, 96)
DEFAULT_SIZE = (64, 96)  # height, width of the random-model runs
PLAN_SIZES = (512, 768)  # square working sizes of the full-size estimate
PLAN_STEPS, PLAN_DENOISE, PLAN_CHUNK = 20, 0.7, 8  # the relighter's defaults
GPU_TFLOPS = 50.0  # effective fp16 rate assumed for the estimate (about a third of an RTX 4090's dense peak)
VAE_ENCODES, VAE_DECODES = 3, 2  # per frame: composite, foreground, background in; relit, reconstruction out


def register(subparsers) -> None:
    parser = subparsers.add_parser("relight", help="IC-Light relighting: peak memory vs clip length; full-size cost.")
    parser.add_argument("--frames", default=",".join(map(str, DEFAULT_FRAMES)), help="clip lengths (default %(default)s)")
    parser.add_argument("--size", default="x".join(map(str, DEFAULT_SIZE)), help="HEIGHTxWIDTH (default %(default)s)")
    parser.add_argument("--chunk-frames", type=int, default=4, help="frames per chunk (default %(default)s)")
    parser.add_argument("--steps", type=int, default=2, help="denoising steps (default %(default)s)")
    parser.add_argument("--width", type=int, default=32, help="UNet width of the random models (SD1.5: 320; default %(default)s)")
    parser.add_argument("--sd15", help="run the real SD1.5 checkpoint instead of random models (with --iclight)")
    parser.add_argument("--iclight", help="iclight_sd15_fbc.safetensors (with --sd15)")
    parser.add_argument("--tokenizer", help="CLIP tokenizer files for --sd15 (see harmovid harmonize --help)")
    parser.add_argument("--gpu-tflops", type=float, default=GPU_TFLOPS,
                        help="effective GPU rate for the time estimate (default %(default)s TFLOP/s)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run (default %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.set_defaults(func=run)


# -- memory as the clip grows ------------------------------------------------------------------------------


def _models(job: dict):
    from ..relight import load_iclight
    from ..relight.loading import build_iclight, sd15_configs
    from ..relight.tokenizer import byte_tokenizer

    if job.get("sd15"):
        return load_iclight(job["sd15"], job["iclight"], tokenizer=job.get("tokenizer"))
    width = job["unet_width"]
    configs = sd15_configs(unet_width=width, vae_width=width, text_width=2 * width, text_layers=2, vocabulary=514)
    return build_iclight(configs, byte_tokenizer())


def _chunk(start: int, count: int, height: int, width: int):
    """Frames ``start .. start + count`` of a synthetic clip: a lit disc (the person) over a moving gradient."""
    t = torch.arange(start, start + count, dtype=torch.float32).view(-1, 1, 1)
    ys = torch.linspace(0, 1, height).view(1, -1, 1)
    xs = torch.linspace(0, 1, width).view(1, 1, -1)
    zero = torch.zeros(count, height, width)
    background = torch.stack([zero + 0.3 + 0.4 * xs + 0.05 * torch.sin(t / 5), zero + 0.4 + 0.2 * ys,
                              zero + 0.6 - 0.3 * xs], -1)
    alpha = (((xs - 0.5) / 0.25) ** 2 + ((ys - 0.55) / 0.35) ** 2 <= 1).float().expand(count, height, width)
    person = torch.tensor([0.8, 0.6, 0.5]).view(1, 1, 1, 3).expand(count, height, width, 3)
    composite = person * alpha[..., None] + background * (1 - alpha[..., None])
    return composite.contiguous(), alpha.contiguous(), background.contiguous()


def measure(job: dict) -> dict:
    """Relight ``job["frames"]`` frames streamed chunk by chunk (in a fresh process)."""
    from ..relight import ICLightRelighter, RelightSettings

    torch.set_num_threads(job["threads"])
    models = _models(job)
    settings = RelightSettings(steps=job["steps"], denoise=1.0, guidance=2.0, chunk_frames=job["chunk_frames"],
                               resolution=min(job["height"], job["width"]))
    relighter = ICLightRelighter(models, settings)
    loaded = peak_rss_mib()
    start = time.perf_counter()
    for begin in range(0, job["frames"], job["chunk_frames"]):
        count = min(job["chunk_frames"], job["frames"] - begin)
        relighter.process(*_chunk(begin, count, job["height"], job["width"]))
    seconds = time.perf_counter() - start
    return {"peak_rss_mib": round(peak_rss_mib(), 1), "models_rss_mib": round(loaded, 1),
            "working_mib": round(peak_rss_mib() - loaded, 1), "seconds_per_frame": round(seconds / job["frames"], 3)}


# -- full-size cost (an estimate) ----------------------------------------------------------------------------


class _LiveTensorBytes(torch.utils._python_dispatch.TorchDispatchMode):
    """Peak bytes of tensors alive at once while a model runs on ``meta`` tensors (a caching allocator's view)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0

    def _freed(self, size: int) -> None:
        self.live -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in torch.utils._pytree.tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                size = tensor.numel() * tensor.element_size()
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(tensor, self._freed, size)
        return out


def _memory_efficient_attention(query, key, value, *args, **kwargs):
    """The output of attention without its score matrix, as GPU flash / memory-efficient kernels keep it."""
    return query.new_empty(*query.shape[:-1], value.shape[-1])


def running_light_bytes(unet_config: dict, latent: int, steps: int, bytes_per_value: int = 2) -> int:
    """Size of the running light (kept in host memory): the mean keys and values of both guidance halves, for every
    up-block self-attention layer and denoising step."""
    channels = list(reversed(unet_config["block_out_channels"]))
    values = 0
    for block, kind in enumerate(unet_config["up_block_types"]):
        if kind.startswith("CrossAttn"):
            side = latent // 2 ** (len(channels) - 1 - block)
            values += (unet_config["layers_per_block"] + 1) * side * side * channels[block]
    return values * 2 * 2 * steps * bytes_per_value


def full_size_plan(gpu_tflops: float = GPU_TFLOPS) -> list:
    """FLOPs, weights and activation memory per frame of SD1.5 + IC-Light fbc at the ``PLAN_SIZES``."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from ..relight.loading import FBC_CHANNELS, sd15_configs
    from ..relight.tokenizer import require_transformers

    transformers = require_transformers()
    configs = sd15_configs()
    with init_empty_weights(include_buffers=True):
        unet = UNet2DConditionModel.from_config(dict(configs["unet"], in_channels=FBC_CHANNELS)).half()
        vae = AutoencoderKL.from_config(configs["vae"]).half()
        text = transformers.CLIPTextModel(transformers.CLIPTextConfig(**configs["text_encoder"])).half()
    weights = sum(p.numel() * 2 for model in (unet, vae, text) for p in model.parameters())
    steps = round(PLAN_STEPS * PLAN_DENOISE)
    rows = []
    for size in PLAN_SIZES:
        latent = size // 8

        def unet_pass(batch):
            noisy = torch.empty(batch, FBC_CHANNELS, latent, latent, device="meta", dtype=torch.half)
            prompts = torch.empty(batch, 77, configs["text_encoder"]["hidden_size"], device="meta", dtype=torch.half)
            return unet(noisy, torch.tensor(500), encoder_hidden_states=prompts)

        def encode():
            return vae.encode(torch.empty(1, 3, size, size, device="meta", dtype=torch.half))

        def decode():
            return vae.decode(torch.empty(1, 4, latent, latent, device="meta", dtype=torch.half))

        flops = {}
        with torch.no_grad():
            for name, run in (("unet", lambda: unet_pass(1)), ("encode", encode), ("decode", decode)):
                with FlopCounterMode(display=False) as counter:
                    run()
                flops[name] = counter.get_total_flops()
            original = torch.nn.functional.scaled_dot_product_attention
            torch.nn.functional.scaled_dot_product_attention = _memory_efficient_attention
            try:
                activations = {}
                for name, run in (("unet", lambda: unet_pass(2 * PLAN_CHUNK)), ("decode", decode)):
                    with _LiveTensorBytes() as tracker:
                        run()
                    activations[name] = tracker.peak
            finally:
                torch.nn.functional.scaled_dot_product_attention = original
        light = running_light_bytes(configs["unet"], latent, steps)
        per_frame = 2 * steps * flops["unet"] + VAE_ENCODES * flops["encode"] + VAE_DECODES * flops["decode"]
        peak = weights + max(activations.values())
        rows.append({
            "size": size, "steps_run": steps, "chunk_frames": PLAN_CHUNK,
            "unet_tflops_per_pass": round(flops["unet"] / 1e12, 3),
            "vae_tflops_per_frame": round((VAE_ENCODES * flops["encode"] + VAE_DECODES * flops["decode"]) / 1e12, 2),
            "tflops_per_frame": round(per_frame / 1e12, 1),
            "weights_gib_fp16": round(weights / 2**30, 2),
            "unet_activations_gib": round(activations["unet"] / 2**30, 2),
            "decode_activations_gib": round(activations["decode"] / 2**30, 2),
            "estimated_vram_gib": round(peak / 2**30, 1),
            "running_light_gib_host": round(light / 2**30, 2),
            "estimated_seconds_per_frame": round(per_frame / (gpu_tflops * 1e12), 2),
        })
    return rows


def run(args) -> int:
    height, width = (int(v) for v in args.size.lower().split("x"))
    job = dict(height=height, width=width, unet_width=args.width, chunk_frames=args.chunk_frames, steps=args.steps,
               threads=args.threads, sd15=args.sd15, iclight=args.iclight, tokenizer=args.tokenizer)
    results = {"memory": [], "plan": []}
    lengths = [int(v) for v in args.frames.split(",") if v.strip()]
    with progress_bar("bench relight", unit="run") as progress:
        for done, frames in enumerate(lengths):
            progress(done, len(lengths) + 1)
            results["memory"].append({"frames": frames, **run_isolated(__name__, {**job, "frames": frames},
                                                                        threads=args.threads)})
        results["plan"] = full_size_plan(args.gpu_tflops)
        progress(len(lengths) + 1, len(lengths) + 1)
    print_tables(results, job, args.gpu_tflops)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def print_tables(results: dict, job: dict, gpu_tflops: float) -> None:
    models = "real SD1.5 + IC-Light" if job.get("sd15") else f"random SD1.5-architecture models, UNet width {job['unet_width']}"
    print(f"Peak memory vs clip length ({models}; {job['height']}x{job['width']}, chunks of "
          f"{job['chunk_frames']} frames, {job['steps']} steps, CPU, {job['threads']} thread(s))")
    print(f"{'frames':>6} {'peak MiB':>9} {'models MiB':>10} {'working MiB':>11} {'s/frame':>8}")
    for row in results["memory"]:
        if "error" in row:
            print(f"{row['frames']:>6} error: {row['error']}")
            continue
        print(f"{row['frames']:>6} {row['peak_rss_mib']:>9.0f} {row['models_rss_mib']:>10.0f} "
              f"{row['working_mib']:>11.0f} {row['seconds_per_frame']:>8.3f}")
    print("working MiB: peak minus the peak once the models were loaded")
    print(f"\nFull size, ESTIMATED from FLOPs (SD1.5 + IC-Light fbc, fp16, {PLAN_STEPS} steps x denoise "
          f"{PLAN_DENOISE}, guidance on, chunks of {PLAN_CHUNK}; time at {gpu_tflops:g} TFLOP/s effective)")
    print(f"{'size':>5} {'UNet TFLOPs/pass':>16} {'VAE TFLOPs/frame':>16} {'TFLOPs/frame':>12} {'weights GiB':>11} "
          f"{'UNet act. GiB':>13} {'est. VRAM GiB':>13} {'est. s/frame':>12} {'light GiB (RAM)':>15}")
    for row in results["plan"]:
        print(f"{row['size']:>5} {row['unet_tflops_per_pass']:>16.3f} {row['vae_tflops_per_frame']:>16.2f} "
              f"{row['tflops_per_frame']:>12.1f} {row['weights_gib_fp16']:>11.2f} {row['unet_activations_gib']:>13.2f} "
              f"{row['estimated_vram_gib']:>13.1f} {row['estimated_seconds_per_frame']:>12.2f} "
              f"{row['running_light_gib_host']:>15.2f}")
    print("UNet act.: one chunk's guided UNet pass with memory-efficient attention; VRAM: fp16 weights + the larger "
          "of that and one frame's VAE decode; light: the running light, kept in host memory")


if __name__ == "__main__":  # the measuring subprocess
    main_for(measure)

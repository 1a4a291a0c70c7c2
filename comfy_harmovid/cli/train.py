"""``harmovid train vae|deflicker|harmovid|harmoim``: fit the tiny VAE, train stage 2 and stage 3, and
train the learned per-frame HarmoIm (CPU, minutes).

Runs on one process as is, and on many GPUs or nodes under ``accelerate launch -m comfy_harmovid train ...``.
"""

import json
import sys
from pathlib import Path

from ..errors import HarmoVidError
from ..locations import shipped_path

HARMOIM_CONFIG = shipped_path("configs", "harmoim", "harmoim-v3.yaml")


def _print_record(record: dict) -> None:
    print(json.dumps({key: round(value, 6) if isinstance(value, float) else value for key, value in record.items()}),
          file=sys.stderr, flush=True)


def _run_vae(args) -> int:
    import torch

    from ..model import save_vae
    from ..footage import read_manifest
    from ..train.tiny_vae import fit_tiny_vae

    if args.threads:
        torch.set_num_threads(args.threads)
    vae = fit_tiny_vae(read_manifest(args.manifest), frames=args.frames, height=args.height, width=args.width,
                       windows=args.windows, steps=args.steps, seed=args.seed, log=_print_record)
    print(save_vae(vae, args.output))
    return 0


def _run_stage(args) -> int:
    import torch

    from ..train.trainer import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"manifest": args.manifest, "vae": args.vae, "output_dir": args.output_dir, "steps": args.steps,
                 "init": args.init, "seed": args.seed, "stage": args.stage, "relight_sd15": args.sd15,
                 "relight_iclight": args.iclight, "relight_tokenizer": args.tokenizer}
    config = TrainConfig.from_file(args.config, **overrides)
    result = train(config, resume=args.resume, log=_print_record)
    print(result["transformer"])
    return 0


def _run_evaluate(args) -> int:
    import torch

    from ..train.evaluate import evaluate_lut_pairs
    from ..progress import progress_bar
    from .common import print_json

    if args.threads:
        torch.set_num_threads(args.threads)
    models = {}
    for text in args.model:
        name, _, path = text.rpartition("=")
        models[name or path] = path
    with progress_bar("scoring LUT pairs", unit="case") as progress:
        result = evaluate_lut_pairs(models, args.vae, args.clips, args.luts, frames=args.frames, size=args.size,
                                    steps=args.steps, guidance=args.guidance, seed=args.seed,
                                    detail_radius=args.detail_radius, progress=progress)
    print_json(result)
    return 0


def _run_harmoim(args) -> int:
    from ..harmoim.training import HarmoImTrainConfig, build_pool, train_harmoim
    from ..harmoim.weights import save_harmoim
    from ..footage import read_manifest
    from ..progress import progress_bar

    output = Path(args.output)
    if output.exists() and not args.overwrite:  # checked before minutes of training, not after
        raise HarmoVidError(f"{output} already exists; choose another name or pass --overwrite.")
    config = HarmoImTrainConfig.from_file(args.config)
    if args.steps is not None:
        config.steps = args.steps
    if args.seed is not None:
        config.seed = args.seed
    if args.threads:
        config.threads = args.threads
    manifest = read_manifest(args.manifest)
    with progress_bar("sampling and masking clips", unit="clip") as progress:
        pool = build_pool(manifest.role("portrait"), config.frames_per_clip, config.pool_size, progress)
    with progress_bar("training HarmoIm", unit="step") as progress:
        net, record = train_harmoim(config, pool, manifest.luts, log=_print_record, progress=progress)
    record["manifest"] = Path(args.manifest).name
    print(save_harmoim(net, output, record, overwrite=args.overwrite))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train the tiny VAE, the deflicker model (stage 2), HarmoVid (stage 3) or the learned HarmoIm"
    )
    commands = parser.add_subparsers(dest="train_command", metavar="STAGE")
    commands.required = True

    vae = commands.add_parser("vae", help="fit the tiny CPU VAE on manifest clips (smoke runs only)")
    vae.add_argument("--manifest", required=True, help="data manifest (YAML/JSON, see docs/training.md)")
    vae.add_argument("-o", "--output", required=True, help="VAE checkpoint to write (.safetensors)")
    vae.add_argument("--frames", type=int, default=9, help="frames per window, 4k+1 (default 9)")
    vae.add_argument("--height", type=int, default=64, help="training height (default 64)")
    vae.add_argument("--width", type=int, default=64, help="training width (default 64)")
    vae.add_argument("--windows", type=int, default=32, help="clip windows to fit on (default 32)")
    vae.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    vae.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    vae.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    vae.set_defaults(func=_run_vae)

    harmoim = commands.add_parser("harmoim", help="train the learned per-frame HarmoIm on portrait footage (CPU)")
    harmoim.add_argument("--manifest", required=True, help="data manifest: portrait clips and LUTs (docs/training.md)")
    harmoim.add_argument("--config", default=str(HARMOIM_CONFIG),
                         help="training settings (YAML; default: the config of the shipped weights)")
    harmoim.add_argument("-o", "--output", required=True, help="weights file to write (.safetensors)")
    harmoim.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    harmoim.add_argument("--steps", type=int, help="optimizer steps (overrides the config's)")
    harmoim.add_argument("--seed", type=int, help="random seed (overrides the config's)")
    harmoim.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    harmoim.set_defaults(func=_run_harmoim)

    evaluate = commands.add_parser("evaluate", help="fPSNR of HarmoVid checkpoints on held-out LUT pairs")
    evaluate.add_argument("--model", nargs="+", required=True, metavar="NAME=PATH", help="transformer checkpoints")
    evaluate.add_argument("--vae", required=True, help="the VAE the models were trained with")
    evaluate.add_argument("--clips", nargs="+", required=True, help="held-out portrait clips (paths or globs)")
    evaluate.add_argument("--luts", nargs="+", required=True, help="held-out .cube LUTs (paths or globs)")
    evaluate.add_argument("--frames", type=int, default=9, help="frames per clip, 4k+1 (default 9)")
    evaluate.add_argument("--size", type=int, default=64, help="short side in pixels (default 64)")
    evaluate.add_argument("--steps", type=int, default=20, help="sampling steps (default 20)")
    evaluate.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance (default 1: off)")
    evaluate.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    evaluate.add_argument("--detail-radius", type=float, default=4.0,
                          help="smoothing of the light change for the detail-transfer scores, in pixels (default 4)")
    evaluate.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    evaluate.set_defaults(func=_run_evaluate)

    for stage, help_text in (("deflicker", "stage 2: the lighting deflicker model (paper eq. 2)"),
                             ("harmovid", "stage 3: HarmoVid on both paths (paper eq. 5)")):
        sub = commands.add_parser(stage, help=help_text)
        sub.add_argument("--config", default="tiny", help="training config: YAML path or tiny / 2b / 5b (default tiny)")
        sub.add_argument("--manifest", help="data manifest (overrides the config's)")
        sub.add_argument("--vae", help="VAE checkpoint or diffusers CogVideoX folder (overrides the config's)")
        sub.add_argument("--output-dir", help="where checkpoints go (overrides the config's)")
        sub.add_argument("--init", help="start from these transformer weights (e.g. a converted CogVideoX)")
        sub.add_argument("--steps", type=int, help="optimizer steps (overrides the config's)")
        sub.add_argument("--seed", type=int, help="random seed (overrides the config's)")
        sub.add_argument("--resume", help="checkpoint folder to continue from, or 'latest'")
        sub.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
        sub.add_argument("--sd15", help="stage 1 with IC-Light: SD1.5 single-file checkpoint (with --iclight)")
        sub.add_argument("--iclight", help="stage 1 with IC-Light: iclight_sd15_fbc.safetensors (with --sd15)")
        sub.add_argument("--tokenizer", help="CLIP tokenizer files for --sd15 (see harmovid harmonize --help)")
        sub.set_defaults(func=_run_stage, stage=stage)

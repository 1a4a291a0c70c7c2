"""``harmovid bench flicker-pair``: deflicker a real per-frame-processed video.

The dev data's flicker/dvp_bikepacking pair is a clean video and the same video enhanced frame by
frame, with the flicker that per-frame processing really makes. Every deflicker method gets the
processed video and the clean one as its motion reference. Reported: warping error (flow from the
clean video) of the clean video, the processed video and each output; how much of the processed
video's warping error each method removes (the goal is at least 60%; the clean video's own row shows
the cut of a method exactly as steady as the unprocessed video) and how much of the part the
processing added (above the clean video's own) it removes; and PSNR/SSIM against the
processed video (a deflicker must keep the processed look, not undo it).
"""

from pathlib import Path
from typing import Sequence

import torch

from ..errors import HarmoVidError
from ..evaluation import metrics
from ..evaluation.dev_data import dev_data_dir, load_clip
from ..progress import ProgressCallback, progress_bar, report
from . import methods as method_registry
from .protocol import add_arguments, check_settings, finish, list_methods

DEFAULT_FRAMES = 32
DESCRIPTION = (
    "Real flicker pair: methods deflicker the frame-by-frame processed video with the clean video as motion "
    "reference; warping error uses the clean video's flow; PSNR/SSIM are against the processed video."
)


def run_flicker_pair(
    clean: torch.Tensor,
    processed: torch.Tensor,
    *,
    name: str = "pair",
    methods: Sequence[str] = (),
    settings: dict = None,
    progress: ProgressCallback = None,
):
    """Score deflicker ``methods`` on one (clean, processed) pair. Returns (result document, sheet rows)."""
    if clean.shape != processed.shape:
        raise HarmoVidError(
            f"the clean clip is {tuple(clean.shape)} but the processed one is {tuple(processed.shape)}; "
            "the pair must line up frame by frame at the same size."
        )
    chosen = method_registry.select(method_registry.deflicker_methods(), methods)
    flows = metrics.clip_flow(clean)
    processed_error = metrics.warping_error(processed, flows=flows)
    clean_error = metrics.warping_error(clean, flows=flows)
    # The clean video's own cut, for scale: a method as steady as the unprocessed video gets this much.
    rows = {"clean reference": {"warp_error": clean_error, "warp_error_reduction": 1.0 - clean_error / processed_error}}
    outputs = {}
    for index, (method, run) in enumerate(chosen.items()):
        output = run(processed, clean, None)
        error = metrics.warping_error(output, flows=flows)
        rows[method] = {
            "warp_error": error,
            "warp_error_reduction": 1.0 - error / processed_error,
            # The share of the warping error the processing added (above the clean video's) that is gone.
            "added_flicker_removed": (processed_error - error) / max(processed_error - clean_error, 1e-12),
            "psnr_vs_processed": metrics.psnr(output, processed),
            "ssim": metrics.ssim(output, processed),
        }
        outputs[method] = output
        report(progress, index + 1, len(chosen))
    middle = clean.shape[0] // 2
    sheet_rows = [
        (f"{name}\nframe {t}", {"clean": clean[t], "processed": processed[t], **{m: o[t] for m, o in outputs.items()}})
        for t in (middle, middle + 1)
    ]
    result = {
        "protocol": "flicker-pair",
        "description": DESCRIPTION,
        "settings": dict(settings or {}, methods=list(chosen)),
        "clips": {name: rows},
        "mean": rows,
    }
    return result, sheet_rows


def _main(args) -> int:
    if list_methods(args):
        return 0
    check_settings(args)
    clean_path = Path(args.input or dev_data_dir() / "flicker" / "dvp_bikepacking_input.mp4")
    processed_path = Path(args.processed or dev_data_dir() / "flicker" / "dvp_bikepacking_processed.mp4")
    for path, option in ((clean_path, "--input"), (processed_path, "--processed")):
        if not path.is_file():
            raise HarmoVidError(f"{path} not found. Pass the pair with {option}, or set HARMOVID_DEV_DATA.")
    clean = load_clip(clean_path, args.frames, args.size)
    processed = load_clip(processed_path, args.frames, args.size)
    length = min(clean.shape[0], processed.shape[0])
    settings = {"input": str(clean_path), "processed": str(processed_path), "frames": length, "size": args.size}
    with progress_bar("flicker pair", unit="method") as progress:
        result, sheet_rows = run_flicker_pair(
            clean[:length], processed[:length], name=clean_path.stem.replace("_input", ""),
            methods=args.methods, settings=settings, progress=progress,
        )
    finish(args, result, sheet_rows)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "flicker-pair", help="Deflicker a real frame-by-frame processed video (dvp_bikepacking).", description=__doc__
    )
    parser.add_argument("--input", metavar="PATH", help="the clean video (default: dev data flicker/dvp_bikepacking_input.mp4)")
    parser.add_argument(
        "--processed", metavar="PATH", help="the processed video (default: dev data flicker/dvp_bikepacking_processed.mp4)"
    )
    add_arguments(
        parser, available_methods=lambda: method_registry.deflicker_methods(), clips_and_luts=False, frames=DEFAULT_FRAMES
    )
    parser.set_defaults(func=_main)

"""What the paper's two protocols share: score every method on every test case, and the command-line
plumbing (options, loading, table, JSON, contact sheet)."""

import argparse
import sys
from typing import Callable, Dict, List, Sequence, Tuple

import torch

from ..color import read_cube
from ..contact_sheet import save_contact_sheet
from ..errors import HarmoVidError
from ..evaluation import metrics
from ..evaluation.cases import Case
from ..evaluation.dev_data import load_portraits, resolve_paths
from ..footage import read_manifest
from ..progress import ProgressCallback, progress_bar, report
from . import report as reporting

DEFAULT_FRAMES = 16
DEFAULT_SIZE = 320
DEFAULT_SEED = 0


def evaluate(
    cases: Sequence[Case],
    methods: Dict[str, Callable[[Case], torch.Tensor]],
    *,
    motion_in_mask: bool,
    sheet_frames: Callable[[int], Sequence[int]],
    progress: ProgressCallback = None,
) -> Tuple[Dict[str, Dict[str, Dict[str, float]]], List[tuple]]:
    """Run each method on each case and score it against the case's reference.

    Returns ``({case: {"clean reference": ..., method: scores}}, contact-sheet rows)``. The "clean
    reference" row is the reference clip's own reference-free scores (warping error, edge sharpness):
    what a perfect method would get.
    """
    per_case, sheet_rows = {}, []
    total, done = len(cases) * (len(methods) + 1), 0
    reference, flows = None, None
    for case in cases:
        if case.reference is not reference:  # cases of one clip share its flow
            reference, flows = case.reference, metrics.clip_flow(case.reference)
        rows = {"clean reference": reporting.reference_free_scores(case.reference, case.mask, flows)}
        done += 1
        report(progress, done, total)
        outputs = {}
        for name, run in methods.items():
            output = run(case)
            if output.shape != case.input.shape:
                raise HarmoVidError(f"method {name} returned {tuple(output.shape)} for {tuple(case.input.shape)}.")
            rows[name] = reporting.score(output, case.reference, case.mask, flows, motion_in_mask=motion_in_mask)
            outputs[name] = output
            done += 1
            report(progress, done, total)
        per_case[case.name] = rows
        for t in sheet_frames(case.input.shape[0]):
            columns = {"input": case.input[t], "reference": case.reference[t]}
            columns.update({name: output[t] for name, output in outputs.items()})
            sheet_rows.append((f"{case.name}\nframe {t}", columns))
    return per_case, sheet_rows


def result_document(protocol: str, description: str, settings: dict, infos: Dict[str, dict], per_case: dict) -> dict:
    """The JSON a protocol writes: settings, each case's details (``infos``, e.g. the LUTs used), scores, means."""
    return {
        "protocol": protocol,
        "description": description,
        "settings": settings,
        "cases": infos,
        "clips": per_case,
        "mean": reporting.mean_over_clips(per_case),
    }


def add_arguments(
    parser: argparse.ArgumentParser,
    *,
    available_methods: Callable[[], Dict],
    clips_and_luts: bool = True,
    frames: int = DEFAULT_FRAMES,
) -> None:
    """The options every protocol command shares."""
    if clips_and_luts:
        parser.add_argument(
            "--manifest", metavar="YAML",
            help="take the clips and LUTs from a data manifest (e.g. models/harmoim/harmoim-v2-heldout.yaml)",
        )
        parser.add_argument(
            "--clips", nargs="+", metavar="PATH",
            help="portrait clips (paths or globs); default: the dev data's people/*.mp4",
        )
        parser.add_argument(
            "--luts", nargs="+", metavar="PATH",
            help=".cube LUTs (paths or globs) used to recolour the foreground; default: the dev data's luts/*.cube",
        )
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default 0)")
    parser.add_argument("--frames", type=int, default=frames, help=f"frames per clip (default {frames})")
    parser.add_argument(
        "--size", type=int, default=DEFAULT_SIZE, help=f"short side in pixels clips are resized to (default {DEFAULT_SIZE})"
    )
    parser.add_argument(
        "--methods", type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        help="comma-separated method names (default: every method available; see --list-methods)",
    )
    parser.add_argument("--list-methods", action="store_true", help="print the available method names and exit")
    # Looked up only when asked, so a broken method module cannot break the whole command line.
    parser.set_defaults(available_methods=available_methods)
    parser.add_argument("--json", metavar="OUT", help="also write the results to this JSON file")
    parser.add_argument("--sheet", metavar="OUT.png", help="write a contact sheet (input / reference / outputs)")


def list_methods(args) -> bool:
    """Print the method names if ``--list-methods`` was given; True when the command should stop."""
    if getattr(args, "list_methods", False):
        print("\n".join(args.available_methods()))
        return True
    return False


def check_settings(args) -> None:
    if args.frames < 2:
        raise HarmoVidError(f"--frames must be at least 2 (temporal metrics need a pair), got {args.frames}.")
    if args.size < 32:
        raise HarmoVidError(f"--size must be at least 32 pixels, got {args.size}.")


def load_cases_inputs(args, progress: ProgressCallback = None):
    """The clips (masked portraits) and named LUTs the options ask for."""
    if getattr(args, "manifest", None):
        if args.clips or args.luts:
            raise HarmoVidError("give either --manifest or --clips/--luts, not both.")
        manifest = read_manifest(args.manifest)
        clip_paths, lut_paths = [clip.path for clip in manifest.role("portrait")], list(manifest.luts)
        if not lut_paths:
            raise HarmoVidError(f"manifest {args.manifest} lists no LUTs; the protocol recolours people with them.")
    else:
        clip_paths = resolve_paths(args.clips, "people/*.mp4", "clips")
        lut_paths = resolve_paths(args.luts, "luts/*.cube", "luts")
    luts = [(path.stem, read_cube(path)) for path in lut_paths]
    portraits = load_portraits(clip_paths, args.frames, args.size, progress)
    settings = {
        "frames": args.frames,
        "size": args.size,
        "seed": args.seed,
        "clips": [str(path) for path in clip_paths],
        "luts": [str(path) for path in lut_paths],
    }
    return portraits, luts, settings


def finish(args, result: dict, sheet_rows) -> None:
    """Print the tables, write the JSON and the contact sheet the options ask for."""
    print(reporting.format_report(result))
    if args.json:
        reporting.write_json(args.json, result)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.sheet:
        save_contact_sheet(args.sheet, sheet_rows)
        print(f"wrote {args.sheet}", file=sys.stderr)
    if getattr(args, "histogram", None):
        from .spread import draw_histogram

        draw_histogram(args.histogram, result["clips"])
        print(f"wrote {args.histogram}", file=sys.stderr)


def run_command(args, title: str, run_protocol) -> int:
    """The body of ``harmovid bench harmonize|deflicker``: load, run ``run_protocol``, report."""
    if list_methods(args):
        return 0
    check_settings(args)
    with progress_bar("loading and masking clips", unit="clip") as progress:
        portraits, luts, settings = load_cases_inputs(args, progress)
    with progress_bar(title, unit="run") as progress:
        result, sheet_rows = run_protocol(
            portraits, luts, seed=args.seed, methods=args.methods, settings=settings, progress=progress
        )
    finish(args, result, sheet_rows)
    return 0

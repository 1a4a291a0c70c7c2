"""``harmovid convert-sam2 IN.pt OUT.safetensors``: official SAM 2 checkpoints to safetensors."""

from ..segment.sam2_model import convert_sam2_checkpoint


def run(args) -> int:
    written = convert_sam2_checkpoint(args.source, args.target, overwrite=args.overwrite)
    print(f"wrote {written}; put it in ComfyUI's models/sam2 folder")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert-sam2",
        help="Convert an official SAM 2 .pt checkpoint to .safetensors (the only format the pack loads).",
    )
    parser.add_argument("source", help="official checkpoint, e.g. sam2.1_hiera_tiny.pt")
    parser.add_argument("target", help="output, e.g. sam2.1_hiera_tiny.safetensors (keep the version and size in the name)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.set_defaults(func=run)

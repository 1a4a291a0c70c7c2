"""``harmovid convert``: a HarmoVid starting checkpoint from a local diffusers CogVideoX folder."""

from pathlib import Path

from ..errors import HarmoVidError
from .common import print_json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="Build a HarmoVid checkpoint from a local diffusers CogVideoX folder (2B, 5B, 5B-I2V, 1.5).",
        description=(
            "Widens the CogVideoX patch embedding to take the composite latent, the background latent and the "
            "folded mask (new weights zero, so the result equals the base model until trained), stores the null "
            "prompt's T5 embedding, and writes one .safetensors with its config. Nothing is downloaded."
        ),
    )
    parser.add_argument("--base", required=True, help="diffusers CogVideoX folder (with transformer/, vae/, ...)")
    parser.add_argument("-o", "--output", required=True, help="HarmoVid transformer .safetensors to write")
    parser.add_argument("--vae-out", help="also write the folder's VAE as a HarmoVid VAE .safetensors")
    parser.add_argument(
        "--null-embedding",
        help="safetensors with the null prompt's T5 embedding [1, L, dim] (default: computed from text_encoder/)",
    )
    parser.add_argument("--no-text-encoder", action="store_true", help="do not run text_encoder/ (zeros instead)")
    parser.add_argument("--text-encoder-dtype", choices=["fp32", "fp16", "bf16"], default="bf16",
                        help="precision to run text_encoder/ in (bf16: about 10 GB of RAM for T5-XXL)")
    parser.add_argument("--dtype", choices=["keep", "fp32", "fp16", "bf16"], default="keep",
                        help="weight dtype to write (default: the base checkpoint's)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..model.convert import convert_cogvideox, convert_vae, save_converted

    output = Path(args.output)
    if output.suffix != ".safetensors":
        raise HarmoVidError(f"--output must end in .safetensors, got {output.name}.")
    dtype = None if args.dtype == "keep" else args.dtype
    config, state_dict, info = convert_cogvideox(
        args.base, null_embedding=args.null_embedding, use_text_encoder=not args.no_text_encoder,
        text_encoder_dtype=args.text_encoder_dtype, dtype=dtype,
    )
    info["output"] = str(save_converted(config, state_dict, output))
    if args.vae_out:
        info["vae_output"] = str(convert_vae(args.base, args.vae_out, dtype=dtype))
    print_json(info)
    return 0

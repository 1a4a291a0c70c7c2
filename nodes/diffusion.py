"""The HarmoVid diffusion nodes: Loader, Encode, MultiDiffusion Tiler, Sampler, Decode, Detail Transfer.

Loader -> Encode -> (Tiler) -> Sampler -> Decode (-> Detail Transfer). The latents stay on the model's
device between these nodes; only Decode's IMAGE goes to ComfyUI's intermediate device.
"""

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.model import load_transformer, load_vae
from comfy_harmovid.sampling import (
    SCHEDULERS,
    WEIGHTINGS,
    DiffusionModel,
    MultiDiffusion,
    encode_condition,
    sample,
    transfer_light,
)
from comfy_harmovid.validate import check_frames, check_mask, check_not_empty, check_same_length, check_same_size

from . import comfy_adapter

CATEGORY = "HarmoVid"
DTYPES = ("auto", "bf16", "fp16", "fp32")
HOW_TO_GET_WEIGHTS = (
    "The HarmoVid weights are not public. Make a starting checkpoint from a local diffusers CogVideoX folder with "
    "`harmovid convert --base <CogVideoX folder> -o <models>/harmovid/harmovid.safetensors "
    "--vae-out <models>/harmovid_vae/cogvideox-vae.safetensors`, or train one (see the README), then refresh "
    "ComfyUI."
)


def _no_models_entry(kind: str) -> str:
    return f"(no models in models/{kind})"


def _model_choices(kind: str) -> list:
    return comfy_adapter.list_models(kind) or [_no_models_entry(kind)]


def _resolve(kind: str, name: str):
    """The file for ``name``; a diffusers VAE folder's weights file stands for the folder (config.json beside it)."""
    if not comfy_adapter.list_models(kind) or name == _no_models_entry(kind):
        raise HarmoVidError(f"No {kind} models found. {comfy_adapter.where_models_go(kind)} {HOW_TO_GET_WEIGHTS}")
    path = comfy_adapter.resolve_model_path(kind, name)
    in_diffusers_folder = path.name.startswith("diffusion_pytorch_model") and (path.parent / "config.json").is_file()
    if kind == "harmovid_vae" and in_diffusers_folder:
        return path.parent
    return path


def _dtype(choice: str, device) -> str:
    """'auto': bf16 on a GPU, fp32 on the CPU (where bf16 matmuls are slow)."""
    if choice == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return choice


class HarmoVidLoader:
    DESCRIPTION = (
        "Loads a HarmoVid transformer (models/harmovid) and its VAE (models/harmovid_vae) from safetensors "
        "checkpoints onto ComfyUI's device. The weights are not public: make them with `harmovid convert` from a "
        "local CogVideoX, or train them."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "transformer": (
                    _model_choices("harmovid"),
                    {"tooltip": "HarmoVid transformer checkpoint (.safetensors) in models/harmovid."},
                ),
                "vae": (
                    _model_choices("harmovid_vae"),
                    {"tooltip": "CogVideoX VAE checkpoint (.safetensors) in models/harmovid_vae."},
                ),
                "dtype": (
                    list(DTYPES),
                    {
                        "default": "auto",
                        "tooltip": "Weight precision. auto: bf16 on a GPU, fp32 on the CPU. fp16 saves memory on "
                        "GPUs without bf16 but may overflow.",
                    },
                ),
            }
        }

    RETURN_TYPES = ("HARMOVID_MODEL", "HARMOVID_VAE")
    RETURN_NAMES = ("model", "vae")
    OUTPUT_TOOLTIPS = ("The HarmoVid transformer, for the Sampler or the Tiler.", "The VAE, for Encode and Decode.")
    FUNCTION = "load"
    CATEGORY = CATEGORY

    def load(self, transformer, vae, dtype="auto"):
        device = comfy_adapter.torch_device()
        model = load_transformer(_resolve("harmovid", transformer), dtype=_dtype(dtype, device), device=device)
        autoencoder = load_vae(_resolve("harmovid_vae", vae), dtype=_dtype(dtype, device), device=device)
        return (DiffusionModel(model), autoencoder)


class HarmoVidEncode:
    DESCRIPTION = (
        "Encodes the composite and background clips with the VAE and pads the alpha the same way, giving the "
        "Sampler's conditioning. The latents stay on the model's device."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": ("HARMOVID_VAE", {"tooltip": "The VAE from HarmoVid Loader."}),
                "composite": ("IMAGE", {"tooltip": "The composite clip: the person pasted onto the new background."}),
                "background": ("IMAGE", {"tooltip": "The background clip alone, same size and length."}),
                "alpha": (
                    "MASK",
                    {
                        "tooltip": "Foreground alpha of the composite, 1 = person (soft values kept). ComfyUI's "
                        "LoadImage gives 1 - alpha: invert it."
                    },
                ),
            }
        }

    RETURN_TYPES = ("HARMOVID_COND",)
    RETURN_NAMES = ("cond",)
    OUTPUT_TOOLTIPS = ("Composite and background latents, the alpha and the clip length, for the Sampler.",)
    FUNCTION = "encode"
    CATEGORY = CATEGORY

    def encode(self, vae, composite, background, alpha):
        composite = check_frames(composite, "composite")
        background = check_frames(background, "background")
        alpha = check_mask(alpha, "alpha")
        check_same_size(composite, background, "composite", "background")
        check_same_size(composite, alpha, "composite", "alpha")
        check_same_length(composite, background, "composite", "background")
        check_same_length(composite, alpha, "composite", "alpha")
        check_not_empty(alpha, "alpha")
        progress = comfy_adapter.progress(2)
        condition = encode_condition(vae, composite, background, alpha, progress=progress)
        return (condition.to(comfy_adapter.torch_device()),)


class HarmoVidMultiDiffusionTiler:
    DESCRIPTION = (
        "Makes the Sampler denoise in overlapping temporal windows (and optionally spatial tiles), blended at every "
        "step, so clips longer than the model's window (85 frames in the paper) fit in memory without seams. "
        "One window covering the clip gives exactly the plain result."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("HARMOVID_MODEL", {"tooltip": "The model from HarmoVid Loader."}),
                "window_frames": (
                    "INT",
                    {"default": 85, "min": 1, "max": 4097, "step": 4,
                     "tooltip": "Video frames per window (85 in the paper). Memory per step grows with this."},
                ),
                "overlap_frames": (
                    "INT",
                    {"default": 24, "min": 0, "max": 4096, "step": 4,
                     "tooltip": "Video frames shared by neighbouring windows; more hides seams better but costs time."},
                ),
                "weighting": (
                    list(WEIGHTINGS),
                    {"default": "pyramid",
                     "tooltip": "How overlapping windows are blended. pyramid: each window fades from its centre "
                     "(smoothest light across borders in `harmovid bench diffusion`). overlap-linear: linear "
                     "cross-fade over the shared frames only. flat: plain average (visible seams)."},
                ),
                "tile_size": (
                    "INT",
                    {"default": 0, "min": 0, "max": 8192, "step": 16,
                     "tooltip": "Spatial tile height and width in pixels; 0 keeps whole frames. Use for very large "
                     "frames that do not fit in memory."},
                ),
                "tile_overlap": (
                    "INT",
                    {"default": 64, "min": 0, "max": 8192, "step": 8,
                     "tooltip": "Pixels shared by neighbouring spatial tiles."},
                ),
            }
        }

    RETURN_TYPES = ("HARMOVID_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The same model, sampled in windows by HarmoVid Sampler.",)
    FUNCTION = "tile"
    CATEGORY = CATEGORY

    def tile(self, model, window_frames=85, overlap_frames=24, weighting="pyramid", tile_size=0, tile_overlap=64):
        config = model.transformer.config
        settings = MultiDiffusion.from_video_units(
            window_frames,
            overlap_frames,
            weighting,
            tile_size,
            tile_overlap,
            temporal_compression=config.temporal_compression_ratio,
            spatial_compression=config.spatial_compression_ratio,
        )
        return (model.with_multidiffusion(settings),)


class HarmoVidSampler:
    DESCRIPTION = (
        "Denoises the harmonized video latent from the composite, background and alpha (CogVideoX schedule, "
        "classifier-free guidance). Connect a MultiDiffusion Tiler in front for long clips."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("HARMOVID_MODEL", {"tooltip": "From HarmoVid Loader or MultiDiffusion Tiler."}),
                "cond": ("HARMOVID_COND", {"tooltip": "From HarmoVid Encode."}),
                "seed": (
                    "INT",
                    {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                     "tooltip": "Noise seed; the same seed gives the same result on CPU and GPU."},
                ),
                "steps": (
                    "INT",
                    {"default": 50, "min": 1, "max": 1000, "tooltip": "Denoising steps (CogVideoX uses 50)."},
                ),
                "guidance": (
                    "FLOAT",
                    {"default": 6.0, "min": 0.0, "max": 30.0, "step": 0.1,
                     "tooltip": "Classifier-free guidance scale (CogVideoX uses 6). 1 turns it off and halves "
                     "the time per step."},
                ),
                "denoise": (
                    "FLOAT",
                    {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                     "tooltip": "1 starts from pure noise; lower values start from the noised composite and keep "
                     "more of it (0 returns it unchanged)."},
                ),
                "scheduler": (
                    list(SCHEDULERS),
                    {"default": "ddim",
                     "tooltip": "ddim: deterministic (CogVideoX default). dpm: CogVideoX's DPM-Solver++, seeded."},
                ),
            }
        }

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The harmonized video latent [B, C, T', h, w], for HarmoVid Decode.",)
    FUNCTION = "sample"
    CATEGORY = CATEGORY

    def sample(self, model, cond, seed=0, steps=50, guidance=6.0, denoise=1.0, scheduler="ddim"):
        device = comfy_adapter.torch_device()
        if next(model.transformer.parameters()).device != device:
            model.transformer.to(device)
        latent = sample(
            model.transformer,
            cond.to(device),
            seed=seed,
            steps=steps,
            guidance=guidance,
            denoise=denoise,
            scheduler=scheduler,
            multidiffusion=model.multidiffusion,
            progress=comfy_adapter.progress(steps),
        )
        trim = {"frame_count": cond.frame_count, "height": cond.height or None, "width": cond.width or None}
        return ({"samples": latent, **trim},)


class HarmoVidDecode:
    DESCRIPTION = "Decodes a HarmoVid latent to frames, trimmed back to the original clip's length and size."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": ("HARMOVID_VAE", {"tooltip": "The VAE from HarmoVid Loader."}),
                "latent": ("LATENT", {"tooltip": "From HarmoVid Sampler."}),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The harmonized clip, as long as the composite.",)
    FUNCTION = "decode"
    CATEGORY = CATEGORY

    def decode(self, vae, latent):
        samples = latent.get("samples") if isinstance(latent, dict) else None
        if samples is None or samples.ndim != 5:
            shape = tuple(samples.shape) if samples is not None else None
            raise HarmoVidError(
                f"latent: expected a video LATENT {{'samples': [B, C, T', h, w]}}, got {shape}. "
                "Connect the output of HarmoVid Sampler."
            )
        frames = vae.decode(
            samples,
            latent.get("frame_count"),
            latent.get("height"),
            latent.get("width"),
            output_device=comfy_adapter.offload_device(),
            progress=comfy_adapter.progress(1),
        )
        return comfy_adapter.frames_output(frames, "decode")


class HarmoVidDetailTransfer:
    DESCRIPTION = (
        "Keeps the composite's own pixels and adds only the light change HarmoVid made: the decoded frames minus "
        "the VAE's reconstruction of the composite, smoothed. The VAE's loss of detail and colour shift cancel "
        "out. The composite may be larger than the sampled clip (same aspect): sample small, relight full size."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": ("HARMOVID_VAE", {"tooltip": "The VAE from HarmoVid Loader (the one Encode used)."}),
                "cond": ("HARMOVID_COND", {"tooltip": "From HarmoVid Encode: its composite latent is decoded as "
                                           "the reconstruction."}),
                "frames": ("IMAGE", {"tooltip": "The harmonized clip from HarmoVid Decode."}),
                "composite": ("IMAGE", {"tooltip": "The composite that was encoded, or the same clip at a higher "
                                        "resolution with the same aspect ratio."}),
                "radius": (
                    "FLOAT",
                    {"default": 4.0, "min": 0.0, "max": 64.0, "step": 0.5,
                     "tooltip": "Smoothing of the light change, in sampled pixels. Larger drops more of the VAE's "
                     "noise; smaller keeps sharper shadow edges. 0 keeps the change as decoded."},
                ),
            }
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The composite with HarmoVid's light, at the composite's resolution.",)
    FUNCTION = "transfer"
    CATEGORY = CATEGORY

    def transfer(self, vae, cond, frames, composite, radius=4.0):
        reconstruction = vae.decode(
            cond.composite_latent,
            cond.frame_count,
            cond.height or None,
            cond.width or None,
            output_device=comfy_adapter.offload_device(),
            progress=comfy_adapter.progress(1),
        )
        # At the composite's size the result is written over the reconstruction: one copy of the clip less.
        reuse = reconstruction.shape == composite.shape and reconstruction.device.type == "cpu"
        result = transfer_light(frames, reconstruction, composite, radius=radius, out=reconstruction if reuse else None,
                                progress=comfy_adapter.progress(1))
        return comfy_adapter.frames_output(result, "detail")


NODE_CLASS_MAPPINGS = {
    "HarmoVidLoader": HarmoVidLoader,
    "HarmoVidEncode": HarmoVidEncode,
    "HarmoVidMultiDiffusionTiler": HarmoVidMultiDiffusionTiler,
    "HarmoVidSampler": HarmoVidSampler,
    "HarmoVidDecode": HarmoVidDecode,
    "HarmoVidDetailTransfer": HarmoVidDetailTransfer,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "HarmoVidLoader": "HarmoVid Loader",
    "HarmoVidEncode": "HarmoVid Encode",
    "HarmoVidMultiDiffusionTiler": "MultiDiffusion Tiler",
    "HarmoVidSampler": "HarmoVid Sampler",
    "HarmoVidDecode": "HarmoVid Decode",
    "HarmoVidDetailTransfer": "HarmoVid Detail Transfer",
}

"""Nodes: IC-Light Loader and IC-Light Relight (relighting with SD1.5 + IC-Light fbc, frames sharing light).

IC-Light Loader -> IC-Light Relight -> Lighting Deflicker (reference = the composite).
"""

from comfy_harmovid.errors import HarmoVidError
from comfy_harmovid.relight import ICLightRelighter, RelightSettings, load_iclight

from . import comfy_adapter
from .diffusion import DTYPES, _dtype, _model_choices as _choices, _no_models_entry

CATEGORY = "HarmoVid"
ICLIGHT = "iclight"
HOW_TO_GET_WEIGHTS = (
    "IC-Light relighting needs two files you may already have: a Stable Diffusion 1.5 checkpoint "
    "(e.g. v1-5-pruned-emaonly.safetensors or an SD1.5 fine-tune) in models/checkpoints, and "
    "iclight_sd15_fbc.safetensors (lllyasviel/ic-light on Hugging Face) in models/iclight or models/unet. "
    "Then refresh ComfyUI."
)
DEFAULTS = RelightSettings()


def _resolve(kind: str, name: str):
    if name == _no_models_entry(kind) or not comfy_adapter.list_models(kind):
        raise HarmoVidError(f"No {kind} files found. {comfy_adapter.where_models_go(kind)} {HOW_TO_GET_WEIGHTS}")
    return comfy_adapter.resolve_model_path(kind, name)


class HarmoVidICLightLoader:
    DESCRIPTION = (
        "Loads Stable Diffusion 1.5 (a single-file checkpoint from models/checkpoints) with the IC-Light fbc "
        "offset (iclight_sd15_fbc.safetensors from models/iclight or models/unet) for IC-Light Relight. Nothing is "
        "downloaded; the fc model (text-conditioned, 8 channels) is refused: relighting to a background needs fbc."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "checkpoint": (
                    _choices(comfy_adapter.CHECKPOINTS),
                    {"tooltip": "A Stable Diffusion 1.5 single-file checkpoint (.safetensors) in models/checkpoints."},
                ),
                "iclight": (
                    _choices(ICLIGHT),
                    {"tooltip": "iclight_sd15_fbc.safetensors (the background-conditioned IC-Light), in "
                     "models/iclight or models/unet."},
                ),
                "dtype": (
                    list(DTYPES),
                    {"default": "auto", "tooltip": "Weight precision. auto: bf16 on a GPU, fp32 on the CPU."},
                ),
            }
        }

    RETURN_TYPES = ("HARMOVID_ICLIGHT",)
    RETURN_NAMES = ("iclight",)
    OUTPUT_TOOLTIPS = ("SD1.5 with IC-Light fbc (UNet, VAE, text encoder, tokenizer), for IC-Light Relight.",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    def load(self, checkpoint, iclight, dtype="auto"):
        device = comfy_adapter.torch_device()
        models = load_iclight(
            _resolve(comfy_adapter.CHECKPOINTS, checkpoint),
            _resolve(ICLIGHT, iclight),
            tokenizer=comfy_adapter.clip_tokenizer_folder(),
            dtype=_dtype(dtype, device),
            device=device,
        )
        return (models,)


class HarmoVidICLightRelight:
    DESCRIPTION = (
        "Relights the person toward the background with IC-Light (shadows, light direction and intensity, not only "
        "colour), frame by frame with Consistent Light Attention so the frames share one light; long clips run in "
        "chunks that carry the light along. Only the smooth light change is put back on the composite (the person "
        "keeps its detail), through the alpha onto the untouched background. Follow with Lighting Deflicker "
        "(reference = the composite)."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "iclight": ("HARMOVID_ICLIGHT", {"tooltip": "From IC-Light Loader."}),
                "composite": ("IMAGE", {"tooltip": "The composite clip: the person pasted onto the new background."}),
                "alpha": (
                    "MASK",
                    {"tooltip": "Where the person is, 1 = foreground (e.g. Composite's alpha). ComfyUI's LoadImage "
                     "gives 1 - alpha: invert it."},
                ),
                "background": ("IMAGE", {"tooltip": "The clean background clip (Composite's background output), "
                                         "same size and length; IC-Light lights the person by it."}),
                "prompt": ("STRING", {"default": DEFAULTS.prompt, "multiline": True,
                                      "tooltip": "What the relit frames show; light words (e.g. 'warm sunset light "
                                      "from the left') steer the light."}),
                "negative_prompt": ("STRING", {"default": DEFAULTS.negative_prompt, "multiline": True,
                                               "tooltip": "What to avoid (used when cfg is above 1)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                 "tooltip": "Noise seed; every frame gets the same noise."}),
                "steps": ("INT", {"default": DEFAULTS.steps, "min": 1, "max": 200,
                                  "tooltip": "Denoising steps of the full schedule (IC-Light's demo uses 20-25)."}),
                "denoise": ("FLOAT", {"default": DEFAULTS.denoise, "min": 0.0, "max": 1.0, "step": 0.01,
                                      "tooltip": "How much is redrawn: 1 starts from noise (strongest relighting), "
                                      "lower keeps more of the composite's light; 0 returns the composite."}),
                "cfg": ("FLOAT", {"default": DEFAULTS.guidance, "min": 1.0, "max": 30.0, "step": 0.1,
                                  "tooltip": "Classifier-free guidance scale; 1 turns it off and halves the time."}),
                "consistency": ("FLOAT", {"default": DEFAULTS.consistency, "min": 0.0, "max": 1.0, "step": 0.05,
                                          "tooltip": "How strongly the frames share one light (Consistent Light "
                                          "Attention): 0 = each frame on its own, 1 = fully shared."}),
            },
            "optional": {
                "chunk_frames": ("INT", {"default": DEFAULTS.chunk_frames, "min": 1, "max": 256,
                                         "tooltip": "Frames denoised together; memory grows with this, not with the "
                                         "clip. The light is carried from chunk to chunk."}),
                "resolution": ("INT", {"default": DEFAULTS.resolution, "min": 64, "max": 2048, "step": 8,
                                       "tooltip": "Working short side in pixels (IC-Light works best near 512). The "
                                       "light is applied to the composite at its own resolution."}),
                "light_smoothing": ("FLOAT", {"default": DEFAULTS.light_smoothing, "min": 0.0, "max": 64.0,
                                              "step": 0.5, "tooltip": "Smoothing of the light change, in working "
                                              "pixels: larger keeps more of the person's own detail, smaller "
                                              "keeps sharper shadow edges."}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("relit",)
    OUTPUT_TOOLTIPS = ("The relit clip, same size and length as the composite; the background is unchanged.",)
    FUNCTION = "relight"
    CATEGORY = CATEGORY

    def relight(self, iclight, composite, alpha, background, prompt=DEFAULTS.prompt,
                negative_prompt=DEFAULTS.negative_prompt, seed=0, steps=DEFAULTS.steps, denoise=DEFAULTS.denoise,
                cfg=DEFAULTS.guidance, consistency=DEFAULTS.consistency, chunk_frames=DEFAULTS.chunk_frames,
                resolution=DEFAULTS.resolution, light_smoothing=DEFAULTS.light_smoothing):
        settings = RelightSettings(
            prompt=prompt, negative_prompt=negative_prompt, seed=int(seed), steps=int(steps), denoise=float(denoise),
            guidance=float(cfg), consistency=float(consistency), chunk_frames=int(chunk_frames),
            resolution=int(resolution), light_smoothing=float(light_smoothing),
        )
        relighter = ICLightRelighter(iclight, settings)
        relit = relighter.process(composite, alpha, background, progress=comfy_adapter.progress())
        return comfy_adapter.frames_output(relit, "relight")


NODE_CLASS_MAPPINGS = {
    "HarmoVidICLightLoader": HarmoVidICLightLoader,
    "HarmoVidICLightRelight": HarmoVidICLightRelight,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "HarmoVidICLightLoader": "IC-Light Loader",
    "HarmoVidICLightRelight": "IC-Light Relight",
}

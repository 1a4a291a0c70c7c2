"""Nodes: HarmoIm Frames (per-frame harmonization) and Lighting Deflicker (temporal consistency)."""

from comfy_harmovid.deflicker import deflicker
from comfy_harmovid.harmoim import METHODS, PersonTrims, harmonize_frames, skin

from . import comfy_adapter

# Frames per engine step: the progress bar ticks (and Cancel is checked) once per chunk.
CHUNK_FRAMES = 16

DEFAULT_WEIGHTS = "default"

STRENGTH_OPTIONS = {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05}

# The artist's trims on the person after the automatic change (harmoim.PersonTrims): widget type and step.
PERSON_TRIM_WIDGETS = {"exposure": ("FLOAT", 0.05), "temperature": ("INT", 100), "tint": ("FLOAT", 0.01),
                       "saturation": ("FLOAT", 0.05)}


def as_tooltip(help_text: str) -> str:
    """A command's help text (lower case, no full stop) as a node tooltip sentence."""
    return help_text[0].upper() + help_text[1:] + "."


def person_trim_inputs() -> dict:
    """The optional ``person_*`` widgets of HarmoIm Frames, with PersonTrims' defaults, ranges and help."""
    defaults = PersonTrims()
    inputs = {}
    for name, (kind, step) in PERSON_TRIM_WIDGETS.items():
        cast = int if kind == "INT" else float
        low, high = PersonTrims.RANGES[name]
        tooltip = as_tooltip(PersonTrims.HELP[name])
        inputs[f"person_{name}"] = (kind, {"default": cast(getattr(defaults, name)), "min": cast(low), "max": cast(high),
                                           "step": step, "tooltip": tooltip})
    return inputs


class HarmoVidHarmoImFrames:
    DESCRIPTION = (
        "Per-frame harmonization of a composite toward the scene's light, applied through the soft alpha "
        "(pixels outside it never change) and smoothed over time; follow with Lighting Deflicker for the rest. "
        "learned: a small network shipped with the pack predicts a colour transform per frame "
        "(colour matrices for shadows, midtones and highlights); with skin_balance on, the face's skin is also "
        "taken part of the way back toward natural skin. statistics: weights-free; moves the person's "
        "colour cast, exposure and contrast part of the way toward the background, only as far as the evidence "
        "supports. auto: learned when its weights are there, else statistics. The person_ widgets trim the "
        "person after the automatic change (exposure, white balance, saturation), where it cannot tell a "
        "look to undo from how the person was filmed; with strength 0 only the trims apply."
    )
    CATEGORY = "HarmoVid"
    FUNCTION = "harmonize"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("harmonized",)
    OUTPUT_TOOLTIPS = ("The harmonized frames, same size and length as the composite.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "composite": ("IMAGE", {"tooltip": "The composite frames (person over the new background)."}),
                "alpha": (
                    "MASK",
                    {
                        "tooltip": "Where the person is, 1 = foreground, same size and length as the composite "
                        "(e.g. Composite's alpha output). ComfyUI's LoadImage gives 1 - alpha: invert it first."
                    },
                ),
                "method": (
                    ["auto"] + list(METHODS),
                    {"default": "auto", "tooltip": "auto: learned when its weights are present, else statistics. "
                     "learned: the shipped network (or the weights chosen below). statistics: weights-free."},
                ),
                "strength": (
                    "FLOAT",
                    dict(STRENGTH_OPTIONS, tooltip="0 = unchanged, 1 = the full (already cautious) correction."),
                ),
            },
            "optional": {
                "background": (
                    "IMAGE",
                    {
                        "tooltip": "The clean background frames (Composite's background output), for the statistics "
                        "method. Without it the composite outside the alpha is used as the background's light."
                    },
                ),
                "weights": (
                    [DEFAULT_WEIGHTS] + comfy_adapter.list_models("harmoim"),
                    {"default": DEFAULT_WEIGHTS, "tooltip": "Learned HarmoIm weights from ComfyUI/models/harmoim (train your "
                     "own with `harmovid train harmoim`); default: the weights shipped with the pack."},
                ),
                "skin_balance": (
                    "BOOLEAN",
                    {"default": False, "tooltip": as_tooltip(skin.HELP)},
                ),
                **person_trim_inputs(),
            },
        }

    def harmonize(self, composite, alpha, method, strength, background=None, weights=DEFAULT_WEIGHTS,
                  skin_balance=False, person_exposure=PersonTrims.exposure, person_temperature=PersonTrims.temperature,
                  person_tint=PersonTrims.tint, person_saturation=PersonTrims.saturation):
        path = None if weights == DEFAULT_WEIGHTS else comfy_adapter.resolve_model_path("harmoim", weights)
        person_trims = PersonTrims(person_exposure, person_temperature, person_tint, person_saturation)
        out = harmonize_frames(
            composite,
            alpha,
            background,
            method=method,
            strength=float(strength),
            weights=path,
            trims=person_trims,
            skin_balance=bool(skin_balance),
            progress=comfy_adapter.progress(),
            chunk_frames=CHUNK_FRAMES,
        )
        return comfy_adapter.frames_output(out, "harmoim")


class HarmoVidLightingDeflicker:
    DESCRIPTION = (
        "Removes lighting flicker (global colour and exposure, local shadows, channel-mixing grades) that "
        "frame-by-frame processing leaves, keeping each frame's detail: each frame follows the frames before and "
        "after it, carried along by optical flow wherever the motion can be trusted (occlusions and shot cuts "
        "start afresh). Give the unprocessed video as reference for the motion (its colours are never copied; "
        "with the alpha it tells the person from what is behind at soft edges) and the alpha to correct only "
        "the person."
    )
    CATEGORY = "HarmoVid"
    FUNCTION = "deflicker"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The deflickered frames, same size and length as the input.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "The flickering frames, e.g. HarmoIm Frames' output."}),
                "strength": (
                    "FLOAT",
                    dict(STRENGTH_OPTIONS, tooltip="0 = unchanged; 1 = steadiest. Light changes that the "
                         "reference also shows pass at once; without a reference, lower it if slow, intended "
                         "light changes lag behind."),
                ),
            },
            "optional": {
                "reference": (
                    "IMAGE",
                    {
                        "tooltip": "The unprocessed video (e.g. the composite before harmonization), same size and "
                        "length; used for the motion and, with the mask, to tell the person from what is behind at "
                        "soft edges (its colours are never copied). Without it the motion is taken from the frames "
                        "themselves."
                    },
                ),
                "mask": (
                    "MASK",
                    {
                        "tooltip": "Correct only here (1 = foreground), e.g. the alpha; the rest is untouched. "
                        "Without it the whole frame is corrected."
                    },
                ),
            },
        }

    def deflicker(self, frames, strength, reference=None, mask=None):
        out = deflicker(
            frames,
            reference=reference,
            mask=mask,
            strength=float(strength),
            progress=comfy_adapter.progress(),
        )
        return comfy_adapter.frames_output(out, "deflicker")


NODE_CLASS_MAPPINGS = {
    "HarmoVidHarmoImFrames": HarmoVidHarmoImFrames,
    "HarmoVidLightingDeflicker": HarmoVidLightingDeflicker,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "HarmoVidHarmoImFrames": "HarmoIm Frames",
    "HarmoVidLightingDeflicker": "Lighting Deflicker",
}

"""Nodes: Pseudo-Alpha (soft edge from a mask) and Composite (foreground over background)."""

from comfy_harmovid.alpha import pseudo_alpha
from comfy_harmovid.composite import ANCHORS, LENGTH_POLICIES, composite
from comfy_harmovid.previews import cutout, preview_frames

from . import comfy_adapter

# Frames per engine step: the progress bar ticks (and Cancel is checked) once per chunk.
CHUNK_FRAMES = 16


class HarmoVidPseudoAlpha:
    DESCRIPTION = (
        "Turns a binary or rough person mask into a soft alpha: it decays smoothly across the mask edge, "
        "snaps to the image's own edges (hair) using the frames as a guide, stays exactly 0 or 1 farther "
        "than band_width pixels from the edge, and is smoothed over time so the edge does not shimmer. "
        "Feed it to Composite and to the harmonization nodes."
    )
    CATEGORY = "HarmoVid"
    FUNCTION = "make_alpha"
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("alpha",)
    OUTPUT_TOOLTIPS = ("Soft alpha [T, H, W], 1 = foreground, same size and length as the frames.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "The video frames the mask belongs to; they guide the edge."}),
                "mask": (
                    "MASK",
                    {
                        "tooltip": "Person mask, 1 = foreground (binary or rough), same size and length as the "
                        "frames. ComfyUI's LoadImage gives 1 - alpha: invert it first."
                    },
                ),
                "band_width": (
                    "INT",
                    {
                        "default": 12,
                        "min": 1,
                        "max": 256,
                        "step": 1,
                        "tooltip": "Pixels on each side of the mask edge where the alpha may be soft; outside this "
                        "band it is exactly 0 or 1. 12 suits 480p-1080p; raise it for 4K or for masks that "
                        "are off by more than a few pixels.",
                    },
                ),
                "edge_awareness": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 0.05,
                        "tooltip": "0 = a plain smooth ramp across the mask edge; 1 = follow the image's own "
                        "edges (hair, anti-aliased outlines); where the image shows no edge the alpha still "
                        "decays smoothly.",
                    },
                ),
                "temporal_smoothing": (
                    "FLOAT",
                    {
                        "default": 0.5,
                        "min": 0.0,
                        "max": 0.95,
                        "step": 0.05,
                        "tooltip": "How much the soft edge is averaged with the previous frame where the image "
                        "did not move; removes shimmer. 0 = per frame.",
                    },
                ),
            }
        }

    def make_alpha(self, frames, mask, band_width, edge_awareness, temporal_smoothing):
        alpha = pseudo_alpha(
            frames,
            mask,
            band_width=int(band_width),
            edge_awareness=float(edge_awareness),
            temporal_smoothing=float(temporal_smoothing),
            progress=comfy_adapter.progress(),
            chunk_frames=CHUNK_FRAMES,
        )
        alpha = alpha.to(comfy_adapter.offload_device())
        return comfy_adapter.with_ui((alpha,), lambda: comfy_adapter.frame_previews(frames, alpha, name="alpha"))


def placement_preview(foreground, alpha, background, composite) -> dict:
    """What the Composite node shows: the result with a frame slider, and the layers its placement
    preview moves by hand (the first foreground frame cut out by its alpha, the first background frame)."""
    layers = {
        "harmovid_foreground": comfy_adapter.save_pictures([cutout(foreground[0], alpha[0])], "foreground"),
        "harmovid_background": comfy_adapter.save_pictures(preview_frames(background[:1])[1], "background"),
    }
    return {**comfy_adapter.frame_previews(composite, name="composite"), **layers}


class HarmoVidComposite:
    DESCRIPTION = (
        "Places a foreground clip with its alpha over a background clip: scale, anchor and offsets, "
        "different resolutions, lengths (shortest / loop / ping-pong / hold) and frame rates (resampled "
        "by time; the output runs at the background's frame rate). The foreground's soft edge is "
        "cleaned of its old background colour (decontaminate). Outputs the composite, the placed alpha "
        "and the background frames aligned with it, all at background size. The preview in the node "
        "shows the person on the first background frame: drag them to move, drag the corner or use the "
        "wheel to scale."
    )
    CATEGORY = "HarmoVid"
    FUNCTION = "composite"
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE")
    RETURN_NAMES = ("composite", "alpha", "background")
    OUTPUT_TOOLTIPS = (
        "The composite frames at background size.",
        "The foreground's alpha placed on the background canvas, 1 = foreground.",
        "The background frames matching each composite frame (after length and frame-rate alignment).",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "foreground": ("IMAGE", {"tooltip": "The person clip, at its own size and length."}),
                "background": ("IMAGE", {"tooltip": "The new scene; sets the output size and frame rate."}),
                "alpha": (
                    "MASK",
                    {
                        "tooltip": "Foreground alpha, 1 = foreground, same size and length as the foreground "
                        "(e.g. from Pseudo-Alpha). ComfyUI's LoadImage gives 1 - alpha: invert it first."
                    },
                ),
                "scale": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": 0.05,
                        "max": 8.0,
                        "step": 0.01,
                        "tooltip": "1 = fit the foreground inside the background (a portrait gets the "
                        "background's height); 0.5 = half that size.",
                    },
                ),
                "x": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": -2.0,
                        "max": 2.0,
                        "step": 0.01,
                        "tooltip": "Horizontal shift from the anchor, as a fraction of the background width "
                        "(positive = right).",
                    },
                ),
                "y": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": -2.0,
                        "max": 2.0,
                        "step": 0.01,
                        "tooltip": "Vertical shift from the anchor, as a fraction of the background height "
                        "(positive = down).",
                    },
                ),
                "anchor": (
                    list(ANCHORS),
                    {
                        "default": "bottom-center",
                        "tooltip": "Which point of the foreground is pinned to the same point of the background; "
                        "bottom-center keeps a portrait standing on the bottom edge.",
                    },
                ),
                "length_policy": (
                    list(LENGTH_POLICIES),
                    {
                        "default": "shortest",
                        "tooltip": "When the clips differ in length: stop at the shorter (shortest), or run for "
                        "the longer and loop, ping-pong, or hold the last frame of the shorter.",
                    },
                ),
                "foreground_fps": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": 0.0,
                        "max": 240.0,
                        "step": 0.001,
                        "tooltip": "Frame rate of the foreground clip; 0 = unknown (clips are taken frame by frame).",
                    },
                ),
                "background_fps": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": 0.0,
                        "max": 240.0,
                        "step": 0.001,
                        "tooltip": "Frame rate of the background clip (the output's frame rate); 0 = unknown "
                        "(clips are taken frame by frame).",
                    },
                ),
                "decontaminate": (
                    "BOOLEAN",
                    {
                        "default": True,
                        "tooltip": "Remove the old background's colour from the foreground's soft edge, so a "
                        "green screen or bright wall does not fringe the outline.",
                    },
                ),
            }
        }

    def composite(
        self, foreground, background, alpha, scale, x, y, anchor, length_policy, foreground_fps, background_fps, decontaminate
    ):
        result = composite(
            foreground,
            background,
            alpha,
            scale=float(scale),
            x=float(x),
            y=float(y),
            anchor=anchor,
            length_policy=length_policy,
            foreground_fps=float(foreground_fps) or None,
            background_fps=float(background_fps) or None,
            decontaminate=bool(decontaminate),
            progress=comfy_adapter.progress(),
            chunk_frames=CHUNK_FRAMES,
        )
        device = comfy_adapter.offload_device()
        outputs = (result.composite.to(device), result.alpha.to(device), result.background.to(device))
        return comfy_adapter.with_ui(outputs, lambda: placement_preview(foreground, alpha, background, outputs[0]))


NODE_CLASS_MAPPINGS = {
    "HarmoVidPseudoAlpha": HarmoVidPseudoAlpha,
    "HarmoVidComposite": HarmoVidComposite,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "HarmoVidPseudoAlpha": "Pseudo-Alpha",
    "HarmoVidComposite": "Composite",
}

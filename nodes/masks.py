"""Node: SAM2 Mask (person masks from the built-in segmenter or a SAM 2 checkpoint)."""

import math

from comfy_harmovid.segment import segment_portrait, segment_with_sam2
from comfy_harmovid.previews import mask_layer, preview_frames
from comfy_harmovid.segment.prompts import Prompts

from . import comfy_adapter

BUILTIN = "built-in (MediaPipe)"
# Frames per engine step for the built-in segmenter: progress (and Cancel) once per chunk.
CHUNK_FRAMES = 16


def prompt_preview(frames, mask, prompt_frame: int) -> dict:
    """What the SAM2 Mask node shows: its mask over the clip with a frame slider, and the prompt frame
    and its mask as separate pictures for the points editor (the mask drawn over the frame it shows)."""
    prompt_frame = min(prompt_frame, frames.shape[0] - 1)  # without prompts the built-in model ignores it
    return {
        **comfy_adapter.frame_previews(frames, mask, name="mask"),
        "harmovid_prompt_frame": comfy_adapter.save_pictures(preview_frames(frames[prompt_frame : prompt_frame + 1])[1], "prompt"),
        "harmovid_prompt_mask": comfy_adapter.save_pictures([mask_layer(mask[prompt_frame])], "prompt_mask"),
        "harmovid_prompt_index": [prompt_frame],
        "harmovid_prompt_size": [frames.shape[2], frames.shape[1]],  # the pixels the prompts are written in
    }


class HarmoVidSAM2Mask:
    DESCRIPTION = (
        "Masks the person in a clip (1 = person). The built-in segmenter needs no download and is made "
        "stable over time; with a SAM 2 checkpoint in models/sam2 (e.g. sam2.1_hiera_base_plus.safetensors) "
        "the person is tracked through the clip from points or a box on one frame, or, with no prompt, "
        "from the built-in segmenter's person on that frame. With the built-in model the points and box "
        "choose among the people it finds (kept by a point or the box, dropped by a negative point), followed "
        "through the clip. Click on the frame shown in the node to add points (shift-click: not the person, "
        "drag: box). Feed the mask to Pseudo-Alpha for a soft edge."
    )
    CATEGORY = "HarmoVid"
    FUNCTION = "segment"
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("mask",)
    OUTPUT_TOOLTIPS = ("Binary person mask [T, H, W], 1 = person, same size and length as the frames.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "The video frames to mask."}),
                "model": (
                    [BUILTIN] + comfy_adapter.list_models("sam2"),
                    {
                        "default": BUILTIN,
                        "tooltip": "built-in (MediaPipe): no download, fast, good on portraits. Or a SAM 2 "
                        "checkpoint from models/sam2 (.safetensors only; the file name must say sam2 or sam2.1 "
                        "and tiny/small/base_plus/large; convert official .pt files with `harmovid convert-sam2`).",
                    },
                ),
                "prompt_frame": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 100000,
                        "tooltip": "The frame the points/box refer to; the chosen person is tracked forward and "
                        "backward from it. Pick a frame where the person is clearly visible.",
                    },
                ),
                "threshold": (
                    "FLOAT",
                    {
                        "default": 0.5,
                        "min": 0.01,
                        "max": 0.99,
                        "step": 0.01,
                        "tooltip": "Probability above which a pixel is the person. Lower keeps more hair and "
                        "edges, higher trims background.",
                    },
                ),
                "temporal_smoothing": (
                    "FLOAT",
                    {
                        "default": 0.6,
                        "min": 0.0,
                        "max": 0.95,
                        "step": 0.05,
                        "tooltip": "Built-in segmenter: how much each frame's mask follows the previous one "
                        "(motion-compensated, reset on cuts); removes edge flicker. 0 = per frame. SAM 2 tracks "
                        "with its own memory and ignores this.",
                    },
                ),
            },
            "optional": {
                "points": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "Pixels on the person on prompt_frame, as 'x,y; x,y' (or the JSON "
                        "[{\"x\":..,\"y\":..}] of point-editor nodes); click on the frame in the node to add them. "
                        "Built-in model: keeps the people clicked on and drops the others. Empty with no box = "
                        "every person (built-in) or the most prominent one (SAM 2).",
                    },
                ),
                "negative_points": (
                    "STRING",
                    {"default": "", "tooltip": "Pixels that are NOT the person, as 'x,y; x,y' (shift-click on the "
                     "frame). Built-in model: drops the people they fall on."},
                ),
                "box": (
                    "STRING",
                    {"default": "", "tooltip": "Box around the person on prompt_frame, 'x1,y1,x2,y2' pixels (drag on the "
                     "frame). Built-in model: keeps the people lying mostly inside it."},
                ),
            },
        }

    def segment(self, frames, model, prompt_frame, threshold, temporal_smoothing, points="", negative_points="", box=""):
        prompts = Prompts.parse(points, negative_points, box)  # malformed text fails with either model
        if model == BUILTIN:
            mask = segment_portrait(
                frames,
                threshold=float(threshold),
                temporal_smoothing=float(temporal_smoothing),
                prompts=prompts,
                prompt_frame=int(prompt_frame),
                progress=comfy_adapter.progress(),
                chunk_size=CHUNK_FRAMES,
            )
        else:
            mask = segment_with_sam2(
                frames,
                checkpoint=comfy_adapter.resolve_model_path("sam2", model),
                points=(prompts.positive + prompts.negative) or None,
                point_labels=[1] * len(prompts.positive) + [0] * len(prompts.negative) or None,
                box=prompts.box,
                prompt_frame=int(prompt_frame),
                threshold=math.log(threshold / (1.0 - threshold)),  # SAM 2 thresholds logits
                device=comfy_adapter.torch_device(),
                progress=comfy_adapter.progress(),
            )
        mask = mask.to(comfy_adapter.offload_device())
        return comfy_adapter.with_ui((mask,), lambda: prompt_preview(frames, mask, int(prompt_frame)))


NODE_CLASS_MAPPINGS = {"HarmoVidSAM2Mask": HarmoVidSAM2Mask}
NODE_DISPLAY_NAME_MAPPINGS = {"HarmoVidSAM2Mask": "SAM2 Mask"}

"""The schemas of the ComfyUI core nodes the example workflows use, copied by hand from ComfyUI
(comfy_extras/nodes_video.py, comfy_extras/nodes_mask.py) and its front end. tests/test_workflows.py
compares them with a running ComfyUI's /object_info when HARMOVID_COMFYUI_URL is set."""

from typing import Any, Dict

# Note and MarkdownNote are front-end-only nodes, left out of the API format.
CORE_NODES: Dict[str, Dict[str, Any]] = {
    "LoadVideo": {
        "display_name": "Load Video",
        "input": {"required": {"file": ("COMBO", {"options": [], "video_upload": True})}},
        "output": ["VIDEO"], "output_name": ["VIDEO"],
    },
    "GetVideoComponents": {
        "display_name": "Get Video Components",
        "input": {"required": {"video": ("VIDEO", {})}},
        "output": ["IMAGE", "AUDIO", "FLOAT"], "output_name": ["images", "audio", "fps"],
    },
    "CreateVideo": {
        "display_name": "Create Video",
        "input": {
            "required": {"images": ("IMAGE", {}),
                         "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0, "step": 1.0})},
            "optional": {"audio": ("AUDIO", {})},
        },
        "output": ["VIDEO"], "output_name": ["VIDEO"],
    },
    "SaveVideo": {
        "display_name": "Save Video",
        "input": {"required": {
            "video": ("VIDEO", {}),
            "filename_prefix": ("STRING", {"default": "video/ComfyUI"}),
            "format": ("COMBO", {"options": ["auto", "mp4"], "default": "auto"}),
            "codec": ("COMBO", {"options": ["auto", "h264"], "default": "auto"}),
        }},
        "output": [], "output_name": [], "output_node": True,
    },
    "MaskToImage": {
        "display_name": "Convert Mask to Image",
        "input": {"required": {"mask": ("MASK",)}},
        "output": ["IMAGE"], "output_name": ["IMAGE"],
    },
    "Note": {
        "display_name": "Note", "virtual": True,
        "input": {"required": {"text": ("STRING", {"multiline": True})}}, "output": [], "output_name": [],
    },
    "MarkdownNote": {
        "display_name": "Markdown Note", "virtual": True,
        "input": {"required": {"text": ("STRING", {"multiline": True})}}, "output": [], "output_name": [],
    },
}


# Combo inputs whose choices are files on the server (input folder, model folders): any name is valid here.
FILE_COMBOS = {("LoadVideo", "file"), ("HarmoVidLoader", "transformer"), ("HarmoVidLoader", "vae"), ("HarmoVidSAM2Mask", "model"),
               ("HarmoVidICLightLoader", "checkpoint"), ("HarmoVidICLightLoader", "iclight")}

"""The five example workflows this pack ships in workflows/ (UI format) and workflows/api/ (API format)."""

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from comfy_harmovid.atomic import atomic_output

from .graph_format import NodeSpec, Schemas, WorkflowSpec, dumps, to_api, to_ui


def _video_in(first_id: int, y: int, title: str, file: str) -> List[NodeSpec]:
    """Load Video -> Get Video Components, ids ``first_id`` and ``first_id + 1``."""
    return [
        NodeSpec(first_id, "LoadVideo", (0, y), {"file": file}, title=title),
        NodeSpec(first_id + 1, "GetVideoComponents", (360, y), links={"video": (first_id, 0)}),
    ]


def _video_out(first_id: int, x: int, images: Tuple[int, int], fps: Tuple[int, int], prefix: str,
               audio: Optional[Tuple[int, int]] = None) -> List[NodeSpec]:
    """Create Video -> Save Video, ids ``first_id`` and ``first_id + 1``."""
    links = {"images": images, "fps": fps, **({"audio": audio} if audio else {})}
    return [
        NodeSpec(first_id, "CreateVideo", (x, 0), links=links),
        NodeSpec(first_id + 1, "SaveVideo", (x + 360, 0), {"filename_prefix": prefix}, links={"video": (first_id, 0)}),
    ]


def _note(node_id: int, pos: Tuple[int, int], text: str) -> NodeSpec:
    """A Note node. Lines are joined so the note reflows; a blank line or a numbered step starts a new line."""
    paragraphs: List[str] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        for line in (line.strip() for line in block.splitlines()):
            if paragraphs and not re.match(r"\d+\.\s", line) and not block.lstrip().startswith(line):
                paragraphs[-1] += " " + line
            else:
                paragraphs.append(line)
    return NodeSpec(node_id, "Note", pos, {"text": "\n".join(paragraphs)}, title="About this workflow")


def _portrait_front(y_background: int = 420) -> List[NodeSpec]:
    """Foreground and background clips in, the person cut out and composited: nodes 1-7."""
    return [
        *_video_in(1, 0, "Load Video (foreground: the person)", "foreground.mp4"),
        *_video_in(3, y_background, "Load Video (background: the new scene)", "background.mp4"),
        NodeSpec(5, "HarmoVidSAM2Mask", (720, 0), links={"frames": (2, 0)}),
        NodeSpec(6, "HarmoVidPseudoAlpha", (1080, 0), links={"frames": (2, 0), "mask": (5, 0)}),
        NodeSpec(7, "HarmoVidComposite", (1440, 0), links={
            "foreground": (2, 0), "background": (4, 0), "alpha": (6, 0), "foreground_fps": (2, 2), "background_fps": (4, 2)}),
    ]


def builtin_harmonization() -> WorkflowSpec:
    return WorkflowSpec("harmovid_builtin_harmonization", [
        *_portrait_front(),
        NodeSpec(8, "HarmoVidHarmoImFrames", (1800, 0), links={"composite": (7, 0), "alpha": (7, 1), "background": (7, 2)}),
        NodeSpec(9, "HarmoVidLightingDeflicker", (2160, 0), links={"frames": (8, 0), "reference": (7, 0), "mask": (7, 1)}),
        *_video_out(10, 2520, images=(9, 0), fps=(4, 2), prefix="harmovid/harmonized", audio=(2, 1)),
        _note(12, (0, 900), """
Built-in relightful harmonization (no model weights needed).
1. Load the person clip (foreground) and the new scene (background).
2. SAM2 Mask finds the person; Pseudo-Alpha softens the edge; Composite places the person on the scene
   (scale / x / y / anchor) and matches lengths and frame rates.
3. HarmoIm Frames relights each frame to the scene (its person_ widgets trim the person's exposure,
   white balance and saturation by hand afterwards); Lighting Deflicker removes the flicker that
   per-frame relighting leaves, keeping the relit look.

The result keeps the foreground's audio and is saved to output/harmovid/.
"""),
    ])


def diffusion_harmonization() -> WorkflowSpec:
    return WorkflowSpec("harmovid_diffusion", [
        *_portrait_front(),
        NodeSpec(8, "HarmoVidLoader", (1440, 420), {"transformer": "harmovid.safetensors", "vae": "cogvideox_vae.safetensors"}),
        NodeSpec(9, "HarmoVidEncode", (1800, 0), links={"vae": (8, 1), "composite": (7, 0), "background": (7, 2), "alpha": (7, 1)}),
        NodeSpec(10, "HarmoVidMultiDiffusionTiler", (1800, 420), links={"model": (8, 0)}),
        NodeSpec(11, "HarmoVidSampler", (2160, 0), links={"model": (10, 0), "cond": (9, 0)}),
        NodeSpec(12, "HarmoVidDecode", (2520, 0), links={"vae": (8, 1), "latent": (11, 0)}),
        NodeSpec(13, "HarmoVidDetailTransfer", (2880, 0), links={
            "vae": (8, 1), "cond": (9, 0), "frames": (12, 0), "composite": (7, 0)}),
        *_video_out(14, 3240, images=(13, 0), fps=(4, 2), prefix="harmovid/diffusion", audio=(2, 1)),
        _note(16, (0, 900), """
HarmoVid diffusion harmonization (needs HarmoVid weights).

Put the transformer in models/harmovid and the VAE in models/harmovid_vae (make a starting checkpoint with
`harmovid convert`, or train one), then pick them in HarmoVid Loader.

The composite, background and alpha are encoded; the Sampler denoises a harmonized video latent;
MultiDiffusion Tiler splits clips longer than one window (85 frames) into overlapping windows blended
at every step. Decode turns the latent back into frames; Detail Transfer keeps the composite's own
pixels and adds only the light the model changed (the VAE's loss of detail cancels out). The result is
saved to output/harmovid/.
"""),
    ])


def ic_light_relighting() -> WorkflowSpec:
    return WorkflowSpec("harmovid_ic_light", [
        *_portrait_front(),
        NodeSpec(8, "HarmoVidICLightLoader", (1440, 420), {
            "checkpoint": "v1-5-pruned-emaonly.safetensors", "iclight": "iclight_sd15_fbc.safetensors"}),
        NodeSpec(9, "HarmoVidICLightRelight", (1800, 0), links={
            "iclight": (8, 0), "composite": (7, 0), "alpha": (7, 1), "background": (7, 2)}),
        NodeSpec(10, "HarmoVidLightingDeflicker", (2160, 0), links={"frames": (9, 0), "reference": (7, 0), "mask": (7, 1)}),
        *_video_out(11, 2520, images=(10, 0), fps=(4, 2), prefix="harmovid/ic_light", audio=(2, 1)),
        _note(13, (0, 900), """
IC-Light relighting: shadows, light direction and intensity from the background, with weights many
users already have.

Files: a Stable Diffusion 1.5 single-file checkpoint (e.g. v1-5-pruned-emaonly.safetensors or an SD1.5
fine-tune) in models/checkpoints, and iclight_sd15_fbc.safetensors (lllyasviel/ic-light; the
background-conditioned model, not fc) in models/iclight or models/unet. Pick them in IC-Light Loader.

IC-Light Relight relights each frame toward the background; Consistent Light Attention makes the frames
of a chunk share one light, carried from chunk to chunk. Only the smooth light change is added to the
composite, so the person keeps its detail, and the background is never changed. Lighting Deflicker
(reference = the composite) removes what is left of the flicker. Saved to output/harmovid/.
"""),
    ])


def deflicker_only() -> WorkflowSpec:
    return WorkflowSpec("harmovid_deflicker", [
        *_video_in(1, 0, "Load Video (flickering: processed frame by frame)", "flickering.mp4"),
        *_video_in(3, 420, "Load Video (reference: the original, steady clip)", "original.mp4"),
        NodeSpec(5, "HarmoVidLightingDeflicker", (720, 0), links={"frames": (2, 0), "reference": (4, 0)}),
        *_video_out(6, 1080, images=(5, 0), fps=(2, 2), prefix="harmovid/deflickered", audio=(2, 1)),
        _note(8, (0, 900), """
Lighting deflicker only.

Give it a clip that was processed frame by frame (relit, colour graded, stylized) and so flickers, and
the original clip it was made from. Motion is taken from the original; the processed look is kept
while its frame-to-frame flicker (global brightness and local shadows) is removed.
"""),
    ])


def sam2_point_prompts() -> WorkflowSpec:
    return WorkflowSpec("harmovid_sam2_points", [
        *_video_in(1, 0, "Load Video (the person clip)", "foreground.mp4"),
        NodeSpec(3, "HarmoVidSAM2Mask", (720, 0), {
            "model": "sam2.1_hiera_base_plus.safetensors", "points": "256,170; 256,400", "negative_points": "30,30",
        }, links={"frames": (2, 0)}),
        NodeSpec(4, "MaskToImage", (1080, 0), links={"mask": (3, 0)}),
        *_video_out(5, 1440, images=(4, 0), fps=(2, 2), prefix="harmovid/mask"),
        _note(7, (0, 600), """
SAM 2 mask with point prompts (needs a SAM 2 checkpoint in models/sam2, .safetensors; convert the
official .pt files with `harmovid convert-sam2`).

Click on the frame shown in the SAM2 Mask node to add points on the person, shift-click for points
that are not the person, drag for a box; click a point to remove it. They are written into points,
negative_points and box as pixels of prompt_frame ('x,y; x,y'; the example suits a 512x512 portrait:
head and chest).

SAM 2 tracks the person forward and backward from prompt_frame. Pick "built-in (MediaPipe)" as the
model to mask without weights: the points then choose among the people it finds. The mask video
(white = person) is saved to output/harmovid/.
"""),
    ])


WORKFLOWS = (builtin_harmonization, diffusion_harmonization, ic_light_relighting, deflicker_only, sam2_point_prompts)


def generate(schemas: Schemas) -> Dict[str, Tuple[Dict[str, Any], Dict[str, Any]]]:
    """{name: (UI-format workflow, API-format workflow)} for every shipped workflow."""
    result = {}
    for make in WORKFLOWS:
        spec = make()
        result[spec.name] = (to_ui(spec, schemas), to_api(spec, schemas))
    return result


def write_workflows(folder, schemas: Schemas) -> List[Path]:
    """Write ``folder/<name>.json`` (UI) and ``folder/api/<name>.json`` (API) for every workflow."""
    folder, written = Path(folder), []
    for name, (ui, api) in generate(schemas).items():
        for path, data in ((folder / f"{name}.json", ui), (folder / "api" / f"{name}.json", api)):
            with atomic_output(path) as partial:
                partial.write_text(dumps(data), encoding="utf-8")
            written.append(path)
    return written

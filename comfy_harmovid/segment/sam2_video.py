"""SAM 2 video segmentation of one person, prompted on one frame and tracked both ways.

We feed the frames to the predictor ourselves (sam2's own loader reads JPEG folders and would pull
in torchvision): ``ModelInputFrames`` resizes and normalises each frame only when the model asks for
it, so the clip is never held twice.
"""

from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import HarmoVidError
from ..progress import ProgressCallback, report
from ..validate import check_frames
from .prompts import check_box_corners, check_points_in_frame, check_prompt_frame
from .sam2_model import load_sam2

# ImageNet statistics, as sam2's frame loader uses.
IMAGE_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGE_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
OBJECT_ID = 1


class ModelInputFrames:
    """Frames as the SAM 2 image encoder wants them: ``[3, S, S]`` normalised, made on demand."""

    def __init__(self, frames: torch.Tensor, image_size: int):
        self.frames = frames
        self.image_size = image_size

    def __len__(self) -> int:
        return self.frames.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        frame = self.frames[index].to("cpu", torch.float32).permute(2, 0, 1).unsqueeze(0)
        size = (self.image_size, self.image_size)
        image = F.interpolate(frame, size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        return (image - IMAGE_MEAN) / IMAGE_STD


def _new_inference_state(predictor, frames: torch.Tensor, device: torch.device) -> dict:
    """The state ``SAM2VideoPredictor.init_state`` builds (sam2 1.1.0), with our frame source."""
    images = ModelInputFrames(frames, predictor.image_size)
    return {
        "images": images,
        "num_frames": len(images),
        "offload_video_to_cpu": True,
        "offload_state_to_cpu": device.type != "cpu",
        "video_height": frames.shape[1],
        "video_width": frames.shape[2],
        "device": device,
        "storage_device": torch.device("cpu"),
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }


@contextmanager
def _quiet_propagation():
    """sam2 draws a tqdm bar while propagating; the engine never prints, so swap it for a plain loop."""
    import sam2.sam2_video_predictor as video_predictor

    original = video_predictor.tqdm
    video_predictor.tqdm = lambda iterable, **_: iterable
    try:
        yield
    finally:
        video_predictor.tqdm = original


def memory_reach(predictor) -> int:
    """How many frames away from the current one SAM 2 looks (mask memories and object pointers)."""
    memories = predictor.num_maskmem * predictor.memory_temporal_stride_for_eval
    return max(memories, predictor.max_obj_ptrs_in_encoder) + 1


def _forget_far_frames(state: dict, index: int, prompt_frame: int, reach: int) -> None:
    """Drop tracked outputs the model can no longer look at, so memory does not grow with the clip.

    Tracking from ``index`` onwards only looks ``reach`` frames back, and the backward pass starts
    next to the prompt frame, so outputs farther than ``reach`` from both are never read again.
    """
    for outputs in state["output_dict_per_obj"].values():
        tracked = outputs["non_cond_frame_outputs"]
        for frame in [f for f in tracked if abs(f - index) > reach and abs(f - prompt_frame) > reach]:
            del tracked[frame]


def _check_prompts(points, point_labels, box, height: int, width: int):
    """Pixel-coordinate prompts -> (points [N, 2] float32 or None, labels [N] int32 or None, box [4] or None)."""
    if points is not None:
        points = np.asarray(points, dtype=np.float32).reshape(-1, 2) if len(points) else None
    if points is None:
        if point_labels is not None and len(point_labels):
            raise HarmoVidError("point_labels were given without points; give both, one label per point.")
        labels = None
    else:
        labels = np.ones(len(points), np.int32) if point_labels is None else np.asarray(point_labels, np.int32)
        if labels.shape != (len(points),) or not np.isin(labels, (0, 1)).all():
            raise HarmoVidError(
                f"point_labels must hold one label per point, 1 = person, 0 = not person; got {labels.tolist()} "
                f"for {len(points)} points."
            )
        check_points_in_frame(points, height, width)
    if box is not None:
        box = np.asarray(box, dtype=np.float32).reshape(-1)
        if box.shape != (4,):
            raise HarmoVidError(f"box must be x1,y1,x2,y2 pixels, got {box.tolist()}.")
        check_box_corners(box.tolist())
        box = np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1]).astype(np.float32)
    return points, labels, box


def auto_prompt(mask: torch.Tensor):
    """Box and positive points for the person in a ``[H, W]`` mask: its largest region's box, the
    deepest point inside it, and the deepest points in its upper and lower thirds."""
    binary = (mask.detach().cpu().numpy() > 0.5).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        return None, None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = (labels == largest).astype(np.uint8)
    x, y, w, h = stats[largest, :4]
    depth = cv2.distanceTransform(region, cv2.DIST_L2, 5)
    points = []
    for top, bottom in ((y, y + h), (y, y + h // 3), (y + 2 * h // 3, y + h)):
        band = np.zeros_like(depth)
        band[top:bottom] = depth[top:bottom]
        if band.max() > 0:
            row, col = np.unravel_index(int(np.argmax(band)), band.shape)
            points.append((float(col), float(row)))
    box = np.array([x, y, x + w - 1, y + h - 1], dtype=np.float32)
    return np.array(points, dtype=np.float32), box


def segment_with_sam2(
    frames: torch.Tensor,
    *,
    checkpoint: Union[str, Path, torch.nn.Module],
    config: Optional[str] = None,
    points: Optional[Sequence] = None,
    point_labels: Optional[Sequence[int]] = None,
    box: Optional[Sequence[float]] = None,
    prompt_frame: int = 0,
    threshold: float = 0.0,
    soft: bool = False,
    device=None,
    progress: ProgressCallback = None,
) -> torch.Tensor:
    """Mask ``[T, H, W]`` float32 (1 = person) from SAM 2, tracked forward and backward from ``prompt_frame``.

    ``checkpoint`` is a SAM 2 ``.safetensors`` file (or a model from ``load_sam2``). Prompts are in
    pixels of the frames: ``points`` ``[(x, y), ...]`` with ``point_labels`` (1 = person, 0 = not;
    default all 1) and/or ``box`` ``(x1, y1, x2, y2)``. With no box and no positive point, the
    built-in segmenter finds the person on the prompt frame and its box and inner points are used
    (with any negative points given). ``threshold`` applies to SAM 2's mask logits (0 = probability
    0.5); ``soft=True`` returns the probability instead. ``device`` is where a checkpoint is loaded
    (default CPU); a given model runs where it is.
    """
    frames = check_frames(frames)
    total, height, width = frames.shape[:3]
    check_prompt_frame(prompt_frame, total)
    points, point_labels, box = _check_prompts(points, point_labels, box, height, width)
    if box is None and (points is None or not point_labels.any()):
        # No positive prompt: find the person with the built-in segmenter (keep any negative points).
        from .portrait import segment_portrait

        auto_points, box = auto_prompt(segment_portrait(frames[prompt_frame : prompt_frame + 1])[0])
        if box is None:
            raise HarmoVidError(
                f"No person found on frame {prompt_frame} to prompt SAM 2 automatically. Give points or a box, "
                "or choose a prompt_frame where the person is visible."
            )
        if points is None:
            points, point_labels = auto_points, np.ones(len(auto_points), np.int32)
        else:
            points = np.concatenate([auto_points, points])
            point_labels = np.concatenate([np.ones(len(auto_points), np.int32), point_labels])
    if isinstance(checkpoint, torch.nn.Module):
        predictor = checkpoint
        device = next(predictor.parameters()).device
    else:
        device = torch.device(device) if device is not None else torch.device("cpu")
        predictor = load_sam2(checkpoint, config=config, device=device)

    masks = torch.zeros(frames.shape[:3], dtype=torch.float32)
    reach = memory_reach(predictor)
    done = set()
    with torch.inference_mode(), _quiet_propagation():
        state = _new_inference_state(predictor, frames, device)
        predictor.add_new_points_or_box(
            state, frame_idx=prompt_frame, obj_id=OBJECT_ID, points=points, labels=point_labels, box=box
        )
        for reverse in (False, True):
            for index, _, logits in predictor.propagate_in_video(state, start_frame_idx=prompt_frame, reverse=reverse):
                logits = logits[0, 0].float().cpu()
                masks[index] = torch.sigmoid(logits) if soft else (logits > threshold).float()
                _forget_far_frames(state, index, prompt_frame, reach)
                done.add(index)
                report(progress, len(done), total)
    return masks.to(frames.device)

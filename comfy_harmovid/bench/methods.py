"""The methods a benchmark compares, by name: doing nothing, other people's tools, and ours.

A harmonization method is ``run(composite, alpha, mask) -> frames``; a deflicker method is
``run(frames, reference, alpha) -> frames`` where ``reference`` is the unprocessed clip (for motion
only). Our own methods are looked up when the benchmark runs, so a method that lands in
``comfy_harmovid.harmoim.methods`` / ``comfy_harmovid.deflicker`` appears without touching this file.
"""

import importlib
from fractions import Fraction
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..errors import HarmoVidError

COLOR_MATCHER_METHODS = ("reinhard", "mkl", "mvgd", "hm-mvgd-hm")


def _identity_harmonize(composite, alpha, mask):
    return composite


def _color_matcher(method: str):
    """The color-matcher package as ComfyUI's ColorMatch node uses it (``transfer(src, ref, method)``
    per frame), given the foreground pixels as source and the background pixels as reference, then
    composited back through the alpha.

    The method is also passed to the constructor: color-matcher picks the MVGD solver there, so the
    node's ``ColorMatcher()`` silently runs "mvgd" (and "hm-mvgd-hm") with the MKL solver.
    """

    def run(composite, alpha, mask):
        from color_matcher import ColorMatcher

        outputs = []
        for frame, frame_alpha, frame_mask in zip(composite, alpha, mask):
            image = frame.numpy().astype(np.float64)
            inside = frame_mask.numpy() >= 0.5
            if inside.all() or not inside.any():  # no foreground, or no background to match to
                outputs.append(frame)
                continue
            # color-matcher wants an image [H, W, 3]: a column of pixels is one.
            source, palette = image[inside][:, None, :], image[~inside][:, None, :]
            # The analytical MVGD solver needs as many reference pixels as source pixels: take an
            # evenly spaced sample of the background (its colour distribution is kept).
            palette = palette[np.linspace(0, len(palette) - 1, len(source)).round().astype(int)]
            matched = image.copy()
            matched[inside] = ColorMatcher(method=method).transfer(src=source, ref=palette, method=method)[:, 0, :]
            matched = torch.from_numpy(np.clip(matched, 0.0, 1.0)).float()
            weight = frame_alpha[..., None]
            outputs.append(weight * matched + (1 - weight) * frame)
        return torch.stack(outputs)

    return run


def _ours_harmonize(method: str):
    def run(composite, alpha, mask):
        from ..harmoim import harmonize_frames

        if method == "learned-skin":  # the learned HarmoIm with its skin balance (off by default)
            return harmonize_frames(composite, alpha, None, method="learned", skin_balance=True)
        return harmonize_frames(composite, alpha, None, method=method)

    return run


def _our_harmonize_methods() -> List[str]:
    """The per-frame HarmoIm methods that can run here (``harmoim.available_methods``), and the learned
    one with its skin balance."""
    from ..harmoim import available_methods

    methods = list(available_methods())
    return methods + ["learned-skin"] if "learned" in methods else methods


def harmonize_methods() -> Dict[str, Callable]:
    """All harmonization methods available here, in report order."""
    methods = {"identity": _identity_harmonize}
    try:
        importlib.import_module("color_matcher")
        methods.update({f"color-matcher-{name}": _color_matcher(name) for name in COLOR_MATCHER_METHODS})
    except ImportError:
        pass
    methods.update({name: _ours_harmonize(name) for name in _our_harmonize_methods()})
    return methods


def _identity_deflicker(frames, reference, alpha):
    return frames


def ffmpeg_deflicker(frames: torch.Tensor, size: int = 5, mode: str = "am") -> torch.Tensor:
    """FFmpeg's ``deflicker`` filter (whole-frame brightness averaging over ``size`` frames) via PyAV."""
    import av
    import av.filter

    time_base = Fraction(1, 25)
    graph = av.filter.Graph()
    source = graph.add_buffer(width=frames.shape[2], height=frames.shape[1], format="rgb24", time_base=time_base)
    flt = graph.add("deflicker", f"size={size}:mode={mode}")
    sink = graph.add("buffersink")
    source.link_to(flt)
    flt.link_to(sink)
    graph.configure()
    outputs = []

    def drain():
        while True:
            try:
                outputs.append(graph.pull().to_ndarray(format="rgb24"))
            except (av.error.BlockingIOError, av.error.EOFError):
                return

    pixels = (frames.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    for index, image in enumerate(pixels):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts, frame.time_base = index, time_base
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    if len(outputs) != frames.shape[0]:
        raise HarmoVidError(f"FFmpeg deflicker returned {len(outputs)} frames for {frames.shape[0]}.")
    return torch.from_numpy(np.stack(outputs)).float() / 255.0


def _ffmpeg_deflicker(frames, reference, alpha):
    return ffmpeg_deflicker(frames)


def _ours_deflicker(use_reference: bool, look_ahead: bool = True):
    def run(frames, reference, alpha):
        from ..deflicker import Deflicker

        reference = reference if use_reference else None
        return Deflicker(look_ahead=look_ahead).process(frames, mask_chunk=alpha, reference_chunk=reference)

    return run


def deflicker_methods() -> Dict[str, Callable]:
    """All deflicker methods available here, in report order."""
    methods = {"identity": _identity_deflicker}
    try:
        importlib.import_module("av.filter")
        methods["ffmpeg-deflicker"] = _ffmpeg_deflicker
    except ImportError:
        pass
    try:
        importlib.import_module("comfy_harmovid.deflicker")
        # With the unprocessed clip for motion, and from the processed frames alone; and causal, as the
        # streamed pipeline runs it (each frame follows only the frames before it).
        methods["deflicker"] = _ours_deflicker(True)
        methods["deflicker-self-flow"] = _ours_deflicker(False)
        methods["deflicker-causal"] = _ours_deflicker(True, look_ahead=False)
    except ImportError:
        pass
    return methods


def select(available: Dict[str, Callable], names: Optional[Sequence[str]]) -> Dict[str, Callable]:
    """The methods named (all of them when ``names`` is empty), with a clear error for unknown names."""
    if not names:
        return dict(available)
    unknown = [name for name in names if name not in available]
    if unknown:
        raise HarmoVidError(f"unknown method(s) {', '.join(unknown)}; available here: {', '.join(available)}.")
    return {name: available[name] for name in names}

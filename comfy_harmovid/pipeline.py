"""The built-in harmonization of a foreground video over a background video, streamed from file to file.

Stages, per chunk of output frames: portrait mask -> pseudo-alpha -> composite (placement,
decontamination) -> per-frame HarmoIm -> Lighting Deflicker -> encoder. Every temporal stage keeps
its state between chunks, so the result equals processing the clip whole while memory holds only a
chunk (plus a small decode cache per input), whatever the clip length.
"""

import contextlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .alpha import PseudoAlpha
from .composite import Placement, composite_chunk, frame_schedule
from .deflicker import Deflicker
from .errors import HarmoVidError
from .harmoim import METHODS as HARMONIZE_METHODS, PersonTrims, make_harmonizer
from .io import VideoWriter, iter_frame_arrays, probe_video, stack_frames, uint8_frames
from .progress import ProgressCallback, report
from .relight import ICLightRelighter, RelightSettings, load_iclight
from .segment import PortraitSegmenter
from .threads import chained

AUDIO_SOURCES = ("foreground", "background", "none")
RELIGHT_METHODS = ("none", "ic-light")
# Pixels per chunk when chunk_frames is None: 2 frames of 720p, 1 of 1080p. The stages overlap in
# threads and queues, each holding a chunk in a few float32 copies: small chunks keep that to a few
# dozen frames' worth, and per-frame work is what costs, not per-chunk overhead.
CHUNK_PIXELS = 2 * 1280 * 720


def chunk_frames_for(frame_pixels: int, chunk_pixels: int = CHUNK_PIXELS) -> int:
    """Frames per chunk so that a chunk holds about ``chunk_pixels`` pixels (at least one frame)."""
    return max(1, chunk_pixels // frame_pixels)


@dataclass
class HarmonizeSettings:
    """Every knob of the built-in pipeline; the defaults suit a portrait clip."""

    # Portrait mask (built-in segmenter; ignored when a mask file is given).
    threshold: float = 0.5
    # Pseudo-alpha.
    band_width: int = 12
    edge_awareness: float = 1.0
    alpha_temporal_smoothing: float = 0.5
    # Composite.
    scale: float = 1.0
    x: float = 0.0
    y: float = 0.0
    anchor: str = "bottom-center"
    length_policy: str = "shortest"
    decontaminate: bool = True
    # HarmoIm ("auto": learned when its weights are present, else statistics; "none" skips it) and
    # Lighting Deflicker (strength 0 skips it).
    harmonize_method: str = "auto"
    harmonize_strength: float = 1.0
    harmoim_weights: Optional[str] = None  # learned HarmoIm weights file (None: the default weights)
    skin_balance: bool = False  # learned only: the face's skin taken toward natural skin (harmoim/skin.py)
    # The artist's exposure, white balance and saturation on the person after the HarmoIm.
    person_trims: PersonTrims = field(default_factory=PersonTrims)
    deflicker_strength: float = 1.0
    # Relighting: "ic-light" relights the person toward the background with SD1.5 (sd15: a single-file
    # checkpoint) + IC-Light fbc (iclight: its offset file) in place of HarmoIm; tokenizer: CLIP's BPE files.
    relight: str = "none"
    sd15: Optional[str] = None
    iclight: Optional[str] = None
    tokenizer: Optional[str] = None
    relight_settings: RelightSettings = field(default_factory=RelightSettings)
    # Frames processed at once; None picks them from CHUNK_PIXELS, so memory is the same at any resolution.
    chunk_frames: Optional[int] = None


@dataclass
class HarmonizeResult:
    path: Path
    frames: int
    fps: float
    seconds_per_stage: Dict[str, float] = field(default_factory=dict)
    # Output index -> (naive composite, harmonized frame), for ``sample_frames`` evenly spread frames.
    kept: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


class FrameFetcher:
    """Frames of a clip by index, decoded in order, keeping the last ``cache_frames`` frames.

    Output frames visit the source mostly in order; loops and ping-pong go back. Going back reopens
    the clip a block before the wanted frame, so a backward pass is served from the cache block by
    block instead of decoding from the start for every frame. The cache holds the decoded 8-bit
    arrays (a quarter of float frames); :meth:`stack` makes the float chunk in one allocation.
    """

    def __init__(self, path, *, mask: bool = False, cache_frames: int = 32):
        self.path = path
        self.mask = mask
        self.cache_frames = cache_frames
        self._cache: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self._arrays = None
        self._next = 0  # index of the next frame the open decoder yields

    def _open(self, start: int) -> None:
        self._arrays = iter_frame_arrays(self.path, mask=self.mask, start=start)
        self._next = start

    def _decode_next(self) -> None:
        array = next(self._arrays, None)
        if array is None:
            raise HarmoVidError(f"{self.path}: ended before frame {self._next}; the file may be truncated.")
        self._cache[self._next] = array
        self._next += 1
        if len(self._cache) > self.cache_frames:
            self._cache.popitem(last=False)

    def _array(self, index: int) -> np.ndarray:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        if self._arrays is None or index < self._next or index >= self._next + self.cache_frames:
            # Going back, or far ahead: reopen a little before the frame so a backward pass finds its
            # next frames already cached.
            self._open(max(0, index - self.cache_frames // 2 + 1))
        while index not in self._cache:
            self._decode_next()
        return self._cache[index]

    def __getitem__(self, index: int) -> torch.Tensor:
        """Frame ``index`` as float32 0..1: ``[H, W, 3]``, or ``[H, W]`` for a mask."""
        return stack_frames([self._array(index)])[0]

    def arrays(self, indices) -> list:
        """Frames ``indices`` as decoded: 8-bit (16-bit for deep sources) arrays, for :func:`stack_frames`."""
        return [self._array(index) for index in indices]

    def stack(self, indices) -> torch.Tensor:
        """Frames ``indices`` as one float32 tensor ``[T, H, W, 3]`` (``[T, H, W]`` for a mask)."""
        return stack_frames([self._array(index) for index in indices])


@dataclass
class _Chunk:
    """One chunk of output frames on its way through the stages (each drops what later ones do not read)."""

    start: int  # index of its first output frame
    length: int
    # Decoded 8-bit arrays, then float tensors: the foreground [t, h, w, 3], background [t, H, W, 3] and
    # the person's mask [t, h, w].
    foreground: Any = None
    background: Any = None
    person: Any = None
    saw_person: bool = False
    composite: Optional[torch.Tensor] = None  # [t, H, W, 3]
    alpha: Optional[torch.Tensor] = None  # [t, H, W] the placed alpha
    frames: Optional[list] = None  # the harmonized frames as 8-bit [H, W, 3] arrays, ready to encode


class _StageClock:
    """Adds up wall time per stage, for the speed benchmark (from any thread)."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}
        self._lock = threading.Lock()

    def run(self, stage: str, function, *args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
        return result


def _check_settings(settings: HarmonizeSettings, audio: str) -> None:
    choices = ("auto",) + HARMONIZE_METHODS + ("none",)
    if settings.harmonize_method not in choices:
        raise HarmoVidError(f"harmonize_method must be one of {', '.join(choices)}, got {settings.harmonize_method!r}.")
    if audio not in AUDIO_SOURCES:
        raise HarmoVidError(f"audio must be one of {', '.join(AUDIO_SOURCES)}, got {audio!r}.")
    if settings.relight not in RELIGHT_METHODS:
        raise HarmoVidError(f"relight must be one of {', '.join(RELIGHT_METHODS)}, got {settings.relight!r}.")
    if settings.relight == "ic-light" and not (settings.sd15 and settings.iclight):
        raise HarmoVidError(
            "IC-Light relighting needs two files: an SD1.5 single-file checkpoint (--sd15, e.g. "
            "v1-5-pruned-emaonly.safetensors) and iclight_sd15_fbc.safetensors (--iclight)."
        )
    if settings.relight == "ic-light":
        settings.relight_settings.check()
    if not isinstance(settings.person_trims, PersonTrims):
        raise HarmoVidError(f"person_trims: expected PersonTrims, got {type(settings.person_trims).__name__}.")
    skips_harmoim = settings.relight != "none" or settings.harmonize_method == "none"
    if not settings.person_trims.is_identity and skips_harmoim:
        raise HarmoVidError(
            "Person trims follow the HarmoIm, which this run skips (IC-Light relighting or harmonize method "
            "'none'). To apply only the trims, keep a HarmoIm method with harmonize strength 0."
        )
    if settings.skin_balance and skips_harmoim:
        raise HarmoVidError("The skin balance is part of the learned HarmoIm, which this run skips (IC-Light "
                            "relighting or harmonize method 'none'); turn it off or choose the learned method.")
    if settings.chunk_frames is not None and settings.chunk_frames < 1:
        raise HarmoVidError(f"chunk_frames must be at least 1 (or None: from the frame size), got {settings.chunk_frames}.")


def _ic_light_relighter(settings: HarmonizeSettings) -> ICLightRelighter:
    """The IC-Light relighter on the GPU in fp16 when there is one, else on the CPU in fp32."""
    gpu = torch.cuda.is_available()
    models = load_iclight(settings.sd15, settings.iclight, tokenizer=settings.tokenizer,
                          dtype="fp16" if gpu else "fp32", device="cuda" if gpu else "cpu")
    return ICLightRelighter(models, settings.relight_settings)


def harmonize_video(
    foreground,
    background,
    output,
    *,
    mask=None,
    settings: Optional[HarmonizeSettings] = None,
    audio: str = "foreground",
    max_frames: Optional[int] = None,
    sample_frames: int = 0,
    crf: int = 18,
    overwrite: bool = False,
    progress: ProgressCallback = None,
) -> HarmonizeResult:
    """Harmonize the person in ``foreground`` into ``background`` and write ``output``.

    ``mask``: an optional mask video/folder for the foreground (1 = person); without it the built-in
    segmenter makes one. ``audio`` picks which input's sound is kept. ``max_frames`` stops early.
    The output appears only when the whole clip was written.
    """
    settings = settings or HarmonizeSettings()
    _check_settings(settings, audio)
    fg_info, bg_info = probe_video(foreground), probe_video(background)
    schedule = frame_schedule(
        fg_info.frame_count,
        bg_info.frame_count,
        foreground_fps=fg_info.fps,
        background_fps=bg_info.fps,
        length_policy=settings.length_policy,
    )
    if max_frames is not None:
        schedule = schedule[: max(1, int(max_frames))]
    if mask is not None:
        mask_info = probe_video(mask)
        if (mask_info.width, mask_info.height) != (fg_info.width, fg_info.height):
            raise HarmoVidError(
                f"The mask is {mask_info.width}x{mask_info.height} but the foreground is "
                f"{fg_info.width}x{fg_info.height}. Give the mask made for this foreground video."
            )
        if mask_info.frame_count < fg_info.frame_count:
            raise HarmoVidError(
                f"The mask has {mask_info.frame_count} frames but the foreground has {fg_info.frame_count}. "
                "Give a mask with one frame per foreground frame."
            )

    # Only ping-pong walks back through a clip; otherwise frames are asked for in order and a few
    # cached frames serve the repeats of a frame-rate change.
    cache = 32 if settings.length_policy == "ping-pong" else 4
    fg_frames = FrameFetcher(foreground, cache_frames=cache)
    bg_frames = FrameFetcher(background, cache_frames=cache)
    mask_frames = FrameFetcher(mask, mask=True, cache_frames=cache) if mask is not None else None
    segmenter = PortraitSegmenter(threshold=settings.threshold) if mask is None else None
    pseudo_alpha = PseudoAlpha(settings.band_width, settings.edge_awareness, settings.alpha_temporal_smoothing)
    placement = Placement(
        (fg_info.height, fg_info.width),
        (bg_info.height, bg_info.width),
        scale=settings.scale,
        x=settings.x,
        y=settings.y,
        anchor=settings.anchor,
    )
    if not placement.visible:
        raise HarmoVidError("The foreground is placed entirely outside the background; bring x/y back toward 0.")
    harmonizer = None
    if settings.relight == "ic-light":
        harmonizer = _ic_light_relighter(settings)
    elif settings.harmonize_method != "none":
        harmonizer = make_harmonizer(settings.harmonize_method, settings.harmonize_strength,
                                     weights=settings.harmoim_weights, trims=settings.person_trims,
                                     skin_balance=settings.skin_balance)
    deflicker = Deflicker(settings.deflicker_strength) if settings.deflicker_strength > 0 else None
    # A harmonizer that does not read the background plate says so (uses_background = False): the
    # composite is then made in the background frames' memory instead of a copy.
    reads_background = harmonizer is not None and getattr(harmonizer, "uses_background", True)
    audio_info = {"foreground": fg_info, "background": bg_info, "none": None}[audio]
    audio_from = audio_info.path if audio_info is not None and audio_info.has_audio else None
    audio_start = audio_info.start_time if audio_from is not None else 0.0

    clock = _StageClock()
    total = len(schedule)
    kept = {}
    keep_frames = {round(i * (total - 1) / max(sample_frames - 1, 1)) for i in range(sample_frames)}
    step = settings.chunk_frames or chunk_frames_for(
        max(fg_info.height * fg_info.width, bg_info.height * bg_info.width)
    )

    def decoded_chunks():
        """Decode: the chunk's foreground, background and (given) mask frames."""
        for start in range(0, total, step):
            pairs = schedule[start : start + step]
            chunk = _Chunk(start, len(pairs))
            # As decoded (8 bits): a quarter of the float frames while the chunk waits for the next stage.
            chunk.foreground = clock.run("decode", fg_frames.arrays, [i for i, _ in pairs])
            chunk.background = clock.run("decode", bg_frames.arrays, [j for _, j in pairs])
            if mask_frames is not None:
                chunk.person = clock.run("decode", mask_frames.arrays, [i for i, _ in pairs])
            yield chunk

    def make_composite(chunk: "_Chunk") -> "_Chunk":
        """Person mask, pseudo-alpha and composite."""
        chunk.foreground, chunk.background = (clock.run("decode", stack_frames, arrays)
                                              for arrays in (chunk.foreground, chunk.background))
        if chunk.person is not None:
            chunk.person = clock.run("decode", stack_frames, chunk.person)
        else:
            chunk.person = clock.run("segment", segmenter.process, chunk.foreground)
        chunk.saw_person = bool(chunk.person.max() > 0)
        alpha = clock.run("pseudo-alpha", pseudo_alpha.process, chunk.foreground, chunk.person)
        # The background frames become the composite unless the harmonizer still reads them.
        in_place = not reads_background
        chunk.composite, chunk.alpha = clock.run(
            "composite", composite_chunk, chunk.foreground, chunk.background, alpha, placement, settings.decontaminate,
            in_place=in_place,
        )
        # Drop what no later stage reads, so that only a few chunk-sized tensors are alive at any time.
        chunk.foreground = chunk.person = None
        if in_place:
            chunk.background = None
        return chunk

    buffer = None  # the harmonized frames, reused chunk after chunk (a fresh chunk costs page faults)

    def harmonize(chunk: "_Chunk") -> "_Chunk":
        """HarmoIm and the deflicker (in place on the harmonized frames); keeps the sample frames."""
        nonlocal buffer
        frames = chunk.composite
        if harmonizer is not None:
            if buffer is None:
                buffer = torch.empty((step, *frames.shape[1:]), dtype=torch.float32)
            frames = clock.run("harmonize", harmonizer.process, frames, chunk.alpha,
                               chunk.background if reads_background else None, out=buffer[: chunk.length])
        chunk.background = None
        if deflicker is not None:
            frames = clock.run("deflicker", deflicker.process, frames, mask_chunk=chunk.alpha,
                               reference_chunk=chunk.composite, out=frames if harmonizer is not None else None)
        for k in range(chunk.length):
            if chunk.start + k in keep_frames:
                kept[chunk.start + k] = (chunk.composite[k].clone(), frames[k].clone())
        # 8 bits for the wait before encoding.
        chunk.frames = clock.run("encode", uint8_frames, frames)
        chunk.composite = chunk.alpha = None
        return chunk

    saw_person = False
    threads = torch.get_num_threads()
    # The stages overlap in threads of their own (decode, composite, harmonize, encode in this one),
    # so each runs its torch operations on one thread; IC-Light's diffusion model outweighs every other
    # stage and keeps the caller's threads.
    stage_threads = threads if settings.relight == "ic-light" else 1
    chunks = chained(decoded_chunks(), [make_composite, harmonize],
                     thread_setup=lambda: torch.set_num_threads(stage_threads))
    try:
        with VideoWriter(output, bg_info.fps, crf=crf, audio_from=audio_from, audio_start=audio_start,
                         overwrite=overwrite) as writer, contextlib.closing(chunks):
            for chunk in chunks:
                saw_person = saw_person or chunk.saw_person
                clock.run("encode", writer.write_arrays, chunk.frames)
                report(progress, chunk.start + chunk.length, total)
            if not saw_person:  # raised inside the writer, so the partial output is discarded
                raise HarmoVidError(
                    "No person was found in any foreground frame, so there is nothing to harmonize. Check the "
                    "foreground video, or give a mask video (1 = person) with --mask."
                )
    finally:
        torch.set_num_threads(threads)
    return HarmonizeResult(Path(output), total, bg_info.fps, clock.seconds, kept)


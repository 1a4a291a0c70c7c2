"""Built-in Lighting Deflicker: flow-guided temporal consistency of a processed video.

In the spirit of Bonneel et al. 2015 ("Blind video temporal consistency"): the output keeps the
processed frame's detail and takes its colours from a running mean of the processed frames carried
along by optical flow, wherever the flow can be trusted. Per frame:

1. Work at a reduced resolution (short side about ``work_size`` pixels): the flicker that per-frame
   processing causes is mostly low-frequency (global and local colour, exposure, shadows).
2. Flow between consecutive frames at ``motion_size`` (finer for the whole clip than for streaming,
   which has a frame-rate budget), computed on the *reference* video when there
   is one (motion only), else on the processed frames' structure (grey minus its regional light,
   which the flicker leaves alone). Forward-backward occlusion, and whether the guide's band-pass
   structure matches after warping, give where a neighbour can be trusted; a frame where almost
   nothing can be matched is a shot cut, and the filter starts afresh.
3. Temporal target: a running mean of the processed frames along the motion, per pixel
   ``mean = processed + (n - 1) / n * (warped neighbour's mean - processed)`` where ``n`` counts the
   frames it holds (``n = 1 + trust * warped neighbour's n``). A shot's first frame counts as
   ``1 + anchor_frames`` (the next frames settle on it instead of swinging with each new one), and
   past ``1 / (1 - temporal_weight)`` frames the mean turns into an exponential moving average, so
   slow intended changes pass and frame-to-frame flicker does not. With a reference, a change of the
   reference's own light between the two frames (beyond ``light_tolerance``) also lowers the trust,
   so an intended light change (a lamp switched on, a cloud) passes at once instead of lagging.
   Causal (streaming) runs follow the frames before; ``look_ahead`` (the whole-clip :func:`deflicker`)
   also runs the mean backward from the end and combines both (a zero-phase smoother), which a
   near-still shot needs: a causal mean's first frames still swing.
4. A local colour map ``A @ processed + b`` (a 3x3 matrix and offset per window, ``A`` pulled toward
   the identity: a colour guided filter, which undoes channel-mixing grades such as per-frame LUTs,
   not only per-channel gains) is fitted from the processed frame to the target, smoothed, brought
   to full resolution and applied. It is fitted only where the target holds enough frames
   (``followed_frames``): where the motion could not be followed the target is mostly the frame's own
   flicker, or frames wrongly linked. Windows without such pixels take one map fitted over the whole
   frame, since a per-frame grade is the same function of colour everywhere. Because it is a smooth
   map applied to the full-resolution frame, edges and texture (gradients) of the processed frame
   are kept, as in Bonneel's gradient-domain formulation, at a fraction of the cost of a Poisson
   solve.
5. With a mask the map changes the processed *layer* only: the frame is taken as ``background +
   alpha (layer - background)`` with the reference (else the frame itself) as background, the map
   is fitted on the layer (weighted by alpha squared) and applied to it, so soft edges are corrected
   by alpha times the person's correction, and pixels outside the mask never change. The
   reference's colours are never copied into the output.
"""

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
import torch

from .errors import HarmoVidError
from .filters import SYMMETRIC_PAIRS, float_array, local_linear_fit
from .flow import GREY_WEIGHTS, dis_flow, occlusion_mask, warp
from .progress import ProgressCallback, report
from .validate import check_frames, check_mask, check_same_length, check_same_size, check_strength


def _band_pass(grey: np.ndarray) -> np.ndarray:
    """A grey image's structure at a few pixels' scale (difference of two Gaussian blurs).

    Flicker leaves it alone, and sub-pixel flow errors on fine texture barely touch it."""
    return cv2.GaussianBlur(grey, (0, 0), 1.5) - cv2.GaussianBlur(grey, (0, 0), 4.0)


def _low_pass(grey: np.ndarray) -> np.ndarray:
    """Light at the scale of regions (a few percent of the frame), where light changes live; broad
    enough that motion the flow got slightly wrong barely moves it."""
    return cv2.GaussianBlur(grey, (0, 0), 8.0)


def _box(image: np.ndarray, radius: int) -> np.ndarray:
    return cv2.boxFilter(image, -1, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def _colour_map_from_sums(sums, regularization: float):
    """Colour map coefficients ``[..., 12]`` (``A - I`` row by row, then ``b``) from the weighted means
    of the 22 products that :func:`fit_local_colour_map` lists: planes (one map per window) or
    ``[1, 1]`` arrays (one map for everything)."""
    inverse_w = 1.0 / np.maximum(sums[0], 1e-6)
    means = [plane * inverse_w for plane in sums[1:]]
    cross = [means[12 + 3 * j : 15 + 3 * j] for j in range(3)]
    # A - I is kept within reason (each entry within +-1).
    change, offset = local_linear_fit(means[0:3], means[3:6], means[6:12], cross, regularization,
                                      toward_identity=True, max_change=1.0)
    return cv2.merge([plane for row in change for plane in row] + offset)


def fit_local_colour_map(source, target, weight, *, radius: int, regularization: float):
    """Per-window colour matrix ``A`` and offset ``b`` with ``A @ source + b ~ target`` over pixels
    weighted by ``weight``: a colour guided filter, so a per-frame grade that mixes channels (a LUT)
    is undone too, not only per-channel gains.

    ``source``/``target`` are ``[h, w, 3]``, ``weight`` ``[h, w]``. ``A`` is pulled toward the identity
    by ``regularization`` (a variance), so flat windows get a plain offset. Windows that see hardly any
    weighted pixel take one map fitted over all weighted pixels (the identity when there are none): a
    per-frame grade is the same function of colour everywhere, while a neighbouring window's map is
    only valid for the colours that window holds. Returns the smoothed map as coefficients
    ``[h, w, 12]``: ``A - I`` row by row, then ``b``.
    """
    # Plane by plane: contiguous 2-D arrays are several times faster here than channel-last slices.
    s, t = cv2.split(np.ascontiguousarray(source, np.float32)), cv2.split(np.ascontiguousarray(target, np.float32))
    weight = weight.astype(np.float32)
    weighted_s = [weight * plane for plane in s]
    products = [weight, *weighted_s, *(weight * plane for plane in t)]
    products += [weighted_s[i] * s[j] for i, j in SYMMETRIC_PAIRS]
    products += [weighted_s[j] * t[k] for j in range(3) for k in range(3)]
    # Window means and frame means of the 22 products, plane by plane (faster than merging them into one
    # 22-channel image to filter in one pass and splitting it again; OpenCV's means are summed in float64).
    window_sums = [_box(plane, radius) for plane in products]
    overall_sums = [np.full((1, 1), cv2.mean(plane)[0], np.float32) for plane in products]
    local, overall = (_colour_map_from_sums(sums, regularization) for sums in (window_sums, overall_sums))
    confidence = np.clip(window_sums[0] / 0.05, 0.0, 1.0)[..., None]
    return _box(overall + confidence * (local - overall), radius)


def apply_colour_map(coefficients: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``A @ image + b`` per pixel, for a map from :func:`fit_local_colour_map` of the image's size."""
    change = coefficients[..., :9].reshape(*image.shape[:2], 3, 3)
    return image + (change @ image[..., None])[..., 0] + coefficients[..., 9:]


@dataclass
class _Motion:
    """A frame as the flow sees it, at ``motion_size`` (the flow's resolution)."""

    guide: np.ndarray  # the grey image the flow runs on
    detail: np.ndarray  # its band-pass structure (see _band_pass)
    light: Optional[np.ndarray]  # its regional light (see _low_pass), with a reference only
    mask: np.ndarray


@dataclass
class _WorkFrame:
    """One frame at work resolution, how it links to the frame before it, and its forward running mean."""

    processed: np.ndarray  # [h, w, 3]
    motion: _Motion
    mask: np.ndarray  # [h, w] 1 = correct here
    background: Optional[np.ndarray]  # [h, w, 3] what the processed layer was blended over (None: no mask)
    # Flow from the previous frame to this one, and how far this frame's running mean can be followed
    # on the previous frame (for the backward pass; at motion resolution); None at the first frame of a
    # shot, and without look-ahead.
    flow_to_next: Optional[np.ndarray] = None
    trust_on_previous: Optional[np.ndarray] = None
    # The forward pass: the running mean up to this frame and how many frames it holds (per pixel).
    forward_mean: Optional[np.ndarray] = None
    forward_count: Optional[np.ndarray] = None


@dataclass(frozen=True)
class DeflickerSettings:
    """The deflicker's tuning (see the module's steps 1-5); the defaults suit portrait clips.

    Sizes in pixels are at work or motion resolution; colour differences are in 0..1 colour values.
    """

    # Step 1: short side of the work resolution the colour map is fitted at, in pixels.
    work_size: int = 240
    # Step 2: short side of the flow's resolution, in pixels; None: 240 with look-ahead, 180 streaming
    # (finer flow follows fast motion, such as a hand crossing the face, better; streaming keeps to the
    # coarser flow that fits its frame-rate budget).
    motion_size: Optional[int] = None
    # Step 2: DIS optical flow preset ("fast", "balanced", ...; see flow.dis_flow).
    flow_preset: str = "balanced"
    # Step 2: a frame whose pixels are visible in the previous frame for less than this share (0..1)
    # is a shot cut.
    cut_visible_fraction: float = 0.3
    # Step 2: how far (0..1 colour value) the band-pass structure may differ after warping before a
    # neighbour is no longer trusted there (the trust falls as exp(-(difference / tolerance)^2)).
    detail_tolerance: float = 0.03
    # Step 3: with a reference, how far (0..1 colour value) the reference's own regional light may
    # change between two frames before the change counts as intended and passes at once.
    light_tolerance: float = 0.06
    # Step 3: share (0..1) of the running mean kept from frame to frame once it holds
    # 1 / (1 - temporal_weight) frames (20 at 0.95); from then on it is an exponential moving average.
    temporal_weight: float = 0.95
    # Step 3: extra weight of a shot's first frame, in frames (it counts as 1 + anchor_frames).
    anchor_frames: float = 1.0
    # Step 4: the colour map is fitted only where the target holds more than this many frames.
    followed_frames: float = 10.0 / 3.0
    # Step 4: radius of the colour map's windows, in work-resolution pixels.
    radius: int = 1
    # Step 4: pull of the colour matrix toward the identity, as a colour variance (0..1 values squared).
    regularization: float = 1e-4
    # Step 5: alpha (0..1) below which a masked pixel's layer is not divided out; its correction fades
    # to 0 toward alpha 0.
    min_alpha: float = 0.05


class Deflicker:
    """Streaming deflicker: feed consecutive chunks to :meth:`process`; state carries across calls.

    By default each frame follows the running mean of the frames before it (causal): streaming in
    chunks gives exactly the result of the whole clip at once. With ``look_ahead`` each frame also
    follows the frames after it, up to the end of its chunk (a zero-phase smoother: the first frames
    of a shot and near-still footage get much steadier); give the whole clip as one chunk, as
    :func:`deflicker` does, since a chunk's last frame sees no later frame and the next chunk's first
    frame sees many, which would show as a step at every chunk boundary.
    ``strength`` 0..1 scales how far each frame moves toward the smoothed one (0 = unchanged);
    ``settings`` (:class:`DeflickerSettings`) holds the rest of the tuning.
    """

    def __init__(self, strength: float = 1.0, *, settings: Optional[DeflickerSettings] = None,
                 look_ahead: bool = False):
        self.strength = check_strength(strength)
        self.settings = settings or DeflickerSettings()
        self.motion_size = self.settings.motion_size or (240 if look_ahead else 180)
        self.look_ahead = look_ahead
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (the next frame starts a new shot)."""
        self._previous = None  # the last _WorkFrame of the previous chunk
        self._buffer = None  # full-resolution scratch planes
        self._uses_reference = None
        self.cuts = []  # frame indices (since construction) where a shot cut was detected
        self._index = 0

    def _shrink(self, image: np.ndarray) -> np.ndarray:
        """``image`` at work resolution (short side ``work_size``, each work pixel the mean of the pixels
        it covers)."""
        height, width = image.shape[:2]
        factor = min(height, width) / self.settings.work_size
        if factor <= 1.0:
            # A copy: the state outlives the chunk, whose buffer the caller may reuse for the next one.
            return image.copy()
        if factor.is_integer():  # OpenCV's much faster path for whole factors
            return cv2.resize(image, None, fx=1.0 / factor, fy=1.0 / factor, interpolation=cv2.INTER_AREA)
        size = (max(8, round(width / factor)), max(8, round(height / factor)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def process(self, frames_chunk, mask_chunk=None, reference_chunk=None, progress: ProgressCallback = None, *,
                out=None):
        """Deflicker the next ``[T, H, W, 3]`` frames; optional mask ``[T, H, W]`` (1 = correct here) and
        reference frames (the unprocessed video, for motion only) of the same size.

        Returns the deflickered chunk (same shape). ``progress(done, 2 * T)`` is called per frame and pass.
        ``out``: a contiguous float32 CPU tensor of the frames' shape to write the result into (and
        return), such as ``frames_chunk`` itself to deflicker in place; default a new tensor.
        """
        frames = check_frames(frames_chunk, "frames")
        if reference_chunk is not None:
            reference_chunk = check_frames(reference_chunk, "reference")
            check_same_size(frames, reference_chunk, "frames", "reference")
            check_same_length(frames, reference_chunk, "frames", "reference")
        if mask_chunk is not None:
            mask_chunk = check_mask(mask_chunk, "mask")
            check_same_size(frames, mask_chunk, "frames", "mask")
            check_same_length(frames, mask_chunk, "frames", "mask")
        uses_reference = reference_chunk is not None
        if self._uses_reference is not None and uses_reference != self._uses_reference:
            raise HarmoVidError(
                "deflicker: give the reference video for every chunk or for none (the flow would change source)."
            )
        self._uses_reference = uses_reference
        if out is not None:
            _check_output(out, frames, reference_chunk)
        if self.strength == 0.0:
            return frames.clone() if out is None else out.copy_(frames)
        total = frames.shape[0]
        chunk = []
        for t in range(total):
            reference = reference_chunk[t] if uses_reference else None
            mask = mask_chunk[t] if mask_chunk is not None else None
            chunk.append(self._forward_step(frames[t], reference, mask))
            report(progress, t + 1, 2 * total)
        if out is None:
            out = torch.empty(frames.shape, dtype=torch.float32)
        if self.look_ahead:
            targets = self._two_sided_means(chunk)
        else:
            targets = ((t, frame.forward_mean, frame.forward_count) for t, frame in enumerate(chunk))
        for done, (t, target, count) in enumerate(targets, start=1):
            region, colour_map = self._fit(chunk[t], target, count, masked=mask_chunk is not None)
            region = _scale_region(region, colour_map.shape[:2], chunk[t].mask.shape, frames.shape[1:3])
            # What the processed layer was blended over: the unprocessed reference, else the frame itself.
            background = reference_chunk[t] if uses_reference else frames[t]
            mask = mask_chunk[t] if mask_chunk is not None else None
            self._render(frames[t], mask, background, region, colour_map, out[t].numpy())
            report(progress, total + done, 2 * total)
        return out.to(frames.device)

    def _work_frame(self, frame, reference, mask) -> _WorkFrame:
        processed = float_array(frame)
        small = self._shrink(processed)
        guide_source = small if reference is None else self._shrink(float_array(reference))
        mask_small = np.ones(small.shape[:2], np.float32) if mask is None else self._shrink(float_array(mask))
        motion = self._motion(guide_source @ GREY_WEIGHTS, mask_small, reference is not None)
        return _WorkFrame(small, motion, mask_small, None if mask is None else guide_source)

    def _motion(self, grey: np.ndarray, mask: np.ndarray, with_reference: bool) -> _Motion:
        factor = min(grey.shape) / self.motion_size
        if factor > 1.0:
            size = (max(8, round(grey.shape[1] / factor)), max(8, round(grey.shape[0] / factor)))
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
        if not with_reference:
            # The guide is the flickering frame itself: take the motion from its structure (grey minus
            # its regional light), which flicker leaves alone, so the flow does not chase the flicker.
            return _Motion(grey - _low_pass(grey) + 0.5, _band_pass(grey), None, mask)
        return _Motion(grey, _band_pass(grey), _low_pass(grey), mask)

    def _forward_step(self, frame, reference, mask) -> _WorkFrame:
        """One frame of the forward pass: link it to the previous frame and update the running mean."""
        current = self._work_frame(frame, reference, mask)
        previous = self._previous
        history = None
        if previous is not None and previous.processed.shape == current.processed.shape:
            link = self._link_to_previous(previous, current)
            previous.motion = None  # linked: no longer needed (a whole clip's worth would add up)
            if link is None:
                self.cuts.append(self._index)
            else:
                flow_to_previous, trust_on_current, current.flow_to_next, current.trust_on_previous = link
                history = (previous.forward_mean, previous.forward_count, flow_to_previous, trust_on_current)
        current.forward_mean, current.forward_count = self._running_mean_step(current, history)
        self._previous = current
        self._index += 1
        return current

    def _two_sided_means(self, chunk):
        """Run the backward pass over ``chunk`` and merge it with the forward means, frame by frame.

        From the chunk's end, yields ``(index, target, count)`` per frame: the mean of the forward and
        the backward running means (the frames before and after it), and how many frames it holds."""
        history = None
        for t in range(len(chunk) - 1, -1, -1):
            current = chunk[t]
            backward_mean, backward_count = self._running_mean_step(current, history)
            # Both running means hold the frame itself: count it once.
            n_f, n_b = current.forward_count[..., None], backward_count[..., None]
            count = n_f + n_b - 1.0
            yield t, (n_f * current.forward_mean + n_b * backward_mean - current.processed) / count, count[..., 0]
            history = None
            if current.flow_to_next is not None:
                history = (backward_mean, backward_count, current.flow_to_next, current.trust_on_previous)

    def _fit(self, current: _WorkFrame, target: np.ndarray, count: np.ndarray, masked: bool):
        """``(region, colour map)``: the map that takes the frame toward ``target``, fitted over the region
        (work-resolution rows and columns) where it can change anything: with a mask, its support.
        ``count`` (per pixel) is how many frames the target holds."""
        radius = self.settings.radius
        region = _mask_bounding_box(current.mask, margin=radius + 1) if masked else (slice(None), slice(None))
        source, target, weight = self._layer_fit(current, target)
        weight = weight * self._holds_enough_frames(count)
        if not weight[region].size:
            return region, np.zeros((0, 0, 12), np.float32)
        return region, fit_local_colour_map(
            source[region], target[region], weight[region], radius=radius, regularization=self.settings.regularization
        )

    def _holds_enough_frames(self, count: np.ndarray) -> np.ndarray:
        """Per-pixel fitting weight: 1 where the target holds enough frames to fit the map on, else 0.

        Where the motion could not be followed (a fast, blurred hand; a disocclusion) the target holds
        the frame itself and a few frames linked only to each other, often wrongly: their flicker would
        be kept or pasted over. Enough is ``followed_frames``, or early in a shot, when no pixel can hold
        that many yet, half of what the best-followed pixel holds."""
        enough = min(self.settings.followed_frames, 0.5 * float(count.max()))
        return (count > enough).astype(np.float32)

    def _running_mean_step(self, current: _WorkFrame, history):
        """One step of a running mean of the processed frames along the motion: ``(mean, count)``.

        ``history`` is ``(mean, count, flow, trust)`` of the neighbour already done, or None at a shot's
        start. The neighbour's mean, carried by ``flow`` and weighted by ``trust``, averages with this
        frame; ``count`` (per pixel) is how many frames the mean holds: a shot's first frame counts as
        ``1 + anchor_frames`` (the next frames settle on it instead of swinging with each new one), and
        past ``1 / (1 - temporal_weight)`` frames the mean turns into an exponential moving average.
        """
        processed = current.processed
        if history is None:
            return processed, np.full(processed.shape[:2], 1.0 + self.settings.anchor_frames, np.float32)
        mean, previous_count, flow, trust = history
        flow, trust = _resize_flow(flow, processed.shape[:2]), _resize(trust, processed.shape[:2])
        longest = 1.0 / (1.0 - self.settings.temporal_weight)
        count = 1.0 + trust * np.minimum(warp(previous_count, flow).numpy(), longest - 1.0)
        share = ((count - 1.0) / count)[..., None]
        return (processed + share * (warp(mean, flow).numpy() - processed)).astype(np.float32), count

    def _layer_fit(self, current: _WorkFrame, target: np.ndarray):
        """``(source, target, weight)`` to fit the colour map on: the processed layer under the mask.

        With a soft mask the processed frame is ``background + alpha (layer - background)``: the map
        must take the layer to where it puts the frame on the target, and a pixel's error in the frame
        is alpha times its error in the layer (so the weight is alpha squared).
        """
        if current.background is None:
            return current.processed, target, current.mask
        alpha = np.maximum(current.mask, self.settings.min_alpha)[..., None]
        layer = current.background + (current.processed - current.background) / alpha
        return layer, layer + (target - current.processed) / alpha, current.mask * current.mask

    def _link_to_previous(self, previous: _WorkFrame, current: _WorkFrame):
        """Match ``current`` to ``previous`` by optical flow; None when they are split by a shot cut.

        Flows both ways between two consecutive frames and where each frame's running mean can be
        followed on the other, at motion resolution: ``(flow current->previous, trust on current, flow
        previous->current, trust on previous)``, the last two None without look-ahead."""
        here, there = current.motion, previous.motion
        flow_back = dis_flow(here.guide, there.guide, preset=self.settings.flow_preset)
        flow_forward = dis_flow(there.guide, here.guide, preset=self.settings.flow_preset)
        visible = occlusion_mask(flow_back, flow_forward, motion_boundaries=False).numpy()
        if visible.mean() < self.settings.cut_visible_fraction:
            return None
        flow_back = flow_back.numpy()
        to_previous = (flow_back, self._trust(visible, flow_back, here, there))
        if not self.look_ahead:
            return (*to_previous, None, None)
        visible_there = occlusion_mask(flow_forward, flow_back, motion_boundaries=False).numpy()
        flow_forward = flow_forward.numpy()
        return (*to_previous, flow_forward, self._trust(visible_there, flow_forward, there, here))

    def _trust(self, visible, flow, here: _Motion, there: _Motion) -> np.ndarray:
        """Per pixel of ``here``, 0..1: how far ``there``'s running mean, carried by ``flow``, can be followed."""
        # Where the flow is consistent but wrong (fast, thin motion), the warped detail does not match:
        # compare the guide's high frequencies, which brightness flicker leaves alone.
        mismatch = warp(there.detail, flow).numpy() - here.detail
        trust = visible * np.exp(-(mismatch / self.settings.detail_tolerance) ** 2)
        if here.light is not None:
            # The unprocessed video's own light changed here: the processed frame's change is intended.
            light_change = warp(there.light, flow).numpy() - here.light
            trust *= np.exp(-(light_change / self.settings.light_tolerance) ** 2)
        # Soften the occlusion edges so the correction does not step at them.
        trust = cv2.GaussianBlur(trust, (0, 0), 1.0)
        foreground_both = here.mask * warp(there.mask, flow).numpy()
        return (trust * np.clip(foreground_both * 2.0, 0.0, 1.0)).astype(np.float32)

    def _render(self, frame, mask, background, region, colour_map: np.ndarray, result: np.ndarray) -> None:
        """Apply the colour map to the full-resolution ``frame`` into ``result`` (``[H, W, 3]``, in place).

        Without a mask: ``frame + (A - I) @ frame + b``. With one, the frame is ``background + alpha
        (layer - background)`` and the map changes the processed layer only: ``frame + alpha ((A - I)
        @ layer + b)``, that is ``frame + (A - I) @ (frame - (1 - alpha) background) + alpha b``. At a
        soft edge the layer is not the pixel: scaling the pixel by ``A`` would scale the unprocessed
        share too, by a different amount in every frame. The map covers ``region`` (full-resolution
        rows and columns); outside it the frame is copied."""
        processed = float_array(frame)
        height, width = processed.shape[:2]
        rows, cols = region
        in_place = processed.__array_interface__["data"][0] == result.__array_interface__["data"][0]
        if (rows.stop - rows.start) * (cols.stop - cols.start) < height * width and not in_place:
            result[...] = processed
        if rows.stop <= rows.start or cols.stop <= cols.start:
            return
        processed = processed[rows, cols]
        if mask is not None:
            alpha = np.ascontiguousarray(float_array(mask)[rows, cols])
            background = float_array(background)[rows, cols]
        self._apply(processed, alpha if mask is not None else None, background, colour_map, result[rows, cols])

    def _apply(self, processed, alpha, background, colour_map, result) -> None:
        """:meth:`_render` within its region (``result`` may be a view)."""
        height, width = processed.shape[:2]
        # Plane by plane into reused buffers (this is most of the cost at 720p and above): contiguous
        # planes are several times faster than channel-last slices, and a fresh large array costs its
        # page faults again every frame.
        if self._buffer is None or self._buffer.size < 12 * height * width:
            self._buffer = np.empty(12 * height * width, np.float32)
        planes = self._buffer[: 12 * height * width].reshape(12, height, width)
        layer, unprocessed, corrections = planes[:3], planes[3:6], planes[6:9]
        coefficient, inside, merged = planes[9], planes[10], planes[9:12]
        layer[...] = processed.transpose(2, 0, 1)
        if alpha is not None:
            # The processed layer's share of each pixel, alpha * layer: the pixel minus the unprocessed
            # share, (processed - background) + alpha * background; toward alpha 0 it fades to 0 so
            # that nothing outside the mask changes even where the processed frame is not the background.
            unprocessed[...] = background.transpose(2, 0, 1)
            cv2.multiply(alpha, 1.0 / self.settings.min_alpha, dst=inside)
            cv2.min(inside, 1.0, dst=inside)
            for channel in range(3):
                cv2.subtract(layer[channel], unprocessed[channel], dst=layer[channel])
                cv2.multiply(layer[channel], inside, dst=layer[channel])
                cv2.accumulateProduct(alpha, unprocessed[channel], layer[channel])
        coefficients = cv2.split(np.ascontiguousarray(self.strength * colour_map))
        for row, change in enumerate(corrections):
            cv2.resize(coefficients[9 + row], (width, height), dst=change, interpolation=cv2.INTER_LINEAR)
            if alpha is not None:
                cv2.multiply(change, alpha, dst=change)
            for column in range(3):
                cv2.resize(coefficients[3 * row + column], (width, height), dst=coefficient,
                           interpolation=cv2.INTER_LINEAR)
                cv2.accumulateProduct(coefficient, layer[column], change)
        merged = merged.reshape(height, width, 3)  # the last planes, free now, as one interleaved image
        cv2.merge(list(corrections), dst=merged)
        merged += processed
        np.clip(merged, 0.0, 1.0, out=result)


def _check_output(out, frames: torch.Tensor, reference) -> None:
    """``out`` must be a contiguous float32 CPU tensor of the frames' shape, and not the reference."""
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(frames.shape) or out.dtype != torch.float32 \
            or out.device.type != "cpu" or frames.device.type != "cpu" or not out.is_contiguous():
        raise HarmoVidError(
            f"deflicker out: expected a contiguous float32 CPU tensor of the frames' shape {tuple(frames.shape)}, "
            f"got {getattr(out, 'dtype', type(out).__name__)} {tuple(getattr(out, 'shape', ()))}."
        )
    if reference is not None and out.data_ptr() == reference.data_ptr():
        raise HarmoVidError("deflicker out: must not be the reference frames, which it reads while writing.")


def _mask_bounding_box(mask: np.ndarray, margin: int):
    """The bounding box (row and column slices) of ``mask``'s nonzero pixels, widened by ``margin``."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return slice(0, 0), slice(0, 0)
    height, width = mask.shape
    return (slice(max(0, rows[0] - margin), min(height, rows[-1] + 1 + margin)),
            slice(max(0, cols[0] - margin), min(width, cols[-1] + 1 + margin)))


def _scale_region(region, region_shape, work_shape, full_shape):
    """The full-resolution rows and columns that a work-resolution ``region`` covers (outward-rounded)."""
    bounds = []
    for part, size, work, full in zip(region, region_shape, work_shape, full_shape):
        start = part.start or 0
        stop = start + size
        bounds.append(slice(int(np.floor(start * full / work)), min(full, int(np.ceil(stop * full / work)))))
    return tuple(bounds)


def _resize(image: np.ndarray, shape) -> np.ndarray:
    if image.shape[:2] == tuple(shape):
        return image
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _resize_flow(flow: np.ndarray, shape) -> np.ndarray:
    """A flow field brought to another resolution: resampled, and its vectors scaled with it."""
    resized = _resize(flow, shape)
    if resized is not flow:
        resized[..., 0] *= shape[1] / flow.shape[1]
        resized[..., 1] *= shape[0] / flow.shape[0]
    return resized


def deflicker(
    frames: torch.Tensor,
    *,
    reference: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
    strength: float = 1.0,
    progress: ProgressCallback = None,
) -> torch.Tensor:
    """Remove lighting flicker from processed ``frames`` ``[T, H, W, 3]``; returns the same shape.

    ``reference``: the unprocessed video, used for motion only (optional). ``mask`` ``[T, H, W]``,
    1 = foreground: restrict the correction to the foreground (optional). ``strength`` 0..1. The whole
    clip is one chunk: every frame follows the frames before and after it (this holds the clip at work
    resolution, about 5 MB per frame at 720p, besides the frames; :class:`Deflicker` streams causally
    in bounded memory).
    """
    return Deflicker(strength, look_ahead=True).process(frames, mask_chunk=mask, reference_chunk=reference,
                                                        progress=progress)

"""The colour transform the learned HarmoIm predicts: luminance-banded affine colour maps.

A frame's colours ``x`` (sRGB, 0..1) are mapped by ``K`` affine maps ``M_k`` (3x3 matrix + offset), one
per luminance band, blended by hat functions of the pixel's luma ``Y``::

    y = sum_k  w_k(Y) * (A_k x + b_k),      w_k(Y) = max(0, 1 - |Y (K - 1) - k|)

so shadows, midtones and highlights can each get their own colour matrix (split toning, tone curves,
white balance, exposure, saturation: what colour grades do), while the map stays smooth in colour and
identical for every pixel of a colour. It changes light, never content, and costs one small matmul per
pixel at any resolution.

The network's raw outputs are bounded here (``tanh``) so that no prediction can wreck a frame, and a
gate in 0..1 (the network's confidence that the subject needs correcting) scales the whole change.
At inference two restraints can hold back what the network asserts from its prior of how people look
(learned from a handful of them) rather than reads from the scene: ``limit_exposure`` and
``respect_scene_cast``; and ``clarity_factors`` sizes the change by how clearly it stands out from
the network's own error.
"""

import math

import cv2
import numpy as np
import torch

from ..color import rgb_to_lab
from ..flow import GREY_WEIGHTS

LUMA = torch.from_numpy(GREY_WEIGHTS)  # BT.601 luma weights, as a tensor
LUMA_ROWS = np.repeat(GREY_WEIGHTS.astype(np.float32)[None], 3, axis=0)  # [3, 3]: luma in each channel (cv2.transform)

MAX_MATRIX_CHANGE = 0.6  # largest change of any colour-matrix entry from the identity
MAX_OFFSET = 0.35  # largest offset, in 0..1 colour units
# A background cast (mean Lab a/b) weaker than the first value has no direction worth trusting;
# from the second on, ``respect_scene_cast`` applies in full.
SCENE_CAST_FADE = (5.0, 15.0)
# ``respect_scene_cast`` holds a person to the room's cast only if they show a good part of it (their
# cast along its direction over the room's): below the first share nothing ties the person's colour to
# the room's light (someone in front of a green screen), from the second on the rule applies in full.
# On folds of the training split any pair from (0.2, 0.5) to (0.5, 0.8) gave the same figures.
SCENE_CAST_SHARE = (0.3, 0.6)
# ``clarity_factors``: on people it never saw, the network's change is about this large (RMS over the
# person, 0..1 colour units) where the look needed no correction, so a change of this size is kept only
# by half and smaller ones mostly dropped. Changes from the first value to the second grow by up to
# ``CLEAR_CHANGE_GAIN``: a change that large is a strong look, which the network undoes only in part.
# Chosen on folds of the training split (``scripts/harmoim_fold_check.py clarity``; docs/training.md).
CHANGE_NOISE = 0.01
CLEAR_CHANGE = (0.015, 0.03)
CLEAR_CHANGE_GAIN = 1.25
STRIP_ROWS = 32  # rows the fast path maps at a time: a strip's scratch arrays stay in the CPU cache


def parameter_count(bands: int) -> int:
    """Raw outputs the network predicts: 12 per band (3x3 matrix + offset) and one gate."""
    return 12 * bands + 1


def bounded_maps(raw: torch.Tensor, bands: int) -> torch.Tensor:
    """Raw network outputs ``[B, 12 K + 1]`` -> gated affine maps ``[B, K, 4, 3]`` (rows: R, G, B, 1).

    The map is ``identity + gate * bounded change``; a gate of 0 is exactly the identity.
    """
    batch = raw.shape[0]
    change = raw[:, : 12 * bands].view(batch, bands, 4, 3).tanh()
    scale = raw.new_tensor([MAX_MATRIX_CHANGE] * 3 + [MAX_OFFSET]).view(1, 1, 4, 1)
    gate = torch.sigmoid(raw[:, 12 * bands :]).view(batch, 1, 1, 1)
    return _identity_map(raw) + gate * scale * change


def band_weights(luma: torch.Tensor, bands: int) -> torch.Tensor:
    """Hat-function weights ``[..., K]`` of luma values ``[...]`` (they sum to 1)."""
    centres = torch.arange(bands, dtype=luma.dtype, device=luma.device)
    position = luma.clamp(0.0, 1.0).unsqueeze(-1) * (bands - 1)
    return (1.0 - (position - centres).abs()).clamp(min=0.0)


def apply_maps(pixels: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Map colours ``[B, N, 3]`` through per-image banded maps ``[B, K, 4, 3]`` -> ``[B, N, 3]`` (not clamped)."""
    batch, count, _ = pixels.shape
    bands = maps.shape[1]
    weights = band_weights(pixels @ LUMA.to(pixels), bands)  # [B, N, K]
    # Each pixel's own affine map, the bands' maps blended by its weights: [B, N, K] x [B, K, 12] -> [B, N, 4, 3].
    blended = torch.bmm(weights, maps.reshape(batch, bands, 12)).view(batch, count, 4, 3)
    return torch.einsum("bnc,bncd->bnd", pixels, blended[:, :, :3]) + blended[:, :, 3]


def limit_exposure(maps: torch.Tensor, pixels: torch.Tensor, weights: torch.Tensor, max_change: float) -> torch.Tensor:
    """``maps`` ``[B, K, 4, 3]`` scaled per image so that they change the mean luma of ``pixels`` ``[B, N, 3]``
    (weighted by ``weights`` ``[B, N]``, e.g. the alpha) by at most ``max_change``; colour ratios are kept."""
    counted = (weights > 0).any(0)  # only these pixels count (in some image): only they are mapped
    pixels, weights = pixels[:, counted], weights[:, counted]
    before = _weighted_mean_luma(pixels, weights)
    after = _weighted_mean_luma(apply_maps(pixels, maps).clamp(0.0, 1.0), weights)
    wanted = before + (after - before).clamp(-max_change, max_change)
    return maps * (wanted / after.clamp(min=1e-4)).view(-1, 1, 1, 1)


def _weighted_mean_luma(colours: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean luma ``[B]`` of colours ``[B, N, 3]`` weighted by ``weights`` ``[B, N]``."""
    return (colours @ LUMA.to(colours) * weights).sum(1) / weights.sum(1).clamp(min=1e-6)


def _identity_map(like: torch.Tensor) -> torch.Tensor:
    """The identity affine map ``[4, 3]`` (rows R, G, B, 1), of ``like``'s dtype and device."""
    return torch.cat([torch.eye(3, dtype=like.dtype, device=like.device), like.new_zeros(1, 3)])


def respect_scene_cast(maps: torch.Tensor, pixels: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``maps`` ``[B, K, 4, 3]`` shrunk toward the identity where they would take the person's colour cast
    below the scene's: in a warm room people look warm, and cooling them is the network mistaking the
    room's light for a grade.

    Along the direction of the background's mean cast (Lab a/b of ``pixels`` ``[B, N, 3]`` where
    ``alpha`` ``[B, N]`` < 0.1), the person (alpha > 0.5) may lose cast down to the lesser of their own
    and the background's, not below; a map that goes further is shrunk just enough. The rule fades in
    with the strength of the background's cast (``SCENE_CAST_FADE``) and with the share of it the person
    shows (``SCENE_CAST_SHARE``): a person who shows little of the room's cast is not lit by it, and
    holding them to their cast would throw away the whole map for a small side effect.
    """
    person, scene = (alpha > 0.5).to(pixels), (alpha < 0.1).to(pixels)

    def mean_ab(lab, weight):
        return (lab[..., 1:] * weight[..., None]).sum(1) / weight.sum(1, keepdim=True).clamp(min=1.0)

    lab = rgb_to_lab(pixels)
    before, cast = mean_ab(lab, person), mean_ab(lab, scene)  # [B, 2] each
    inside = person.any(0)  # the person's pixels (in some image): only they are mapped
    after = mean_ab(rgb_to_lab(apply_maps(pixels[:, inside], maps).clamp(0.0, 1.0)), person[:, inside])
    strength = cast.norm(dim=-1)
    direction = cast / strength.clamp(min=1e-6).unsqueeze(-1)
    along_before, along_after, along_scene = ((c * direction).sum(-1) for c in (before, after, cast))
    floor = torch.minimum(along_before, along_scene)
    # Below the floor the map is shrunk so that the person ends on it (the cast moves about linearly).
    keep = ((along_before - floor) / (along_before - along_after).clamp(min=1e-6)).clamp(0.0, 1.0)
    keep = torch.where(along_after < floor, keep, torch.ones_like(keep))
    fade = ((strength - SCENE_CAST_FADE[0]) / (SCENE_CAST_FADE[1] - SCENE_CAST_FADE[0])).clamp(0.0, 1.0)
    share = along_before / along_scene.clamp(min=1e-6)
    fade = fade * ((share - SCENE_CAST_SHARE[0]) / (SCENE_CAST_SHARE[1] - SCENE_CAST_SHARE[0])).clamp(0.0, 1.0)
    enough = (person.sum(1) >= 16) & (scene.sum(1) >= 16)  # too few pixels to measure: leave the map
    keep = torch.where(enough, 1.0 - fade * (1.0 - keep), torch.ones_like(keep))
    return scale_change(maps, keep)


def clarity_factors(maps: torch.Tensor, pixels: torch.Tensor, alpha: torch.Tensor, *,
                    noise: float = CHANGE_NOISE, gain: float = CLEAR_CHANGE_GAIN) -> torch.Tensor:
    """How much of each image's change to keep ``[B]``, by how clearly it stands out from the network's
    error: ``m^2 / (m^2 + noise^2)`` times a factor rising from 1 to ``gain`` over ``CLEAR_CHANGE``, ``m``
    the RMS change that ``maps`` ``[B, K, 4, 3]`` make to the person's colours (``pixels`` ``[B, N, 3]``
    where ``alpha`` ``[B, N]`` > 0.5). Apply with ``scale_change``.

    A Wiener-like shrink: where a look needs no correction the network still moves the person a little,
    by its error, and a change of that size is as likely wrong as right; a large change is a strong look,
    and there the network's answer, hedged toward doing nothing, falls short. A grown change may cross
    the other restraints' bounds: apply those again where a factor is above 1.
    """
    person = alpha > 0.5
    inside = person.any(0)  # the person's pixels (in some image): only they are mapped
    pixels, person = pixels[:, inside], person[:, inside].to(pixels)
    change = ((apply_maps(pixels, maps).clamp(0.0, 1.0) - pixels) ** 2).mean(-1)  # [B, N]
    power = (change * person).sum(1) / person.sum(1).clamp(min=1.0)  # m^2
    low, high = CLEAR_CHANGE
    rise = ((power.sqrt() - low) / (high - low)).clamp(0.0, 1.0)
    return power / (power + noise**2).clamp(min=1e-12) * (1.0 + (gain - 1.0) * rise)


def scale_change(maps: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """``maps`` ``[B, K, 4, 3]`` with each image's change from the identity scaled by ``factors`` ``[B]``."""
    identity = _identity_map(maps)
    return identity + factors.view(-1, 1, 1, 1) * (maps - identity)


def apply_through_alpha(frames: torch.Tensor, alpha: torch.Tensor, maps: torch.Tensor, strength: float = 1.0):
    """Harmonized frames: ``frames`` ``[B, H, W, 3]`` mapped by ``maps`` ``[B, K, 4, 3]``, clamped to 0..1,
    mixed in through ``strength * alpha`` ``[B, H, W]`` (where alpha is 0 the frame is unchanged)."""
    batch, height, width, _ = frames.shape
    mapped = apply_maps(frames.reshape(batch, -1, 3), maps).view(frames.shape).clamp(0.0, 1.0)
    weight = (strength * alpha).unsqueeze(-1)
    return frames + weight * (mapped - frames)


def apply_to_frame(frame: np.ndarray, alpha: np.ndarray, maps: torch.Tensor, strength: float = 1.0,
                   out: np.ndarray = None) -> np.ndarray:
    """``apply_through_alpha`` for one frame at full resolution, fast on the CPU (OpenCV, float32):
    ``frame`` ``[H, W, 3]`` and ``alpha`` ``[H, W]`` numpy arrays, ``maps`` ``[K, 4, 3]``.

    Writes into ``out`` (``[H, W, 3]`` float32, e.g. a view into a larger image; it must not overlap
    ``frame``) when given, else into a new array; returns it. The frame is mapped in strips of rows,
    each only between the first and last column where alpha is nonzero; the rest is copied.
    """
    out = np.empty_like(frame) if out is None else out
    height, width = frame.shape[:2]
    matrices = maps.permute(0, 2, 1).numpy().astype(np.float32)  # cv2 wants [3 out, 4 in] per band
    steps = np.diff(matrices, axis=0)  # [K - 1, 3, 4]: what each ramp adds (see _map_block)
    scratch = [np.empty(min(STRIP_ROWS, height) * width * 3, np.float32) for _ in range(4)]
    for top in range(0, height, STRIP_ROWS):
        rows = slice(top, top + STRIP_ROWS)
        columns = np.flatnonzero((alpha[rows] != 0).any(axis=0))
        left, right = (int(columns[0]), int(columns[-1]) + 1) if columns.size else (0, 0)
        out[rows, :left] = frame[rows, :left]
        out[rows, right:] = frame[rows, right:]
        if right > left:
            block = (rows, slice(left, right))
            _map_block(frame[block], alpha[block], matrices, steps, strength, out[block], scratch)
    return out


def _clip_unit(image: np.ndarray) -> None:
    """Clamp ``image`` to 0..1 in place (OpenCV's thresholds: a fast pass each, unlike ``np.clip``)."""
    cv2.threshold(image, 1.0, 0.0, cv2.THRESH_TRUNC, dst=image)
    cv2.threshold(image, 0.0, 0.0, cv2.THRESH_TOZERO, dst=image)


def _map_block(frame: np.ndarray, alpha: np.ndarray, matrices: np.ndarray, steps: np.ndarray, strength: float,
               out: np.ndarray, scratch) -> None:
    """The banded maps (``matrices`` ``[K, 3, 4]``) applied to a block ``[h, w, 3]`` through its alpha, into ``out``.

    The hat-weighted sum of the bands' maps is computed as ramps: for a pixel at band position ``p``,
    ``sum_k w_k(p) M_k = M_0 + sum_k r_k(p) (M_k - M_k-1)`` with ``r_k(p) = clamp(p - k + 1, 0, 1)``
    (``steps[k - 1]`` = ``M_k - M_k-1``). Ramps
    that are 1 over the whole block fold into its base map and ramps that are 0 drop out, so a block
    spanning ``n`` bands costs ``n - 1`` weighted passes.

    ``scratch``: four flat float32 arrays of at least ``3 h w`` values, reused block after block so that
    they stay in the CPU cache and no pass allocates. Every per-pixel weight (band position, ramp,
    alpha) is kept in all three channels: numpy's broadcasting of an ``[h, w, 1]`` weight over colours
    costs several times a plain elementwise pass.
    """
    bands = matrices.shape[0]
    height, width = frame.shape[:2]
    mapped, band_map, position, ramp = (array[: height * width * 3].reshape(height, width, 3) for array in scratch)
    cv2.transform(frame, LUMA_ROWS * np.float32(bands - 1), dst=position)  # luma -> band position, x3
    cv2.threshold(position, bands - 1, 0.0, cv2.THRESH_TRUNC, dst=position)
    cv2.threshold(position, 0.0, 0.0, cv2.THRESH_TOZERO, dst=position)
    lowest, highest = cv2.minMaxLoc(position.reshape(height, -1))[:2]
    base = int(lowest)  # every ramp up to this band is 1 over the block
    top = min(bands - 1, math.ceil(highest))  # every ramp past this band is 0
    cv2.transform(frame, matrices[base], dst=mapped)
    for band in range(base + 1, top + 1):
        np.subtract(position, np.float32(band - 1), out=ramp)
        _clip_unit(ramp)
        cv2.transform(frame, steps[band - 1], dst=band_map)
        cv2.accumulateProduct(band_map, ramp, mapped)  # mapped += ramp * band_map, in one pass
    _clip_unit(mapped)
    cv2.subtract(mapped, frame, dst=mapped)  # OpenCV reads the block (a strided view) faster than numpy
    blend = np.float32(strength) * alpha
    cv2.merge([blend, blend, blend], dst=ramp)
    mapped *= ramp
    cv2.add(mapped, frame, dst=out)  # into a strided view of the output: OpenCV again, twice numpy's speed

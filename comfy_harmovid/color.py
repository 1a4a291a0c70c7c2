"""Colour spaces (sRGB <-> linear, RGB <-> CIE Lab under D65) and .cube colour look-up tables.

All functions take and return float tensors with the colour in the last dimension (``[..., 3]``),
so they work on one pixel, one frame ``[H, W, 3]`` or a clip ``[T, H, W, 3]`` alike.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from .errors import HarmoVidError
from .validate import check_frames

# ---------------------------------------------------------------------------------------------
# sRGB transfer function and CIE Lab (D65 white, sRGB primaries)
# ---------------------------------------------------------------------------------------------

_RGB_TO_XYZ = torch.tensor(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_XYZ_TO_RGB = torch.linalg.inv(_RGB_TO_XYZ)
_D65_WHITE = torch.tensor([0.95047, 1.0, 1.08883])
_LAB_EPSILON = 216.0 / 24389.0  # (6/29)^3: below it Lab's cube root turns into a straight line
_LAB_KAPPA = 24389.0 / 27.0


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values (0..1) to linear light (IEC 61966-2-1)."""
    return torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb.clamp(min=0.0) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """Linear light to sRGB encoding (IEC 61966-2-1)."""
    return torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear.clamp(min=0.0) ** (1 / 2.4) - 0.055)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (0..1) to CIE L*a*b* (D65): L in 0..100, a and b roughly -128..127."""
    xyz = srgb_to_linear(rgb) @ _RGB_TO_XYZ.to(rgb).T / _D65_WHITE.to(rgb)
    f = torch.where(xyz > _LAB_EPSILON, xyz.clamp(min=_LAB_EPSILON) ** (1 / 3), (_LAB_KAPPA * xyz + 16) / 116)
    fx, fy, fz = f.unbind(-1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIE L*a*b* (D65) to sRGB (0..1). Out-of-gamut colours come back outside 0..1: clamp if needed."""
    lightness, a, b = lab.unbind(-1)
    fy = (lightness + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], dim=-1)
    xyz = torch.where(f**3 > _LAB_EPSILON, f**3, (116 * f - 16) / _LAB_KAPPA)
    linear = (xyz * _D65_WHITE.to(lab)) @ _XYZ_TO_RGB.to(lab).T
    return linear_to_srgb(linear)


# ---------------------------------------------------------------------------------------------
# .cube look-up tables
# ---------------------------------------------------------------------------------------------


@dataclass
class Lut:
    """A colour look-up table.

    ``table`` is ``[N, N, N, 3]`` for a 3D LUT, indexed ``[blue, green, red]`` (the .cube order: red
    changes fastest), or ``[N, 3]`` for a 1D LUT (one curve per channel). Inputs are mapped from
    ``domain_min..domain_max`` (per channel) onto the table's grid.
    """

    table: torch.Tensor
    domain_min: torch.Tensor
    domain_max: torch.Tensor
    title: str = ""

    @property
    def size(self) -> int:
        return int(self.table.shape[0])

    @property
    def is_3d(self) -> bool:
        return self.table.ndim == 4


def identity_lut(size: int = 33) -> Lut:
    """A 3D LUT that maps every colour to itself (on its grid)."""
    if size < 2:
        raise HarmoVidError(f"identity_lut: size must be at least 2, got {size}.")
    axis = torch.linspace(0.0, 1.0, size)
    blue, green, red = torch.meshgrid(axis, axis, axis, indexing="ij")
    return Lut(torch.stack([red, green, blue], dim=-1), torch.zeros(3), torch.ones(3), "identity")


def read_cube(path) -> Lut:
    """Read an Adobe/Resolve ``.cube`` file (3D or 1D; TITLE, DOMAIN_MIN/MAX, comments)."""
    path = Path(path)
    if not path.is_file():
        raise HarmoVidError(f"LUT file not found: {path}. Check the path (a .cube file is expected).")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise HarmoVidError(f"cannot read LUT file {path}: {error}.") from error

    def fail(line_number: int, problem: str) -> HarmoVidError:
        where = f"line {line_number}" if line_number else "file"
        return HarmoVidError(
            f"{path.name} is not a valid .cube LUT ({where}: {problem}). Export it again as an Adobe/Resolve "
            ".cube file (LUT_3D_SIZE N followed by N^3 lines of three numbers)."
        )

    title, size, dimensions = "", None, None
    domain_min, domain_max = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    rows = []
    for line_number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line.upper().startswith("TITLE"):  # a title may contain '#'
            line = line.split("#", 1)[0].strip()
        if not line:
            continue
        keyword, _, rest = line.partition(" ")
        keyword_upper = keyword.upper()
        if keyword_upper == "TITLE":
            title = rest.strip().strip('"')
        elif keyword_upper in ("LUT_3D_SIZE", "LUT_1D_SIZE"):
            if size is not None:
                raise fail(line_number, "a second LUT size line; only one table per file is supported")
            try:
                size = int(rest.strip())
            except ValueError:
                raise fail(line_number, f"size {rest.strip()!r} is not a whole number") from None
            dimensions = 3 if keyword_upper == "LUT_3D_SIZE" else 1
            if not 2 <= size <= (256 if dimensions == 3 else 65536):
                raise fail(line_number, f"size {size} is out of range")
        elif keyword_upper in ("DOMAIN_MIN", "DOMAIN_MAX", "LUT_3D_INPUT_RANGE", "LUT_1D_INPUT_RANGE"):
            values = _parse_numbers(rest, line_number, fail)
            if keyword_upper.endswith("INPUT_RANGE"):
                if len(values) != 2:
                    raise fail(line_number, f"{keyword} needs two numbers")
                domain_min, domain_max = [values[0]] * 3, [values[1]] * 3
            else:
                if len(values) != 3:
                    raise fail(line_number, f"{keyword} needs three numbers")
                (domain_min if keyword_upper == "DOMAIN_MIN" else domain_max)[:] = values
        elif keyword_upper[0].isalpha() and keyword_upper not in ("NAN", "INF"):
            raise fail(line_number, f"unknown keyword {keyword!r}")
        else:
            values = _parse_numbers(line, line_number, fail)
            if len(values) != 3:
                raise fail(line_number, f"expected three numbers (R G B), got {len(values)}")
            rows.append(values)

    if size is None:
        raise fail(0, "no LUT_3D_SIZE or LUT_1D_SIZE line")
    expected = size**3 if dimensions == 3 else size
    if len(rows) != expected:
        raise fail(0, f"LUT size {size} needs {expected} colour lines, found {len(rows)}")
    if any(high <= low for low, high in zip(domain_min, domain_max)):
        raise fail(0, f"DOMAIN_MIN {domain_min} must be below DOMAIN_MAX {domain_max} in every channel")
    table = torch.tensor(rows, dtype=torch.float32)
    if not torch.isfinite(table).all():
        raise fail(0, "the table contains NaN or infinite values")
    if dimensions == 3:
        table = table.reshape(size, size, size, 3)
    return Lut(table, torch.tensor(domain_min), torch.tensor(domain_max), title or path.stem)


def _parse_numbers(text: str, line_number: int, fail) -> list:
    try:
        return [float(value) for value in text.split()]
    except ValueError:
        raise fail(line_number, f"{text.strip()!r} is not a list of numbers") from None


def write_cube(path, lut: Lut) -> None:
    """Write ``lut`` as an Adobe/Resolve ``.cube`` file (red changes fastest)."""
    keyword = "LUT_3D_SIZE" if lut.is_3d else "LUT_1D_SIZE"
    lines = [f'TITLE "{lut.title}"'] if lut.title else []
    lines += [
        f"{keyword} {lut.size}",
        "DOMAIN_MIN " + " ".join(f"{v:.6f}" for v in lut.domain_min.tolist()),
        "DOMAIN_MAX " + " ".join(f"{v:.6f}" for v in lut.domain_max.tolist()),
    ]
    lines += [f"{r:.6f} {g:.6f} {b:.6f}" for r, g, b in lut.table.reshape(-1, 3).tolist()]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _lookup(pixels: torch.Tensor, lut: Lut) -> torch.Tensor:
    """Map ``[N, 3]`` pixels through ``lut`` (trilinear for 3D, linear per channel for 1D)."""
    low, high = lut.domain_min.to(pixels), lut.domain_max.to(pixels)
    unit = ((pixels - low) / (high - low)).clamp(0.0, 1.0)
    table = lut.table.to(pixels)
    if lut.is_3d:
        # grid_sample on a 5D volume is trilinear: volume [1, 3, blue, green, red], grid (x=r, y=g, z=b).
        volume = table.permute(3, 0, 1, 2).unsqueeze(0)
        grid = (unit * 2.0 - 1.0).view(1, -1, 1, 1, 3)
        out = F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return out.view(3, -1).T
    position = unit * (lut.size - 1)
    below = position.floor().long().clamp(max=lut.size - 2)
    fraction = position - below
    channels = torch.arange(3, device=pixels.device)
    return table[below, channels] * (1 - fraction) + table[below + 1, channels] * fraction


def apply_lut(frames: torch.Tensor, lut: Lut, strength: float = 1.0, *, chunk_pixels: int = 1 << 21) -> torch.Tensor:
    """Recolour ``frames`` (``[T, H, W, 3]`` or ``[H, W, 3]``, 0..1) through ``lut``.

    ``strength`` blends between the input (0) and the full LUT (1). Work is done in chunks of
    ``chunk_pixels`` so any resolution fits in memory. Returns float32 in 0..1, same shape as input.
    """
    single = frames.ndim == 3
    frames = check_frames(frames, "frames")
    if not isinstance(lut, Lut):
        raise HarmoVidError(f"apply_lut: expected a Lut (from read_cube), got {type(lut).__name__}.")
    pixels = frames.reshape(-1, 3).float()
    out = torch.empty_like(pixels)
    for start in range(0, pixels.shape[0], chunk_pixels):
        out[start : start + chunk_pixels] = _lookup(pixels[start : start + chunk_pixels], lut)
    if strength != 1.0:
        out = pixels + strength * (out - pixels)
    out = out.clamp(0.0, 1.0).reshape(frames.shape)
    return out[0] if single else out


def blend_luts(luts: Sequence[Lut], weights: Sequence[float]) -> Lut:
    """One 3D LUT that is the weighted average of ``luts`` (weights are normalised to sum to 1).

    Tables of different sizes or domains are first resampled onto a common 0..1 grid of the largest size.
    """
    if len(luts) == 0 or len(luts) != len(weights):
        raise HarmoVidError(f"blend_luts: need one weight per LUT, got {len(luts)} LUTs and {len(weights)} weights.")
    weights = torch.tensor([float(w) for w in weights])
    if (weights < 0).any() or float(weights.sum()) <= 0:
        raise HarmoVidError(f"blend_luts: weights must be non-negative and not all zero, got {weights.tolist()}.")
    weights = weights / weights.sum()
    size = max(lut.size for lut in luts if lut.is_3d) if any(lut.is_3d for lut in luts) else 33
    grid = identity_lut(size).table
    tables = [_lookup(grid.reshape(-1, 3), lut).reshape(grid.shape) for lut in luts]
    table = sum(w * t for w, t in zip(weights, tables))
    title = " + ".join(f"{w:.2f} {lut.title}" for w, lut in zip(weights.tolist(), luts))
    return Lut(table, torch.zeros(3), torch.ones(3), title)

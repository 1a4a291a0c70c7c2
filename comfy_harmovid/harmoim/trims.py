"""Person trims: the artist's exposure, white balance and saturation on top of the automatic HarmoIm.

The automatic change reads the scene's light, and the scene cannot always tell a look to undo from how
a person was filmed (README, "Why the goal is out of this method's reach"); the artist can. Trims move
the person after the harmonizer, through the alpha (pixels outside it never change), with the operations
the training grades are made of (``grades``), in a grading tool's order: white balance and exposure in
linear light, then saturation. They are the same on every frame, so they add no flicker.
"""

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np
import torch

from ..errors import HarmoVidError
from ..filters import float_array
from ..validate import check_mask
from .grades import NEUTRAL_KELVIN, linear_gains, white_balance_gains
from .transform import LUMA_ROWS

# Entries of each channel's tone table: a 16-bit index, so looking a value up moves a value by at most the
# table's slope / 131070: under 1e-3 with every trim at its limit, a quarter of an 8-bit step.
TABLE_SIZE = 65536


@dataclass(frozen=True)
class PersonTrims:
    """How the artist moves the person after the automatic change; the defaults change nothing."""

    exposure: float = 0.0  # stops: +1 doubles the light on the person, -1 halves it
    temperature: float = NEUTRAL_KELVIN  # kelvin: 6500 changes nothing, lower is cooler (bluer), higher warmer
    tint: float = 0.0  # + toward magenta, - toward green (as in Lightroom and Resolve)
    saturation: float = 1.0  # 0 grey, 1 unchanged, 2 twice as far from grey

    RANGES = {"exposure": (-4.0, 4.0), "temperature": (2000.0, 15000.0), "tint": (-0.5, 0.5), "saturation": (0.0, 2.0)}
    # What each trim does, in the words of the node's tooltips and the commands' help.
    HELP = {
        "exposure": "stops on the person after the automatic change: +1 doubles the light, -1 halves it",
        "temperature": "white balance of the person in kelvin: 6500 changes nothing, lower is cooler (bluer), "
                       "higher warmer",
        "tint": "+ toward magenta, - toward green",
        "saturation": "0 grey, 1 unchanged, 2 twice as colourful",
    }

    def __post_init__(self):
        for item in fields(self):
            value, (low, high) = getattr(self, item.name), self.RANGES[item.name]
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if isinstance(value, bool) or not low <= number <= high:  # NaN fails the comparison too
                raise HarmoVidError(f"person {item.name} must be between {low:g} and {high:g}, got {value!r}.")
            object.__setattr__(self, item.name, number)  # a plain float, whatever number type came in

    @property
    def is_identity(self) -> bool:
        return self == PersonTrims()

    def gains(self) -> torch.Tensor:
        """Linear-light RGB gains of the white balance and exposure trims."""
        return white_balance_gains(self.temperature, -self.tint) * 2.0 ** self.exposure

    def tone_tables(self) -> np.ndarray:
        """``[3, TABLE_SIZE]`` float32: each channel's value after the white balance and exposure trims, for
        ``TABLE_SIZE`` inputs evenly spaced over 0..1 (``grades.linear_gains`` sampled)."""
        inputs = torch.linspace(0.0, 1.0, TABLE_SIZE, dtype=torch.float64)[:, None].expand(-1, 3)
        return linear_gains(inputs, self.gains().double()).T.float().contiguous().numpy()

    def saturation_matrix(self) -> np.ndarray:
        """``[3, 3]`` float32 (rows: output channels, for ``cv2.transform``): each colour moved ``saturation``
        times as far from its luma (``grades.scale_saturation`` as a matrix)."""
        return (self.saturation * np.eye(3) + (1.0 - self.saturation) * LUMA_ROWS).astype(np.float32)


class TrimmedFrames:
    """Applies ``PersonTrims`` to frames in place; the tables are built once for a whole clip."""

    def __init__(self, trims: PersonTrims):
        self._tables = None if np.allclose(trims.gains().numpy(), 1.0) else trims.tone_tables()
        self._saturation = None if trims.saturation == 1.0 else trims.saturation_matrix()

    def apply(self, frame: np.ndarray, alpha: np.ndarray) -> None:
        """Trim the person of ``frame`` ``[H, W, 3]`` (float32, written in place) through ``alpha`` ``[H, W]``."""
        rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
        if rows.size == 0:
            return
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # only where the person is
        region, weight = frame[box], alpha[box][..., None]
        if self._tables is not None:
            # Rounded to the nearest entry and clamped to 0..1 (saturating) in one pass.
            index = cv2.multiply(np.ascontiguousarray(region), TABLE_SIZE - 1, dtype=cv2.CV_16U)
            trimmed = cv2.merge([np.take(table, channel) for table, channel in zip(self._tables, cv2.split(index))])
        else:
            trimmed = np.clip(region, 0.0, 1.0)
        if self._saturation is not None:
            trimmed = cv2.transform(trimmed, self._saturation)
            np.clip(trimmed, 0.0, 1.0, out=trimmed)
        trimmed -= region
        trimmed *= weight
        region += trimmed


class TrimmedHarmonizer:
    """A streaming harmonizer (``process`` as the statistics and learned ones) followed by person trims."""

    def __init__(self, harmonizer, trims: PersonTrims):
        self.harmonizer = harmonizer
        self.uses_background = getattr(harmonizer, "uses_background", True)
        self._frames = TrimmedFrames(trims)

    def process(self, composite_chunk, alpha_chunk, background_chunk=None, *, out=None) -> torch.Tensor:
        result = self.harmonizer.process(composite_chunk, alpha_chunk, background_chunk, out=out)
        frames = result if result.device.type == "cpu" else result.cpu()
        # The harmonizer has checked the alpha; this only gives it its frame axis back when it had none.
        target, alphas = frames.numpy(), float_array(check_mask(alpha_chunk, "alpha", finite=False))
        for t in range(target.shape[0]):
            self._frames.apply(target[t], alphas[t])
        return frames.to(result.device)

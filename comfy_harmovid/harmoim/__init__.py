"""Per-frame HarmoIm: put a person composited into a scene in the scene's light, frame by frame.

Two methods, chosen by name in ``methods`` (:func:`make_harmonizer`, :func:`harmonize_frames`):

- ``statistics``: robust colour statistics, no weights (:class:`StatisticsHarmonizer`, its knobs in
  :class:`StatisticsSettings`).
- ``learned``: a small network that predicts a colour transform (:class:`LearnedHarmonizer`; the
  network in ``network`` and ``transform``, its weights in ``weights``, its training in ``training``).

Either may be followed by the artist's trims on the person (:class:`PersonTrims`, ``trims``).
"""

from .learned import LearnedHarmonizer
from .methods import METHODS, available_methods, default_method, harmonize_frames, make_harmonizer, resolve_method
from .network import HarmoImConfig, HarmoImNet
from .statistics import StatisticsHarmonizer, StatisticsSettings
from .transform import apply_through_alpha, bounded_maps
from .trims import PersonTrims
from .weights import default_weights_path, load_harmoim, save_harmoim

__all__ = [
    "HarmoImConfig", "HarmoImNet", "LearnedHarmonizer", "METHODS", "PersonTrims", "StatisticsHarmonizer", "StatisticsSettings",
    "apply_through_alpha", "available_methods", "bounded_maps", "default_method", "default_weights_path",
    "harmonize_frames", "load_harmoim", "make_harmonizer", "resolve_method", "save_harmoim",
]

"""The learned HarmoIm: a small network that predicts a colour transform putting a person in the
scene's light (``network``, ``transform``), its weights (``weights``) and its training (``training``)."""

from .network import HarmoImConfig, HarmoImNet
from .transform import apply_through_alpha, bounded_maps
from .weights import default_weights_path, load_harmoim, save_harmoim

__all__ = [
    "HarmoImConfig", "HarmoImNet", "apply_through_alpha", "bounded_maps", "default_weights_path",
    "load_harmoim", "save_harmoim",
]

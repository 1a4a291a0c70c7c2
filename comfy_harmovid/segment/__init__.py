"""Portrait masks: the built-in segmenter (no download), a chroma keyer, and SAM 2 (checkpoint).

SAM 2 needs the optional ``sam2`` package; it is imported only when a SAM 2 function is called.
"""

from .portrait import PortraitSegmenter, segment_portrait
from .sam2_model import config_for_checkpoint, load_sam2
from .sam2_video import segment_with_sam2

__all__ = ["PortraitSegmenter", "segment_portrait", "segment_with_sam2", "load_sam2", "config_for_checkpoint"]

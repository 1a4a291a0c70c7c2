"""Portrait masks: the built-in segmenter (no download), a chroma keyer, and SAM 2 (checkpoint)."""

from .portrait import PortraitSegmenter, segment_portrait

__all__ = ["PortraitSegmenter", "segment_portrait"]

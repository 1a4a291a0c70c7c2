"""MediaPipe's selfie-segmentation network, shipped inside the mediapipe wheel (no download)."""

import sys

import numpy as np

from ..errors import HarmoVidError

# model_selection of mediapipe's SelfieSegmentation: the general model sees a 256x256 square,
# the landscape one a 144x256 (h x w) image.
MODELS = {"general": 0, "landscape": 1}

INSTALL_HINT = (
    "The built-in portrait segmenter needs MediaPipe 0.10.14. Install it with "
    "`pip install --no-deps mediapipe==0.10.14` and its runtime dependencies "
    "`pip install absl-py flatbuffers \"protobuf>=4.25.3,<5\" attrs matplotlib` (no-deps keeps it from replacing "
    "your OpenCV and numpy), or use a SAM 2 checkpoint instead."
)


def require_mediapipe() -> None:
    """Fail early, with the install command, when mediapipe is missing."""
    _import_selfie_segmentation()


def _import_selfie_segmentation():
    try:
        from mediapipe.python.solutions import selfie_segmentation
    except Exception as error:  # ImportError, or NameError/AttributeError from a half-imported package
        # A failed import leaves half-initialised mediapipe modules behind; drop them so the next
        # attempt (e.g. after the user installs the missing dependency) starts clean.
        for name in [name for name in sys.modules if name == "mediapipe" or name.startswith("mediapipe.")]:
            del sys.modules[name]
        raise HarmoVidError(f"{INSTALL_HINT} (import failed: {error})") from error
    return selfie_segmentation


class SelfieModel:
    """Foreground probability of one RGB frame: ``predict(uint8 [H, W, 3]) -> float32 [H, W]``."""

    def __init__(self, model: str = "general"):
        self.check_name(model)
        self._graph = _import_selfie_segmentation().SelfieSegmentation(model_selection=MODELS[model])

    @staticmethod
    def check_name(model: str) -> None:
        if model not in MODELS:
            raise HarmoVidError(
                f"Unknown built-in segmenter model {model!r}; use one of: auto, {', '.join(MODELS)}."
            )

    def predict(self, frame: np.ndarray) -> np.ndarray:
        result = self._graph.process(np.ascontiguousarray(frame))
        return np.asarray(result.segmentation_mask, dtype=np.float32)

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: mediapipe may already be gone
            pass

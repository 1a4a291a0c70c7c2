"""MediaPipe's selfie-segmentation network and face mesh, shipped inside the mediapipe wheel (no download)."""

import importlib
import sys
import warnings
from typing import Optional

import numpy as np

from ..errors import HarmoVidError

# model_selection of mediapipe's SelfieSegmentation: the general model sees a 256x256 square,
# the landscape one a 144x256 (h x w) image.
MODELS = {"general": 0, "landscape": 1}

INSTALL_HINT = (
    "MediaPipe 0.10.14 is missing: the built-in portrait segmenter and the learned HarmoIm's skin balance use "
    "it. Install it with `pip install --no-deps mediapipe==0.10.14` and its runtime dependencies "
    "`pip install absl-py flatbuffers \"protobuf>=4.25.3,<5\" attrs matplotlib` (no-deps keeps it from replacing "
    "your OpenCV and numpy); for masks, a SAM 2 checkpoint works without it."
)


class MediaPipeMissing(HarmoVidError):
    """MediaPipe cannot be imported (the message says how to install it)."""


def require_mediapipe() -> None:
    """Fail early, with the install command, when mediapipe is missing."""
    _import_solution("selfie_segmentation")


def _import_solution(name: str):
    """``mediapipe.python.solutions.<name>``, or one clear error with the install command."""
    loaded = set(sys.modules)
    try:
        solutions = importlib.import_module("mediapipe.python.solutions")  # the package first: a stand-in
        return importlib.import_module(f"{solutions.__name__}.{name}")      # for it in sys.modules counts
    except Exception as error:  # ImportError, or NameError/AttributeError from a half-imported package
        # A failed import leaves half-initialised mediapipe modules behind; drop the ones this attempt
        # added, so the next attempt (e.g. after the user installs the missing dependency) starts clean.
        for module in set(sys.modules) - loaded:
            if module == "mediapipe" or module.startswith("mediapipe."):
                del sys.modules[module]
        raise MediaPipeMissing(f"{INSTALL_HINT} (import failed: {error})") from error


class _Graph:
    """A MediaPipe solution's graph (``self._graph``), closed once."""

    _graph = None

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: mediapipe may already be gone
            pass


class SelfieModel(_Graph):
    """Foreground probability of one RGB frame: ``predict(uint8 [H, W, 3]) -> float32 [H, W]``."""

    def __init__(self, model: str = "general"):
        self.check_name(model)
        self._graph = _import_solution("selfie_segmentation").SelfieSegmentation(model_selection=MODELS[model])

    @staticmethod
    def check_name(model: str) -> None:
        if model not in MODELS:
            raise HarmoVidError(
                f"Unknown built-in segmenter model {model!r}; use one of: auto, {', '.join(MODELS)}."
            )

    def predict(self, frame: np.ndarray) -> np.ndarray:
        result = self._graph.process(np.ascontiguousarray(frame))
        return np.asarray(result.segmentation_mask, dtype=np.float32)


class FaceMeshModel(_Graph):
    """The 468 face landmarks of the most prominent face in RGB frames given in order:
    ``landmarks(uint8 [H, W, 3]) -> float32 [468, 2]`` (x, y as fractions of the width and height), or
    None when there is no face. After a face is found it is tracked from frame to frame (cheaper than a
    new search, which happens again when the track is lost)."""

    def __init__(self):
        self._graph = _import_solution("face_mesh").FaceMesh(static_image_mode=False, max_num_faces=1)

    def landmarks(self, frame: np.ndarray) -> Optional[np.ndarray]:
        with warnings.catch_warnings():  # mediapipe's own use of a deprecated protobuf call, on every frame
            warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)
            result = self._graph.process(np.ascontiguousarray(frame))
        if not result.multi_face_landmarks:
            return None
        return np.array([(point.x, point.y) for point in result.multi_face_landmarks[0].landmark], np.float32)

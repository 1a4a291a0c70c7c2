"""Load a SAM 2 video predictor from a safetensors checkpoint (never pickle).

Checkpoints are the model's state dict saved as safetensors, the layout ComfyUI's SAM 2 packs use
(e.g. ``sam2_hiera_tiny.safetensors``, ``sam2.1_hiera_base_plus.safetensors``; fp16/bf16 files are
upcast). The architecture comes from the ``sam2`` package's own configs, picked from the file name
(``sam2`` vs ``sam2.1``, and tiny / small / base_plus / large), or from a ``.yaml`` file of the same
name next to the checkpoint (fine-tuned or custom models), or given explicitly as a config name or a
path to a ``.yaml`` file with a top-level ``model:`` entry.
"""

import os
import re
from pathlib import Path
from typing import Optional, Union

import torch

from ..errors import HarmoVidError

SIZES = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
EXPECTED_FILES = (
    "sam2_hiera_{tiny,small,base_plus,large}.safetensors or sam2.1_hiera_{tiny,small,base_plus,large}.safetensors"
)
INSTALL_HINT = (
    "SAM 2 masks need the sam2 package: `pip install --no-deps sam2==1.1.0` and "
    "`pip install hydra-core iopath` (torchvision is not needed)."
)
# Settings the official video-predictor builder applies on top of the config, except the hole
# filling, which needs sam2's compiled CUDA extension.
VIDEO_PREDICTOR_SETTINGS = {
    "_target_": "sam2.sam2_video_predictor.SAM2VideoPredictor",
    "sam_mask_decoder_extra_args": {
        "dynamic_multimask_via_stability": True,
        "dynamic_multimask_stability_delta": 0.05,
        "dynamic_multimask_stability_thresh": 0.98,
    },
    "binarize_mask_from_pts_for_mem_enc": True,
    "fill_hole_area": 0,
}


def _sam2_package():
    try:
        import sam2
        from hydra.utils import instantiate
        from omegaconf import OmegaConf
    except ImportError as error:
        raise HarmoVidError(f"{INSTALL_HINT} (import failed: {error})") from error
    return Path(sam2.__file__).parent, instantiate, OmegaConf


def _folder_hint(path: Path) -> str:
    return f"Put {EXPECTED_FILES} in {path.parent} (ComfyUI's models/sam2 folder)"


def config_for_checkpoint(checkpoint: Union[str, Path]) -> str:
    """The config name (e.g. ``"sam2.1_hiera_t"``) that matches a checkpoint's file name."""
    name = Path(checkpoint).name.lower()
    version = "sam2.1" if re.search(r"sam2[._]1", name) else "sam2"
    for size, letter in SIZES.items():
        if size in name or (size == "base_plus" and re.search(r"base|b\+", name)):
            return f"{version}_hiera_{letter}"
    raise HarmoVidError(
        f"Cannot tell the SAM 2 model size from the file name '{Path(checkpoint).name}'. Rename it to one of "
        f"{EXPECTED_FILES}, or pass the config explicitly (e.g. 'sam2.1_hiera_t', or a .yaml path)."
    )


def _config_path(config: str, package_dir: Path) -> Path:
    """A config name ("sam2.1_hiera_t", "sam2.1_hiera_tiny", "configs/sam2.1/sam2.1_hiera_t.yaml") or a yaml path."""
    path = Path(config)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    stem = path.name.removesuffix(".yaml")
    for size, letter in SIZES.items():
        stem = re.sub(rf"_{size}$", f"_{letter}", stem)
    version = "sam2.1" if stem.startswith("sam2.1") else "sam2"
    candidate = package_dir / "configs" / version / f"{stem}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in (package_dir / "configs").glob("sam2*/*.yaml"))
    raise HarmoVidError(f"Unknown SAM 2 config '{config}'. Use one of {', '.join(known)}, or a path to a .yaml file.")


def build_sam2_model(config: str):
    """An untrained SAM 2 video predictor for ``config`` (weights are random until loaded)."""
    package_dir, instantiate, OmegaConf = _sam2_package()
    cfg = OmegaConf.load(_config_path(config, package_dir))
    if "model" not in cfg:
        raise HarmoVidError(f"SAM 2 config '{config}' has no top-level 'model:' entry.")
    cfg.model = OmegaConf.merge(cfg.model, VIDEO_PREDICTOR_SETTINGS)
    OmegaConf.resolve(cfg)
    return instantiate(cfg.model, _recursive_=True)


def _read_state_dict(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise HarmoVidError(
            f"SAM 2 checkpoint {path} is not a readable safetensors file ({error}). Re-download it. "
            f"{_folder_hint(path)}."
        ) from None
    model_keys = [k for k in state if not k.startswith("model.")]
    if not model_keys and state:  # saved from a wrapper: drop the prefix
        state = {k.removeprefix("model."): v for k, v in state.items()}
    return state


def _check_state_dict(state: dict, model, path: Path, config: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if not (missing or unexpected or wrong_shape):
        return
    details = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            details.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
    raise HarmoVidError(
        f"SAM 2 checkpoint {path.name} does not match config '{config}': {'; '.join(details)}. "
        "The file name must say the version and size (sam2 vs sam2.1; tiny, small, base_plus, large), or pass "
        f"the right config. {_folder_hint(path)}."
    )


_CACHE: dict = {}


def load_sam2(checkpoint: Union[str, Path], *, config: Optional[str] = None, device=None):
    """A SAM 2 video predictor (``sam2.sam2_video_predictor.SAM2VideoPredictor``) in eval mode.

    ``checkpoint`` is a ``.safetensors`` file holding the model's state dict. ``config`` defaults to
    a ``.yaml`` of the same name beside the file, else the one its name says. The last model loaded
    is kept, so loading it again is free.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise HarmoVidError(f"SAM 2 checkpoint {path} not found. {_folder_hint(path)}.")
    if path.suffix != ".safetensors":
        raise HarmoVidError(
            f"SAM 2 checkpoint {path.name} is not a .safetensors file; pickled checkpoints are not loaded for "
            f"safety. Convert an official .pt file with `harmovid convert-sam2 {path.name} "
            f"{path.stem}.safetensors`. {_folder_hint(path)}."
        )
    if config is None:
        sidecar = path.with_suffix(".yaml")
        config = str(sidecar) if sidecar.is_file() else config_for_checkpoint(path)
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (str(path.resolve()), os.path.getmtime(path), config, str(device))
    if key in _CACHE:
        return _CACHE[key]
    model = build_sam2_model(config)
    state = _read_state_dict(path)
    _check_state_dict(state, model, path, config)
    dtype = next(model.parameters()).dtype
    model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()})
    model = model.to(device).eval()
    _CACHE.clear()
    _CACHE[key] = model
    return model


def convert_sam2_checkpoint(source: Union[str, Path], target: Union[str, Path], *, overwrite: bool = False) -> Path:
    """Convert an official SAM 2 ``.pt`` checkpoint to the ``.safetensors`` file ``load_sam2`` reads.

    The pickle is opened with ``torch.load(weights_only=True)``, which refuses anything but tensors
    and plain containers. Returns the written path.
    """
    from ..weights_files import save_safetensors

    source, target = Path(source), Path(target)
    if not source.is_file():
        raise HarmoVidError(f"{source} not found; give the path of an official SAM 2 .pt checkpoint.")
    if target.suffix != ".safetensors":
        raise HarmoVidError(f"The output must end in .safetensors, got {target.name}.")
    if target.exists() and not overwrite:
        raise HarmoVidError(f"{target} already exists; choose another name or allow overwriting.")
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged or unsafe pickles
        raise HarmoVidError(f"Cannot read {source} as a SAM 2 checkpoint ({error}).") from None
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HarmoVidError(f"{source} holds no SAM 2 state dict (expected a dict of tensors under 'model').")
    return save_safetensors({k: v.contiguous() for k, v in state.items()}, target)

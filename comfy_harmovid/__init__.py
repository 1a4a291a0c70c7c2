"""comfy-harmovid: relightful video portrait harmonization (HarmoVid, Yoon et al. 2026).

The engine is plain torch/numpy and never imports ComfyUI. Frames are ``[T, H, W, 3]`` float32
in 0..1, masks and alphas ``[T, H, W]`` float in 0..1 with 1 = foreground.
"""

__version__ = "0.1.0"

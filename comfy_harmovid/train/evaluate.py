"""Score trained HarmoVid checkpoints on held-out LUT pairs (the paper's evaluation recipe) by fPSNR.

Each held-out portrait clip is recoloured by each held-out LUT through its soft alpha (the bench's
``lut_cases``); a model gets the composite, the person-removed plate of the composite as background
and the alpha, runs through the normal path (``encode_condition`` -> ``sample`` -> ``vae.decode``) and
must restore the original clip. Beside the models: doing nothing, the built-in HarmoIm, and the VAE
round trip of the original (the best any model behind this VAE can score).
"""

from typing import Callable, Dict, Optional, Sequence

import torch

from .. import metrics
from ..bench.data import load_portraits, resolve_paths
from ..bench.harmonize import lut_cases
from ..color import read_cube
from ..harmonize import harmonize_frames
from ..model import load_transformer, load_vae
from ..sampling import encode_condition, sample
from .data import remove_person


def harmovid_method(transformer, vae, *, steps: int, guidance: float, seed: int) -> Callable:
    def run(case):
        background = remove_person(case.input, case.mask)
        condition = encode_condition(vae, case.input, background, case.alpha)
        latent = sample(transformer, condition, seed=seed, steps=steps, guidance=guidance)
        return vae.decode(latent, condition.frame_count, condition.height, condition.width).clamp(0, 1)

    return run


def evaluate_lut_pairs(models: Dict[str, str], vae_path: str, clips: Sequence[str], luts: Sequence[str], *,
                       frames: int = 9, size: int = 64, steps: int = 20, guidance: float = 1.0, seed: int = 0,
                       progress: Optional[Callable] = None) -> dict:
    """``{"cases": [...], "fpsnr": {method: {case: dB}}, "mean": {method: dB}}`` for every method."""
    vae = load_vae(vae_path)
    portraits = load_portraits(resolve_paths(clips, "", "clips"), frames, size)
    cases = []
    for lut_path in resolve_paths(luts, "", "luts"):
        for case in lut_cases(portraits, [(lut_path.stem, read_cube(lut_path))], seed):
            case.name = f"{case.name}/{lut_path.stem}"
            cases.append(case)
    methods = {
        "input (do nothing)": lambda case: case.input,
        "built-in HarmoIm": lambda case: harmonize_frames(case.input, case.alpha),
        "VAE round trip of the original": lambda case: vae.decode(vae.encode(case.reference), case.reference.shape[0],
                                                                   *case.reference.shape[1:3]).clamp(0, 1),
    }
    for name, path in models.items():
        methods[name] = harmovid_method(load_transformer(path), vae, steps=steps, guidance=guidance, seed=seed)
    scores = {name: {} for name in methods}
    with torch.no_grad():
        for index, case in enumerate(cases):
            for name, run in methods.items():
                scores[name][case.name] = metrics.fpsnr(run(case), case.reference, case.mask)
            if progress is not None:
                progress(index + 1, len(cases))
    mean = {name: sum(values.values()) / len(values) for name, values in scores.items()}
    return {"cases": [case.name for case in cases], "fpsnr": scores, "mean": mean,
            "settings": dict(frames=frames, size=size, steps=steps, guidance=guidance, seed=seed)}

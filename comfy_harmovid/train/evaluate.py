"""Score trained HarmoVid checkpoints on held-out LUT pairs (the paper's evaluation recipe) by fPSNR.

Each held-out portrait clip is recoloured by each held-out LUT through its soft alpha
(``evaluation.cases.lut_cases``); a model gets the composite, the person-removed plate of the composite
as background and the alpha, runs through the normal path (``encode_condition`` -> ``sample`` ->
``vae.decode``) and must restore the original clip. Beside the models: doing nothing, the built-in HarmoIm, and the VAE
round trip of the original (the best a model's decoded frames can score behind this VAE). Each model
is scored twice: its decoded frames, and with detail transfer (its light change put back on the
composite, ``sampling.transfer_light``), which the VAE's round trip does not cap.
"""

from typing import Callable, Dict, Optional, Sequence

import torch

from ..color import read_cube
from ..evaluation import metrics
from ..evaluation.cases import lut_cases
from ..evaluation.dev_data import load_portraits, resolve_paths
from ..harmoim import harmonize_frames
from ..model import load_transformer, load_vae
from ..sampling import encode_condition, sample, transfer_light
from .data import remove_person


DETAIL_SUFFIX = " + detail transfer"


def harmovid_method(transformer, vae, *, steps: int, guidance: float, seed: int, detail_radius: float) -> Callable:
    """A case -> ``{"": decoded frames, DETAIL_SUFFIX: with detail transfer}`` runner (one sampling for both)."""

    def run(case):
        background = remove_person(case.input, case.mask)
        condition = encode_condition(vae, case.input, background, case.alpha)
        latent = sample(transformer, condition, seed=seed, steps=steps, guidance=guidance)
        size = (condition.frame_count, condition.height, condition.width)
        decoded = vae.decode(latent, *size).clamp(0, 1)
        reconstruction = vae.decode(condition.composite_latent, *size)
        return {"": decoded, DETAIL_SUFFIX: transfer_light(decoded, reconstruction, case.input, radius=detail_radius)}

    return run


def evaluate_lut_pairs(models: Dict[str, str], vae_path: str, clips: Sequence[str], luts: Sequence[str], *,
                       frames: int = 9, size: int = 64, steps: int = 20, guidance: float = 1.0, seed: int = 0,
                       detail_radius: float = 4.0, progress: Optional[Callable] = None) -> dict:
    """``{"cases": [...], "fpsnr": {method: {case: dB}}, "mean": {method: dB}}`` for every method (each model
    twice: ``name`` and ``name + detail transfer``)."""
    vae = load_vae(vae_path)
    portraits = load_portraits(resolve_paths(clips, "", "clips"), frames, size)
    cases = []
    for lut_path in resolve_paths(luts, "", "luts"):
        for case in lut_cases(portraits, [(lut_path.stem, read_cube(lut_path))], seed):
            case.name = f"{case.name}/{lut_path.stem}"
            cases.append(case)
    methods = {
        "input (do nothing)": lambda case: case.input,
        "built-in HarmoIm (statistics)": lambda case: harmonize_frames(case.input, case.alpha),
        "VAE round trip of the original": lambda case: vae.decode(vae.encode(case.reference), case.reference.shape[0],
                                                                   *case.reference.shape[1:3]).clamp(0, 1),
    }
    for name, path in models.items():
        methods[name] = harmovid_method(load_transformer(path), vae, steps=steps, guidance=guidance, seed=seed,
                                        detail_radius=detail_radius)
    scores = {}
    with torch.no_grad():
        for index, case in enumerate(cases):
            for name, run in methods.items():
                outputs = run(case)
                if not isinstance(outputs, dict):
                    outputs = {"": outputs}
                for suffix, output in outputs.items():
                    fpsnr = metrics.fpsnr(output, case.reference, case.mask)
                    scores.setdefault(name + suffix, {})[case.name] = fpsnr
            if progress is not None:
                progress(index + 1, len(cases))
    mean = {name: sum(values.values()) / len(values) for name, values in scores.items()}
    return {"cases": [case.name for case in cases], "fpsnr": scores, "mean": mean,
            "settings": dict(frames=frames, size=size, steps=steps, guidance=guidance, seed=seed,
                             detail_radius=detail_radius)}

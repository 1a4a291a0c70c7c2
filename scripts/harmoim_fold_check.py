#!/usr/bin/env python
"""Development checks of the learned HarmoIm on two folds of its TRAINING split only
(models/harmoim/harmoim-v3-manifest.yaml); the held-out people and LUTs are never touched.

Fold A trains on every other training clip and every other LUT, fold B on the rest; the 17 stills are in
both. A fold's networks are scored on the other clips x the other LUTs (12 frames at 256 px, binary
mask), alone and with the two inference rules. Results are in docs/training.md, section 5.

    python scripts/harmoim_fold_check.py prepare WORKDIR          # fold manifests
    # Settings under test: any network trained on a fold's manifest, named WORKDIR/{A,B}_NAME.safetensors
    harmovid train harmoim --manifest WORKDIR/A_all.yaml --config my-settings.yaml --steps 2000 --threads 1 \
        -o WORKDIR/A_mine.safetensors                              # and the same for B
    python scripts/harmoim_fold_check.py networks WORKDIR A mine   # then B; several names may follow

    # Does the network under-correct? Its maps amplified, or applied twice (seventh check)
    python scripts/harmoim_fold_check.py amplify WORKDIR A mine
    # How should the change be sized by its clarity (transform.clarity_factors)? A grid of its two settings
    python scripts/harmoim_fold_check.py clarity WORKDIR A mine [--graded-scenes]
    # How far may the person's brightness move, with clarity sizing on (twelfth check)?
    python scripts/harmoim_fold_check.py limits WORKDIR A mine [--graded-scenes]
    # How far the training people sit from their own scene's brightness and cast (no network involved)
    python scripts/harmoim_fold_check.py people
    # Single colourist operations on the person (exposure, white balance, tint, saturation), look by look
    python scripts/harmoim_fold_check.py looks WORKDIR A mine
    # The skin balance after the network (fourteenth check), with the fold's own prior of natural skin
    python scripts/make_skin_prior.py --manifest WORKDIR/A_all.yaml -o WORKDIR/A_skin-prior.json
    python scripts/harmoim_fold_check.py skin WORKDIR A mine
    # How much the skin could give at most: gains that take it to its true colour (sixteenth check)
    python scripts/harmoim_fold_check.py ceiling WORKDIR A mine
    # A brightness balance from three numbers fitted on the fold's training data (seventeenth check)
    python scripts/harmoim_fold_check.py brightness WORKDIR A mine [--graded-scenes]
    # People put into graded scenes: the scene has one fold LUT, the person the next; the truth is the
    # person in the scene's look (a network must read the scene, not make people look ungraded)
    python scripts/harmoim_fold_check.py networks WORKDIR A mine --graded-scenes

    # Would three person-bagged networks, averaged (and held back where they disagree), beat one?
    harmovid train harmoim --manifest WORKDIR/A_m0.yaml --steps 2000 --threads 1 -o WORKDIR/A_m0.safetensors
    ... the same for A_m1, A_m2, B_m0, B_m1, B_m2
    python scripts/harmoim_fold_check.py ensemble WORKDIR A       # then B
"""

import functools
import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from comfy_harmovid.color import apply_lut, read_cube, srgb_to_linear
from comfy_harmovid.evaluation.cases import composite
from comfy_harmovid.evaluation.dev_data import load_clip, load_portraits
from comfy_harmovid.harmoim.grades import linear_gains, scale_saturation, white_balance_gains
from comfy_harmovid.harmoim.learned import network_view, restrain
from comfy_harmovid.harmoim.skin import SkinBalance, SkinPrior, SkinSettings, fold_gains, skin_in_view
from comfy_harmovid.harmoim.transform import LUMA, apply_maps, band_weights
from comfy_harmovid.harmoim.weights import load_harmoim
from comfy_harmovid.segment import segment_portrait
from comfy_harmovid.segment.mediapipe_model import FaceMeshModel

ROOT = Path(__file__).resolve().parents[1]
MEMBERS, FRAMES, SIZE, INPUT_SIZE = 3, 12, 256, 96
DISAGREEMENT_SCALES = (0.02, 0.04, 0.08)  # RMS spread of the members' outputs (0..1) that halves the change
AMPLIFICATIONS = (1.25, 1.5, 2.0)  # factors on the network's change from the identity (``amplify``)
CLARITY_NOISES = (0.005, 0.008, 0.01, 0.012)  # ``clarity``: the change (RMS, 0..1) kept by half
CLARITY_GAINS = (1.0, 1.25, 1.5)  # ``clarity``: the most a clear change grows
# The exposure limit of every check up to the eleventh (``networks``, ``amplify``, ``clarity`` keep it, so
# that their figures in docs/training.md stay reproducible); ``limits`` tries the others.
EARLIER_EXPOSURE_LIMIT = 0.05
EXPOSURE_LIMITS = (0.05, 0.065, 0.08, 0.1)
BRIGHTNESS_SHARES = (1.0, 0.5)  # ``brightness``: share of the way to the regression's brightness
SKIN_SETTINGS = ((0.5, 1.0), (0.75, 1.0), (1.0, 1.0), (0.75, 0.0), (0.75, 2.0))  # ``skin``: (shrink, dead zone)


def prepare(workdir: Path) -> None:
    manifest_dir = ROOT / "models" / "harmoim"
    manifest = yaml.safe_load((manifest_dir / "harmoim-v3-manifest.yaml").read_text())
    clips = [str((manifest_dir / c).resolve()) for c in manifest["clips"]]
    luts = [str((manifest_dir / c).resolve()) for c in manifest["luts"]]
    videos, stills = [c for c in clips if c.endswith(".mp4")], [c for c in clips if not c.endswith(".mp4")]
    workdir.mkdir(parents=True, exist_ok=True)
    for fold, parity in (("A", 0), ("B", 1)):
        sources = [v for i, v in enumerate(videos) if i % 2 == parity] + stills
        train_luts = [c for i, c in enumerate(luts) if i % 2 == parity]
        for member in range(MEMBERS):
            bag = [s for i, s in enumerate(sources) if i % MEMBERS != member]
            (workdir / f"{fold}_m{member}.yaml").write_text(yaml.safe_dump({"clips": bag, "luts": train_luts}))
        (workdir / f"{fold}_all.yaml").write_text(yaml.safe_dump({"clips": sources, "luts": train_luts}))
        scored = {"clips": [v for i, v in enumerate(videos) if i % 2 != parity],
                  "luts": [c for i, c in enumerate(luts) if i % 2 != parity]}
        (workdir / f"{fold}_eval.yaml").write_text(yaml.safe_dump(scored))


def _identity(frames: int) -> torch.Tensor:
    return torch.cat([torch.eye(3), torch.zeros(1, 3)]).expand(frames, 5, 4, 3)


def _with_rules(maps, pixels, weights):  # the two restraints, as every check before the eleventh had them
    return restrain(maps, pixels, weights, clarity=False, max_exposure_change=EARLIER_EXPOSURE_LIMIT)


def _linear_gains(gains: torch.Tensor):
    return functools.partial(linear_gains, gains=gains)


def _saturation(amount: float):
    return lambda frames: scale_saturation(frames, amount).clamp(0.0, 1.0)


def basic_looks():
    """Single colourist operations, each strong enough to need undoing: ``[(name, grade of [T, H, W, 3])]``."""
    night = _linear_gains(0.35 * white_balance_gains(3600.0))
    return [
        ("exposure -1 stop", _linear_gains(torch.full((3,), 0.5))),
        ("exposure +1 stop", _linear_gains(torch.full((3,), 2.0))),
        ("white balance 3200 K", _linear_gains(white_balance_gains(3200.0))),
        ("white balance 4000 K", _linear_gains(white_balance_gains(4000.0))),
        ("white balance 9000 K", _linear_gains(white_balance_gains(9000.0))),
        ("tint +0.15 (green)", _linear_gains(white_balance_gains(6500.0, 0.15))),
        ("tint -0.15 (magenta)", _linear_gains(white_balance_gains(6500.0, -0.15))),
        ("saturation 0.5", _saturation(0.5)),
        ("saturation 1.5", _saturation(1.5)),
        ("night: -1.5 stops, 3600 K, saturation 0.6", lambda frames: _saturation(0.6)(night(frames))),
    ]


def fold_luts(workdir: Path, fold: str):
    """The LUTs ``fold`` is scored on, as looks: ``[(name, grade of [T, H, W, 3])]``."""
    scored = yaml.safe_load((workdir / f"{fold}_eval.yaml").read_text())
    return [(Path(c).stem, functools.partial(apply_lut, lut=read_cube(c))) for c in scored["luts"]]


def score(workdir: Path, fold: str, variants, label: str, graded_scenes: bool = False, looks=None,
          with_truth: bool = False, with_frames: bool = False) -> list:
    """Score every held-back person x look of ``fold`` (``looks``: its LUTs unless given, see ``fold_luts``):
    ``variants(small, small_alpha, pixels, weights)`` gives ``{name: maps}`` (``with_truth``: the truth's
    colours in the same view follow, ``[T, N, 3]``; ``with_frames``: then the graded frames, ``[T, H, W, 3]``);
    prints mean gain, shares below -0.5 and -2 dB and the worst case per name, and returns the rows.

    ``graded_scenes``: the whole frame first gets the fold's next look (the scene's), which is then
    the truth for the person too."""
    torch.set_num_threads(1)
    scored = yaml.safe_load((workdir / f"{fold}_eval.yaml").read_text())
    portraits = load_portraits([Path(c) for c in scored["clips"]], FRAMES, SIZE)
    looks = looks or fold_luts(workdir, fold)
    rows = []
    with torch.inference_mode():
        for person in portraits:
            for number, (look_name, look) in enumerate(looks):
                truth, case = person.frames, f"{person.name}/{look_name}"
                if graded_scenes:
                    scene_name, scene_look = looks[(number + 1) % len(looks)]
                    truth, case = scene_look(person.frames), f"{case} in {scene_name}"
                graded = composite(look(person.frames), truth, person.mask)
                picked = [(graded[t][person.mask[t] > 0.5][None], truth[t][person.mask[t] > 0.5][None])
                          for t in range(FRAMES)]

                def fpsnr(maps):  # the person's pixels only: the method changes nothing else
                    mse = torch.stack([((apply_maps(x, maps[t : t + 1]).clamp(0, 1) - y) ** 2).mean()
                                       for t, (x, y) in enumerate(picked)])
                    return 10 * float(torch.log10(1 / mse.double().mean()))

                small, small_alpha = (torch.from_numpy(x) for x in network_view(
                    graded.numpy(), person.mask.numpy(), INPUT_SIZE))  # what LearnedHarmonizer feeds it
                pixels, weights = small.flatten(1, 2), small_alpha.flatten(1)
                small, small_alpha = small.permute(0, 3, 1, 2), small_alpha[:, None]
                row = {"case": case, "identity": fpsnr(_identity(FRAMES))}
                extra = ()
                if with_truth:  # the truth's colours in the network's view
                    view = network_view(truth.numpy(), person.mask.numpy(), INPUT_SIZE)[0]
                    extra = (torch.from_numpy(view).flatten(1, 2),)
                if with_frames:
                    extra += (graded,)
                for name, maps in variants(small, small_alpha, pixels, weights, *extra).items():
                    row[name] = fpsnr(maps)
                rows.append(row)
    label += "_graded_scenes" if graded_scenes else ""
    (workdir / f"scores_{fold}_{label}.json").write_text(json.dumps(rows, indent=1))
    print(f"{'variant':34s} mean gain  <-0.5 dB  <-2 dB  worst   ({len(rows)} cases)")
    for name in [k for k in rows[0] if k not in ("case", "identity")]:
        gain = np.array([r[name] - r["identity"] for r in rows])
        print(f"{name:34s} {gain.mean():+8.2f} {np.mean(gain < -0.5):8.0%} {np.mean(gain < -2):7.0%} {gain.min():+6.2f}")
    return rows


def networks(workdir: Path, fold: str, names, graded_scenes: bool = False) -> None:
    """Each network ``{fold}_{name}`` alone and with the inference rules."""
    nets = {name: load_harmoim(workdir / f"{fold}_{name}.safetensors") for name in names}

    def variants(small, small_alpha, pixels, weights):
        out = {}
        for name, net in nets.items():
            maps = net.predict_maps(small, small_alpha)
            out[f"{name} alone"], out[f"{name} + rules"] = maps, _with_rules(maps, pixels, weights)
        return out

    score(workdir, fold, variants, "_".join(names), graded_scenes)


def fitted_maps(pixels: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, bands: int = 5) -> torch.Tensor:
    """Per image, the banded map ``[B, K, 4, 3]`` that takes ``pixels`` ``[B, N, 3]`` closest to ``target`` over
    the person (``weights`` > 0.5), by least squares held slightly toward the identity (so that a band
    with no pixels stays the identity)."""
    identity = _identity(1)[0].double().reshape(bands * 4, 3)
    maps = []
    for colours, wanted, weight in zip(pixels.double(), target.double(), weights):
        person = weight > 0.5
        colours, wanted = colours[person], wanted[person]
        band = band_weights(colours @ LUMA.double(), bands)  # [N, K]
        features = (band[:, :, None] * torch.cat([colours, torch.ones_like(colours[:, :1])], 1)[:, None]).flatten(1)
        normal = features.T @ features + 1e-3 * torch.eye(bands * 4, dtype=torch.float64)
        maps.append(torch.linalg.solve(normal, features.T @ wanted + 1e-3 * identity).view(bands, 4, 3).float())
    return torch.stack(maps)


def amplify(workdir: Path, fold: str, name: str) -> None:
    """Does the network under-correct? Its change amplified before the rules, and the network applied a
    second time to its own output (the two passes fitted as one map, then the rules)."""
    net = load_harmoim(workdir / f"{fold}_{name}.safetensors")

    def variants(small, small_alpha, pixels, weights):
        maps = net.predict_maps(small, small_alpha)
        identity = _identity(maps.shape[0])
        out = {f"{name} + rules": _with_rules(maps, pixels, weights)}
        for factor in AMPLIFICATIONS:
            out[f"change x{factor} + rules"] = _with_rules(identity + factor * (maps - identity), pixels, weights)
        once = apply_maps(pixels, maps).clamp(0, 1)
        again = net.predict_maps(once.view(small.permute(0, 2, 3, 1).shape).permute(0, 3, 1, 2), small_alpha)
        twice = fitted_maps(pixels, apply_maps(once, again).clamp(0, 1), weights)
        out["two passes as one map + rules"] = _with_rules(twice, pixels, weights)
        return out

    score(workdir, fold, variants, f"amplify_{name}")


def clarity(workdir: Path, fold: str, name: str, graded_scenes: bool = False) -> None:
    """The network with the rules, then its change sized by its clarity, for each pair of settings (as
    ``LearnedHarmonizer`` does with the shipped pair)."""
    net = load_harmoim(workdir / f"{fold}_{name}.safetensors")

    def variants(small, small_alpha, pixels, weights):
        maps = net.predict_maps(small, small_alpha)
        out = {f"{name} + rules": _with_rules(maps, pixels, weights)}
        for noise in CLARITY_NOISES:
            for gain in CLARITY_GAINS:
                out[f"clarity: noise {noise}, gain {gain}"] = restrain(
                    maps, pixels, weights, noise=noise, gain=gain, max_exposure_change=EARLIER_EXPOSURE_LIMIT)
        return out

    score(workdir, fold, variants, f"clarity_{name}", graded_scenes)


def limits(workdir: Path, fold: str, name: str, graded_scenes: bool = False) -> None:
    """The network with both rules and clarity sizing (its shipped settings), for each exposure limit."""
    net = load_harmoim(workdir / f"{fold}_{name}.safetensors")

    def variants(small, small_alpha, pixels, weights):
        maps = net.predict_maps(small, small_alpha)
        return {f"exposure limit {limit} + clarity": restrain(maps, pixels, weights, max_exposure_change=limit)
                for limit in EXPOSURE_LIMITS}

    score(workdir, fold, variants, f"limits_{name}", graded_scenes)


def looks(workdir: Path, fold: str, name: str) -> None:
    """The network alone and with its shipped rules on ``basic_looks``: mean gain and worst case per look,
    and the mean gain of the banded map closest to the truth (``fitted_maps``: what the transform allows)."""
    net = load_harmoim(workdir / f"{fold}_{name}.safetensors")

    def variants(small, small_alpha, pixels, weights, truth):
        maps = net.predict_maps(small, small_alpha)
        return {"alone": maps, "shipped rules": restrain(maps, pixels, weights),
                "fitted to the truth": fitted_maps(pixels, truth, weights)}

    operations = basic_looks()
    rows = score(workdir, fold, variants, f"looks_{name}", looks=operations, with_truth=True)
    print(f"\n{'look':44s} {'doing nothing':>13s}  alone  shipped rules  worst  fitted to the truth")
    for look_name, _ in operations:
        picked = [r for r in rows if r["case"].split("/", 1)[1] == look_name]
        gain = {key: np.array([r[key] - r["identity"] for r in picked])
                for key in ("alone", "shipped rules", "fitted to the truth")}
        print(f"{look_name:44s} {np.mean([r['identity'] for r in picked]):10.1f} dB {gain['alone'].mean():+6.2f} "
              f"{gain['shipped rules'].mean():+11.2f}   {gain['shipped rules'].min():+6.2f} "
              f"{gain['fitted to the truth'].mean():+12.2f}")


def skin(workdir: Path, fold: str, name: str) -> None:
    """The skin balance after the network with its shipped rules (fourteenth check), at its shipped
    settings and around them, with the fold's own prior of natural skin (make it first:
    ``python scripts/make_skin_prior.py --manifest WORKDIR/A_all.yaml -o WORKDIR/A_skin-prior.json``)."""
    net = load_harmoim(workdir / f"{fold}_{name}.safetensors")
    prior = SkinPrior.load(workdir / f"{fold}_skin-prior.json")

    def variants(small, small_alpha, pixels, weights, frames):
        maps = restrain(net.predict_maps(small, small_alpha), pixels, weights)
        views, view_alphas = pixels.view(small.permute(0, 2, 3, 1).shape), weights.view(small_alpha[:, 0].shape)
        out = {"shipped rules, no skin balance": maps}
        for shrink, dead_zone in SKIN_SETTINGS:
            balance = SkinBalance(SkinSettings(prior, shrink, dead_zone))
            out[f"skin: shrink {shrink}, dead zone {dead_zone}"] = torch.stack([
                balance.balanced(maps[t], frames[t].numpy(), views[t], view_alphas[t]) for t in range(maps.shape[0])])
        return out

    score(workdir, fold, variants, f"skin_{name}", with_frames=True)


def ceiling(workdir: Path, fold: str, name: str) -> None:
    """How much the skin could give at most (sixteenth check): after the network with its shipped rules, the
    gains that take the face's skin (the skin balance's cheeks and forehead, found on the graded frame) to
    its true median colour, keeping the skin's brightness and not; beside the skin balance at its shipped
    settings (the fold's prior first, as for ``skin``)."""
    net = load_harmoim(workdir / f"{fold}_{name}.safetensors")
    prior = SkinPrior.load(workdir / f"{fold}_skin-prior.json")

    def variants(small, small_alpha, pixels, weights, truth, frames):
        maps = restrain(net.predict_maps(small, small_alpha), pixels, weights)
        views, view_alphas = pixels.view(small.permute(0, 2, 3, 1).shape), weights.view(small_alpha[:, 0].shape)
        truths = truth.view(views.shape)
        balance, faces = SkinBalance(SkinSettings(prior)), FaceMeshModel()
        balanced, chroma, colour = [], [], []
        for t in range(maps.shape[0]):
            frame = frames[t].numpy()
            balanced.append(balance.balanced(maps[t], frame, views[t], view_alphas[t]))
            skin = skin_in_view(faces, frame, view_alphas[t])
            colour_gains = chroma_gains = torch.ones(3)
            if skin is not None:  # linear gains from the mapped skin's median colour to the truth's
                have = srgb_to_linear(apply_maps(views[t][skin][None], maps[t][None])[0].clamp(0, 1)).median(0).values
                colour_gains = srgb_to_linear(truths[t][skin]).median(0).values / have.clamp(min=1e-4)
                chroma_gains = colour_gains * (have @ LUMA) / ((have * colour_gains) @ LUMA)
            chroma.append(fold_gains(maps[t], chroma_gains))
            colour.append(fold_gains(maps[t], colour_gains))
        return {"shipped rules": maps, "+ skin balance": torch.stack(balanced),
                "+ the skin's true chroma": torch.stack(chroma), "+ the skin's true colour": torch.stack(colour)}

    score(workdir, fold, variants, f"ceiling_{name}", with_truth=True, with_frames=True)


def _log_luma(pixels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``[T]``: log2 of the weighted mean linear luma of ``pixels`` ``[T, N, 3]`` (sRGB) per frame."""
    light = srgb_to_linear(pixels.clamp(0, 1)) @ LUMA
    return torch.log2((light * weights).sum(1) / weights.sum(1).clamp(min=1e-6)).clamp(min=-20)


def _person_and_scene(alpha: torch.Tensor):
    """Weights of the person (the alpha) and of the scene (alpha below 0.1) in the network's view."""
    return alpha, (alpha < 0.1).float()


def brightness_regression(workdir: Path, fold: str) -> np.ndarray:
    """``[a, b, c]`` of ``g = a + b o + c s``, least squares over the fold's training people x its training
    LUTs (8 frames at 256 px, the built-in segmenter's mask, the network's view): ``g`` is the look's
    change of the person's brightness, ``o`` the graded person's and ``s`` the scene's (``_log_luma``).
    Every look counts twice: on the ungraded scene, and with the scene under the next LUT, whose person
    is then the truth. Each source weighs the same, a still as much as a clip."""
    manifest = yaml.safe_load((workdir / f"{fold}_all.yaml").read_text())
    luts = [read_cube(c) for c in manifest["luts"]]
    samples, weights = [], []
    for path in manifest["clips"]:
        frames = load_clip(Path(path), 8, 256, min_frames=1)
        mask = (segment_portrait(frames, temporal_smoothing=0.0) > 0.5).float().numpy()

        def view(images):  # [T, N, 3]: the images' colours as the network sees them
            return torch.from_numpy(network_view(images.numpy(), mask, INPUT_SIZE)[0]).flatten(1, 2)

        ungraded, view_alpha = (torch.from_numpy(x).flatten(1, 2) for x in network_view(frames.numpy(), mask, INPUT_SIZE))
        person, scene = _person_and_scene(view_alpha)
        looks = [view(apply_lut(frames, lut)) for lut in luts]
        for number, look in enumerate(looks):
            for truth in (ungraded, looks[(number + 1) % len(looks)]):
                graded = truth + person[..., None] * (look - truth)
                change = _log_luma(look, person) - _log_luma(truth, person)
                for row in zip(_log_luma(graded, person), _log_luma(graded, scene), change):
                    samples.append([float(x) for x in row])
                    weights.append(1.0 / frames.shape[0])
    samples, root_weights = np.array(samples), np.sqrt(np.array(weights))
    design = np.stack([np.ones(len(samples)), samples[:, 0], samples[:, 1]], 1)
    coefficients = np.linalg.lstsq(design * root_weights[:, None], samples[:, 2] * root_weights, rcond=None)[0]
    residual = samples[:, 2] - design @ coefficients
    print(f"fold {fold}: change = {coefficients[0]:+.3f} {coefficients[1]:+.3f} person {coefficients[2]:+.3f} scene "
          f"(stops); the changes spread {samples[:, 2].std():.3f}, what the fit leaves {residual.std():.3f}")
    return coefficients


def brightness(workdir: Path, fold: str, name: str, graded_scenes: bool = False) -> None:
    """A brightness balance after the network with its shipped rules (seventeenth check): the person's
    brightness taken ``BRIGHTNESS_SHARES`` of the way from the maps' to the graded brightness less the
    change ``brightness_regression`` predicts, by a linear gain folded into the maps."""
    a, b, c = brightness_regression(workdir, fold)
    net = load_harmoim(workdir / f"{fold}_{name}.safetensors")

    def variants(small, small_alpha, pixels, weights):
        maps = restrain(net.predict_maps(small, small_alpha), pixels, weights)
        person, scene = _person_and_scene(weights)
        graded = _log_luma(pixels, person)
        wanted = graded - (a + b * graded + c * _log_luma(pixels, scene))
        mapped = _log_luma(apply_maps(pixels, maps).clamp(0, 1), person)
        out = {"shipped rules": maps}
        for share in BRIGHTNESS_SHARES:
            gains = 2.0 ** (share * (wanted - mapped))
            out[f"brightness balance, share {share}"] = torch.stack(
                [fold_gains(maps[t], gains[t].expand(3)) for t in range(maps.shape[0])])
        return out

    score(workdir, fold, variants, f"brightness_{name}", graded_scenes)


def people() -> None:
    """How far each training person sits from their own scene, ungraded: the person's mean brightness over
    the scene's (stops) and their red-blue cast over the scene's (log2), in linear light, over the first
    8 frames at 256 px with the built-in segmenter's mask. A grade within this spread cannot be told from
    the scene alone. Then how bright people are on their own (sixteenth check): the person's mean luma
    and the face's skin's median luma (the skin balance's cheeks and forehead; stops of linear luma)."""
    manifest_dir = ROOT / "models" / "harmoim"
    manifest = yaml.safe_load((manifest_dir / "harmoim-v3-manifest.yaml").read_text())
    gaps, brightness, skins = [], [], []
    for path in [(manifest_dir / c).resolve() for c in manifest["clips"]]:
        frames = load_clip(path, 8, 256, min_frames=1)  # a still is a clip of one frame
        mask = segment_portrait(frames, temporal_smoothing=0.0)
        light = srgb_to_linear(frames)
        person, scene = light[mask > 0.5].mean(0), light[mask < 0.5].mean(0)
        stops = float(torch.log2((person @ LUMA) / (scene @ LUMA)))
        cast = torch.log2(person / scene)
        gaps.append((stops, float(cast[0] - cast[2])))
        brightness.append(float(torch.log2(person @ LUMA)))
        faces = FaceMeshModel()
        skin = [light[t][found].median(0).values @ LUMA for t in range(frames.shape[0])
                if (found := skin_in_view(faces, frames[t].numpy(), mask[t])) is not None]
        if skin:
            skins.append(float(torch.log2(torch.stack(skin)).mean()))
        print(f"{path.name:20s} brightness {stops:+5.2f} stops, red-blue cast {gaps[-1][1]:+5.2f}; person "
              f"{brightness[-1]:+5.2f} stops, skin " + (f"{skins[-1]:+5.2f}" if skin else "(no face)"), flush=True)
    gaps = np.array(gaps)
    for values, what in ((gaps[:, 0], "brightness over the scene's (stops)"), (gaps[:, 1], "red-blue cast (log2)"),
                         (np.array(brightness), "the person's brightness (stops)"),
                         (np.array(skins), "the skin's brightness (stops)")):
        print(f"{what}: {values.min():+.2f} to {values.max():+.2f}, standard deviation {values.std():.2f} "
              f"over {len(values)} people")


def ensemble(workdir: Path, fold: str) -> None:
    """The three person-bagged members alone, averaged, and averaged but held back where they disagree."""
    members = [load_harmoim(workdir / f"{fold}_m{m}.safetensors") for m in range(MEMBERS)]

    def variants(small, small_alpha, pixels, weights):
        each = [net.predict_maps(small, small_alpha) for net in members]
        mean = torch.stack(each).mean(0)
        outputs = torch.stack([apply_maps(pixels, m).clamp(0, 1) for m in each])
        person_px = (weights > 0.5).float()
        spread = ((((outputs - apply_maps(pixels, mean).clamp(0, 1)) ** 2).sum(-1).mean(0) * person_px).sum(1)
                  / person_px.sum(1).clamp(min=1)).sqrt()
        identity = _identity(FRAMES)
        out = {}
        for m, maps in enumerate(each):
            out[f"network {m} alone"] = maps
            out[f"network {m} + rules"] = _with_rules(maps, pixels, weights)
        out["mean of 3 alone"] = mean
        out["mean of 3 + rules"] = _with_rules(mean, pixels, weights)
        for scale in DISAGREEMENT_SCALES:
            keep = (1 / (1 + (spread / scale) ** 2)).view(-1, 1, 1, 1)
            out[f"mean of 3, disagreement {scale}"] = identity + keep * (mean - identity)
        return out

    score(workdir, fold, variants, "ensemble")


if __name__ == "__main__":
    command, workdir = sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else None
    if command == "people":
        people()
    elif command == "prepare":
        prepare(workdir)
    elif command == "networks":
        names = [a for a in sys.argv[4:] if a != "--graded-scenes"]
        networks(workdir, sys.argv[3], names, graded_scenes="--graded-scenes" in sys.argv[4:])
    elif command == "amplify":
        amplify(workdir, sys.argv[3], sys.argv[4])
    elif command == "clarity":
        clarity(workdir, sys.argv[3], sys.argv[4], graded_scenes="--graded-scenes" in sys.argv[5:])
    elif command == "looks":
        looks(workdir, sys.argv[3], sys.argv[4])
    elif command == "limits":
        limits(workdir, sys.argv[3], sys.argv[4], graded_scenes="--graded-scenes" in sys.argv[5:])
    elif command == "skin":
        skin(workdir, sys.argv[3], sys.argv[4])
    elif command == "ceiling":
        ceiling(workdir, sys.argv[3], sys.argv[4])
    elif command == "brightness":
        brightness(workdir, sys.argv[3], sys.argv[4], graded_scenes="--graded-scenes" in sys.argv[5:])
    else:
        ensemble(workdir, sys.argv[3])

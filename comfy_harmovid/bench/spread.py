"""How a method's gain over doing nothing spreads over cases: a mean hides the cases it makes worse.

For one metric (fPSNR), per method: the mean score, the mean gain over the baseline ("identity": doing
nothing), the 10th percentile of the gain, the share of cases worse than the baseline by more than
0.5 dB and by more than 2 dB, and the worst case with its name. ``draw_histogram`` draws the gains.
"""

from pathlib import Path
from typing import Dict

import numpy as np

WORSE_BY = 0.5  # dB: a case counts as made worse beyond this (the and the README's threshold)
MUCH_WORSE_BY = 2.0  # dB: a case that should never happen


def gains(per_case: Dict[str, Dict[str, Dict[str, float]]], metric: str, baseline: str) -> Dict[str, np.ndarray]:
    """``{method: gain over the baseline per case}`` (cases in ``per_case`` order), the baseline excluded."""
    methods = [name for name in next(iter(per_case.values())) if name not in (baseline, "clean reference")]
    return {
        method: np.array([rows[method][metric] - rows[baseline][metric] for rows in per_case.values()])
        for method in methods
    }


def gain_spread(per_case: Dict[str, Dict[str, Dict[str, float]]], metric: str, baseline: str = "identity") -> dict:
    """``{method: {mean, gain, p10, worse, much_worse, worst, worst_case, cases}}`` over the cases of ``per_case``."""
    names = list(per_case)
    spread = {}
    for method, gain in gains(per_case, metric, baseline).items():
        worst = int(np.argmin(gain))
        spread[method] = {
            "mean": float(np.mean([rows[method][metric] for rows in per_case.values()])),
            "gain": float(gain.mean()),
            "p10": float(np.percentile(gain, 10)),
            "worse": float(np.mean(gain < -WORSE_BY)),
            "much_worse": float(np.mean(gain < -MUCH_WORSE_BY)),
            "worst": float(gain[worst]),
            "worst_case": names[worst],
            "cases": len(names),
        }
    baseline_scores = [rows[baseline][metric] for rows in per_case.values()]
    spread[baseline] = {"mean": float(np.mean(baseline_scores)), "gain": 0.0, "cases": len(names)}
    return spread


def format_spread(spread: dict, metric: str = "fPSNR") -> str:
    """A plain-text table of ``gain_spread``'s result."""
    header = (f"{'method':<28} {metric:>7} {'gain':>7} {'p10':>7} {'< -0.5 dB':>10} {'< -2 dB':>8} "
              f"{'worst':>7}  worst case")
    lines = [f"gain over doing nothing ({metric}, dB), {next(iter(spread.values()))['cases']} cases", header,
             "-" * len(header)]
    for method, row in spread.items():
        if "p10" not in row:
            lines.append(f"{method:<28} {row['mean']:7.2f} {0.0:7.2f}")
            continue
        lines.append(f"{method:<28} {row['mean']:7.2f} {row['gain']:+7.2f} {row['p10']:+7.2f} {row['worse']:10.1%} "
                     f"{row['much_worse']:8.1%} {row['worst']:+7.2f}  {row['worst_case']}")
    return "\n".join(lines)


def draw_histogram(path, per_case: Dict[str, Dict[str, Dict[str, float]]], metric: str = "fpsnr",
                   baseline: str = "identity") -> Path:
    """One histogram row per method of its per-case gain over the baseline, written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_output

    per_method = gains(per_case, metric, baseline)
    low = min(-3.0, min(float(g.min()) for g in per_method.values()))
    high = max(3.0, max(float(g.max()) for g in per_method.values()))
    bins = np.linspace(np.floor(low), np.ceil(high), int(2 * (np.ceil(high) - np.floor(low))) + 1)
    figure, axes = plt.subplots(len(per_method), 1, figsize=(8, 1.8 * len(per_method) + 0.6), sharex=True,
                                squeeze=False)
    for axis, (method, gain) in zip(axes[:, 0], per_method.items()):
        axis.hist(gain, bins=bins, color="tab:green", edgecolor="black", linewidth=0.5)
        axis.hist(gain[gain < -WORSE_BY], bins=bins, color="tab:red", edgecolor="black", linewidth=0.5)
        axis.axvline(0.0, color="black", linewidth=0.8)
        axis.set_ylabel("cases")
        axis.set_title(f"{method}: mean {gain.mean():+.2f} dB, {np.mean(gain < -WORSE_BY):.0%} of {len(gain)} "
                       f"cases below -{WORSE_BY} dB, worst {gain.min():+.2f} dB", fontsize=9)
    axes[-1, 0].set_xlabel(f"{metric} gain over doing nothing (dB); red: worse by more than {WORSE_BY} dB")
    figure.tight_layout()
    path = Path(path)
    with atomic_output(path) as partial:
        figure.savefig(partial, format="png", dpi=100)
    plt.close(figure)
    return path

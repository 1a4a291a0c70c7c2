"""Scoring a method's output, averaging over clips, and presenting the results (table and JSON)."""

import json
import math
from pathlib import Path
from typing import Dict

import numpy as np
import torch

from ..evaluation import metrics

# Column name -> (header, format, higher is better)
COLUMNS = {
    "psnr": ("PSNR", "{:.2f}", True),
    "ssim": ("SSIM", "{:.4f}", True),
    "rmse": ("RMSE", "{:.4f}", False),
    "fpsnr": ("fPSNR", "{:.2f}", True),
    "fmse": ("fMSE", "{:.1f}", False),
    "warp_error": ("WarpErr", "{:.3e}", False),
    "warp_error_fg": ("WarpErr fg", "{:.3e}", False),
    "warp_error_fg_vs_clean": ("WarpErr fg / clean", "{:.2f}x", False),
    "motion_preservation": ("MotionPres", "{:.3f}", False),
    "motion_preservation_fg": ("MotionPres fg", "{:.3f}", False),
    "edge_laplacian_var": ("Edge LapVar", "{:.1f}", True),
    "edge_tenengrad": ("Edge Tenengrad", "{:.0f}", True),
    "psnr_vs_processed": ("PSNR vs processed", "{:.2f}", True),
    "warp_error_reduction": ("WarpErr cut", "{:.1%}", True),
    "added_flicker_removed": ("Added flicker removed", "{:.1%}", True),
}


def reference_free_scores(output: torch.Tensor, mask: torch.Tensor, flows: metrics.ClipFlow) -> Dict[str, float]:
    """Scores that need no target: warping error with the clean clip's ``flows`` (whole frame and
    inside ``mask``) and sharpness in a band around the mask's boundary (the paper's Table 4)."""
    residual = metrics.warp_residual(output, flows)
    sharpness = metrics.boundary_sharpness(output, mask)
    return {
        "warp_error": metrics.masked_pair_mean(residual, flows),
        "warp_error_fg": metrics.masked_pair_mean(residual, flows, mask),
        "edge_laplacian_var": sharpness["laplacian_variance"],
        "edge_tenengrad": sharpness["tenengrad"],
    }


def score(
    output: torch.Tensor,
    reference: torch.Tensor,
    mask: torch.Tensor,
    flows: metrics.ClipFlow,
    *,
    motion_in_mask: bool,
) -> Dict[str, float]:
    """Every metric of ``output`` against the clean ``reference`` (flows from the reference).

    Motion preservation is measured over the whole frame (the paper's Table 1) or, with
    ``motion_in_mask``, over the foreground (its Table 2).
    """
    mse = metrics.mse_per_frame(output, reference)
    foreground_mse = metrics.foreground_mse(output, reference, mask)
    scores = {
        "psnr": metrics.mse_to_psnr(mse),
        "ssim": metrics.ssim(output, reference),
        "rmse": float(mse.sqrt().mean()),
        "fpsnr": metrics.mse_to_psnr(foreground_mse),
        "fmse": float(foreground_mse.mean()) * 255.0**2,
    }
    scores.update(reference_free_scores(output, mask, flows))
    key = "motion_preservation_fg" if motion_in_mask else "motion_preservation"
    scores[key] = metrics.motion_preservation(
        output, reference, mask if motion_in_mask else None, reference_flows=flows
    )
    return scores


def add_ratio_to_clean(per_clip: Dict[str, Dict[str, Dict[str, float]]], key: str = "warp_error_fg") -> None:
    """Add ``{key}_vs_clean`` to every method's row: its ``key`` over the clean reference's, per clip
    (1 = as steady as the clean clip). In place."""
    for rows in per_clip.values():
        clean = rows["clean reference"][key]
        for name, values in rows.items():
            if name != "clean reference" and key in values:
                values[f"{key}_vs_clean"] = values[key] / clean if clean > 0 else math.inf


def mean_over_clips(per_clip: Dict[str, Dict[str, Dict[str, float]]]) -> Dict[str, Dict[str, float]]:
    """``{clip: {method: {metric: value}}}`` -> ``{method: {metric: mean over clips}}``."""
    methods = {}
    for clip_scores in per_clip.values():
        for method, values in clip_scores.items():
            for key, value in values.items():
                methods.setdefault(method, {}).setdefault(key, []).append(value)
    return {method: {key: float(np.mean(v)) for key, v in values.items()} for method, values in methods.items()}


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return COLUMNS[key][1].format(value) if key in COLUMNS else str(value)


def format_table(title: str, rows: Dict[str, Dict[str, float]]) -> str:
    """A plain-text table: one row per method, one column per metric present in any row."""
    keys = [key for key in COLUMNS if any(key in values for values in rows.values())]
    headers = ["method"] + [f"{COLUMNS[k][0]} {'^' if COLUMNS[k][2] else 'v'}" for k in keys]
    body = [[name] + [_cell(k, values.get(k)) for k in keys] for name, values in rows.items()]
    widths = [max(len(row[i]) for row in [headers] + body) for i in range(len(headers))]

    def line(cells):
        return "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(cells))

    return "\n".join([title, line(headers), line(["-" * w for w in widths])] + [line(row) for row in body])


BRIEF_FROM = 13  # from this many cases on, each case is one line of fPSNR per method, not a whole table


def format_case_lines(per_case: Dict[str, Dict[str, Dict[str, float]]], metric: str = "fpsnr") -> str:
    """One line per case: ``metric`` for each method."""
    methods = [name for name in next(iter(per_case.values())) if name != "clean reference"]
    width = max(len(case) for case in per_case)
    lines = [f"{COLUMNS[metric][0]} per case", f"{'case':<{width}}  " + "  ".join(f"{m:>12}" for m in methods)]
    for case, rows in per_case.items():
        lines.append(f"{case:<{width}}  " + "  ".join(f"{_cell(metric, rows[m].get(metric)):>12}" for m in methods))
    return "\n".join(lines)


def format_report(result: dict) -> str:
    """The per-clip tables (or lines, for many cases), the mean table and the spread of a protocol's result."""
    from .spread import format_spread

    if len(result["clips"]) >= BRIEF_FROM:
        parts = [format_case_lines(result["clips"])]
    else:
        parts = [format_table(f"{clip}", rows) for clip, rows in result["clips"].items()]
    parts.append(format_table(f"mean over {len(result['clips'])} clip(s)", result["mean"]))
    if "spread" in result:
        parts.append(format_spread(result["spread"]))
    return "\n\n".join(parts)


def _json_safe(value):
    """JSON has no infinity: write it as the string "inf" (a perfect score)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if isinstance(value, dict):
        return {key: _json_safe(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path, result: dict) -> None:
    from ..atomic import atomic_output

    with atomic_output(path) as partial:
        Path(partial).write_text(json.dumps(_json_safe(result), indent=2) + "\n", encoding="utf-8")


def dumps(result: dict) -> str:
    return json.dumps(_json_safe(result), indent=2)


"""Contact sheets: a labelled grid of frames (before / after, or input / reference / each method) so a
person can look. Used by ``harmovid harmonize --sheet`` and the benchmarks."""

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .atomic import atomic_output

LABEL_HEIGHT = 16
ROW_LABEL_WIDTH = 150
BACKGROUND = (32, 32, 32)
TEXT = (235, 235, 235)


def _thumbnail(frame: torch.Tensor, height: int) -> Image.Image:
    image = Image.fromarray((frame.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), Image.LANCZOS)


def contact_sheet(
    rows: Sequence[Tuple[str, Dict[str, torch.Tensor]]], thumb_height: int = 128
) -> Image.Image:
    """One row per ``(row label, {column label: frame [H, W, 3]})``; columns in first-seen order."""
    columns: List[str] = []
    for _, frames in rows:
        columns += [name for name in frames if name not in columns]
    thumbs = [{name: _thumbnail(frame, thumb_height) for name, frame in frames.items()} for _, frames in rows]
    cell_width = max(thumb.width for row in thumbs for thumb in row.values())
    font = ImageFont.load_default()
    sheet = Image.new(
        "RGB",
        (ROW_LABEL_WIDTH + cell_width * len(columns), LABEL_HEIGHT + (thumb_height + 4) * len(rows)),
        BACKGROUND,
    )
    draw = ImageDraw.Draw(sheet)
    for c, name in enumerate(columns):
        label = name[: cell_width // 6]
        left = ROW_LABEL_WIDTH + c * cell_width + (cell_width - draw.textlength(label, font=font)) / 2
        draw.text((left, 2), label, fill=TEXT, font=font)
    for r, ((label, _), row_thumbs) in enumerate(zip(rows, thumbs)):
        top = LABEL_HEIGHT + r * (thumb_height + 4)
        for line, text in enumerate(label.split("\n")):
            draw.text((4, top + 4 + 12 * line), text[:24], fill=TEXT, font=font)
        for c, name in enumerate(columns):
            if name in row_thumbs:
                thumb = row_thumbs[name]
                sheet.paste(thumb, (ROW_LABEL_WIDTH + c * cell_width + (cell_width - thumb.width) // 2, top))
    return sheet


def save_contact_sheet(path, rows, thumb_height: int = 128) -> None:
    """Draw ``contact_sheet(rows)`` and write it, atomically, in the format the path's suffix names."""
    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_output(path) as partial:
        contact_sheet(rows, thumb_height).save(partial, format=image_format)

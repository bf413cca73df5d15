"""Pictures of a recorded salt answer drawn on first view, from its stored files: the overlay, the
overlay with axes and a legend, and the probabilities with a colour bar. Pure: each returns a PIL
image; :func:`app.recorder.add_artefact` keeps it with the answer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from geovision import figures, tiling
from geovision.imaging import to_gray

SALT_COLOUR = (255, 64, 32)   #: the overlay's tint (geovision.tiling.overlay's default)
PIXEL_AXES = {"x": {"label": "column (px)", "first": 0, "step": 1}, "y": {"label": "row (px)", "first": 0, "step": 1}}


def _no_data(folder: Path) -> np.ndarray | None:
    if not (folder / "nodata.png").exists():
        return None
    with Image.open(folder / "nodata.png") as nd:
        return np.asarray(nd) > 0


def overlay(folder: Path) -> Image.Image:
    """The input in grey with the mask tinted and no data hatched (``input.png``, ``mask.png``, ``nodata.png``)."""
    with Image.open(folder / "input.png") as im:
        gray = to_gray(ImageOps.exif_transpose(im))
    with Image.open(folder / "mask.png") as m:
        mask = np.asarray(m) > 0
    return tiling.overlay(gray, mask, no_data=_no_data(folder))


def overlay_figure(folder: Path, overlay_png: Path, row) -> Image.Image:
    """The overlay with the recorded axes (``row.result["axes"]``), the file name as title and a legend."""
    axes = row.result.get("axes") or PIXEL_AXES
    legend = [(SALT_COLOUR, "salt")] + ([((176, 176, 176), "no data")] if _no_data(folder) is not None else [])
    with Image.open(overlay_png) as im:
        return figures.with_axes(im.convert("RGB"), axes["x"], axes["y"], title=row.filename, legend=legend)


def probability_figure(folder: Path, row) -> Image.Image:
    """The salt probabilities (``prob.png``) with a colour bar and the recorded threshold marked."""
    axes = row.result.get("axes") or PIXEL_AXES
    with Image.open(folder / "prob.png") as pr:
        probs = np.asarray(pr, np.float32) / 255
    return figures.probability_figure(probs, _no_data(folder), axes["x"], axes["y"], float(row.result["threshold"]))

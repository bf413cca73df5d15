"""Inputs of the salt handler: a picture (its data area found) or a SEG-Y slice -> grey levels and no data."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from flask import current_app
from PIL import Image

from geovision import colourscale, dataarea, gain, nodata
from geovision.imaging import ImageError, decode_image, to_gray

from . import segy
from .volumes import Refused, StoredSegy, load_segy

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def input_size(item, spec: segy.SliceSpec | None) -> tuple[int, int]:
    """(height, width) of the picture an item will give, read from headers only; (1, 1) when
    it cannot be told (the answer then reports the error)."""
    if isinstance(item, Refused):
        return 1, 1
    if isinstance(item, StoredSegy):
        found = load_segy(item.segy_id)
        if found is None:
            return 1, 1
        g = found[1]
        spec = spec or segy.parse_slice(g["default_slice"])
        if spec.kind != "section" and g.get("kind") != "3d":
            return 1, 1
        return segy.slice_shape(g, spec)
    try:
        with Image.open(io.BytesIO(item.data)) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return 1, 1
    return height, width


def parse_data_area(value: str | None) -> tuple[int, int, int, int] | str:
    """Form value -> ``"auto"`` (found, the default), ``"all"`` (the whole picture is plotted data)
    or a crop (left, top, right, bottom) in pixels, right and bottom exclusive; raises ValueError."""
    text = (value or "auto").strip().lower()
    if text in ("auto", "all"):
        return text
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    if len(parts) != 4:
        raise ValueError("data_area must be auto, all, or left,top,right,bottom in pixels")
    try:
        left, top, right, bottom = (int(float(p)) for p in parts)
    except OverflowError:   # "inf": int() of an infinite float
        raise ValueError("data_area values must be finite pixel numbers") from None
    if left < 0 or top < 0 or right <= left or bottom <= top:
        raise ValueError("data_area left,top,right,bottom must have left < right and top < bottom, all >= 0")
    return left, top, right, bottom


def image_input(upload, data_area: tuple[int, int, int, int] | str = "auto") -> tuple[np.ndarray, np.ndarray, dict, object]:
    """(grey levels (H, W) in [0, 1], no-data mask (H, W) bool, extra result fields, input writer).

    Outside the picture's data area (:func:`geovision.dataarea.picture_no_data`, or the user's
    ``data_area`` crop) is no data; the extra fields give the area used as ``data_area``
    ``{"left", "top", "right", "bottom", "source": "auto"|"all"|"user"}`` and ``colour_scale``: ``grey``
    (luma) or the diverging scale the amplitudes were read back from (:mod:`geovision.colourscale`)."""
    image = decode_image(upload.data, current_app.config["MAX_IMAGE_PIXELS"])

    def save_input(folder: Path) -> None:
        if upload.data.startswith(PNG_SIGNATURE):   # browsers show PNG as it is: keep the bytes
            (folder / "input.png").write_bytes(upload.data)
        else:
            image.convert("RGB").save(folder / "input.png", compress_level=1)

    gray = to_gray(image)
    h, w = gray.shape
    coloured = image.mode not in ("L", "I", "F") and not image.mode.startswith("I;")
    picture = np.asarray(image.convert("RGB")) if coloured else (gray * 255).round().astype(np.uint8)
    scale = colourscale.amplitude_gray(picture) if coloured else None
    if scale is not None:   # red-white-blue: the amplitude's sign is in the hue, which luma loses
        gray = scale[0]
    if data_area == "auto":
        no_data, (top, bottom, left, right) = dataarea.picture_no_data(picture, gray)
        source = "auto"
    else:
        left, top, right, bottom = (0, 0, w, h) if data_area == "all" else data_area
        left, right, top, bottom = min(left, w), min(right, w), min(top, h), min(bottom, h)
        no_data = np.ones((h, w), bool)
        no_data[top:bottom, left:right] = nodata.image_no_data(gray[top:bottom, left:right])
        source = "all" if data_area == "all" else "user"
    area = {"left": int(left), "top": int(top), "right": int(right), "bottom": int(bottom), "source": source}
    return gray, no_data, {"data_area": area, "colour_scale": scale[1] if scale else "grey"}, save_input


def amplitude_geometry(stored: StoredSegy) -> dict:
    """The stored volume's geometry; raises ImageError ``not_amplitudes`` for a volume of velocities
    (salt is segmented on seismic amplitudes, whether one slice or the whole volume)."""
    info = load_segy(stored.segy_id)
    geometry = info[1] if info else segy.geometry(stored.path)
    if geometry.get("values") == "velocity":
        raise ImageError("this volume holds velocities (all values positive, in the range of m/s), not seismic "
                         "amplitudes: salt is segmented on amplitude sections", code="not_amplitudes")
    return geometry


def segy_input(stored: StoredSegy, spec: segy.SliceSpec | None,
                domain: str = "time") -> tuple[np.ndarray, np.ndarray, dict, object, dict]:
    """Grey levels of one slice of a stored volume (the survey's default slice when ``spec`` is
    None); the result adds ``slice`` (e.g. ``inline:120``) and ``segy_id``."""
    geometry = amplitude_geometry(stored)
    spec = spec or segy.parse_slice(geometry["default_slice"])
    limit = current_app.config["MAX_IMAGE_PIXELS"]
    if spec.kind == "section" or geometry.get("kind") == "3d":   # else read_slice names the error
        height, width = segy.slice_shape(geometry, spec)
        if height * width > limit:   # checked on the headers, before the grid is allocated
            raise ImageError(f"the slice is {width}x{height} samples; the limit is {limit:,} pixels",
                             code="image_too_large", status=413)
    try:
        amplitudes = segy.read_slice(stored.path, spec)
    except segy.SegyError as exc:
        raise ImageError(str(exc), code="invalid_slice") from None
    gray, no_data = section_grey(amplitudes, vertical=spec.kind != "time")

    def save_input(folder: Path) -> None:
        Image.fromarray((gray * 255).round().astype(np.uint8), "L").save(folder / "input.png", compress_level=1)

    extra = {"slice": str(spec), "segy_id": stored.segy_id, "domain": domain}
    return gray, no_data, extra, save_input, segy.slice_axes(geometry, spec, domain)


def section_grey(amplitudes: np.ndarray, vertical: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Grey levels float32 (H, W) in [0, 1] and no data bool (H, W) of one slice's amplitudes
    (float32 (H, W), NaN for missing traces): dead traces, NaN and zero padding are no data; a
    vertical section (samples downwards) has its decay balanced (:func:`geovision.gain.balance_rows`)
    and its water column or top mute (flat from the first sample down) marked no data. The one
    reading of a slice for the 2-D answer and for every inline of a volume job."""
    no_data = nodata.section_no_data(amplitudes)
    gray = segy.scale_amplitudes(amplitudes, live=~no_data)
    big = min(gray.shape) >= dataarea.MIN_SIDE
    if vertical:
        if big:   # near-zero water columns and top mutes (flat from the first sample down) stay no data
            no_data |= np.cumprod(dataarea.flat_fills(gray), axis=0).astype(bool)
        gray = segy.scale_amplitudes(gain.balance_rows(amplitudes, live=~no_data), live=~no_data)
    if big:   # flat, as in a picture
        no_data |= dataarea.flat_fills(gray)
    return gray, no_data

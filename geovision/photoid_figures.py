"""Pictures of a whale photo-ID answer: a query beside a gallery photo, the verified matches drawn."""
from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageOps

from .photoid import LONG_SIDE, Verification


def draw_matches(query: Image.Image, photo: Image.Image, verification: Verification, height: int = 320,
                 query_mirror: bool = False, photo_mirror: bool = False) -> bytes:
    """PNG of the query (left) beside a gallery photo (right), both at ``height`` px, with a line
    between the two ends of each inlier match (coordinates as :func:`prepare_photo` made them)."""
    panels, scales = [], []
    for image, mirror in ((query, query_mirror), (photo, photo_mirror)):
        rgb = ImageOps.exif_transpose(image).convert("RGB")
        if mirror:
            rgb = ImageOps.mirror(rgb)
        prepared_scale = LONG_SIDE / max(rgb.size)
        s = height / rgb.height
        panels.append(np.asarray(rgb.resize((max(1, round(rgb.width * s)), height)))[..., ::-1].copy())
        scales.append(s / prepared_scale)
    gap = 8
    canvas = np.full((height, panels[0].shape[1] + gap + panels[1].shape[1], 3), 255, np.uint8)
    canvas[:, :panels[0].shape[1]] = panels[0]
    offset = panels[0].shape[1] + gap
    canvas[:, offset:] = panels[1]
    for qx, qy, gx, gy in verification.pairs:
        a = (int(qx * scales[0]), int(qy * scales[0]))
        b = (int(gx * scales[1]) + offset, int(gy * scales[1]))
        cv2.line(canvas, a, b, (0, 200, 255), 1, cv2.LINE_AA)
        cv2.circle(canvas, a, 3, (0, 255, 0), 1, cv2.LINE_AA)
        cv2.circle(canvas, b, 3, (0, 255, 0), 1, cv2.LINE_AA)
    buf = io.BytesIO()
    Image.fromarray(canvas[..., ::-1]).save(buf, "PNG", optimize=False)
    return buf.getvalue()

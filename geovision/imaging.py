"""Image decoding and normalisation (pure functions, no Flask): safe decoding of untrusted
uploads, grey levels, RGB thumbnails and per-channel standardisation."""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Formats accepted from users; anything else is refused before decoding pixels.
ALLOWED_FORMATS = {"PNG", "JPEG", "TIFF", "GIF", "BMP", "WEBP"}


class ImageError(ValueError):
    """An upload that is not a usable image; ``code`` is the API error code, ``status`` the HTTP status."""

    def __init__(self, message: str, code: str = "invalid_image", status: int = 400):
        super().__init__(message)
        self.code, self.status = code, status


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode bytes into a fully loaded PIL image with its EXIF orientation applied.

    Args:
        data: the raw upload.
        max_pixels: largest width * height accepted (decompression-bomb guard); checked
            from the header, before any pixel is decoded.
    Raises:
        ImageError: empty data (``empty_file``), unknown or disallowed format,
            truncated or corrupt data (``invalid_image``), too many pixels
            (``image_too_large``, status 413).
    """
    if not data:
        raise ImageError("the file is empty", code="empty_file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ALLOWED_FORMATS:
                raise ImageError(f"unsupported image format {image.format}; use PNG, JPEG, TIFF, GIF, BMP or WebP",
                                 code="unsupported_format")
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"image is {width}x{height} pixels; the limit is {max_pixels:,} pixels",
                                 code="image_too_large", status=413)
            image.load()
            image = ImageOps.exif_transpose(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"image has more than the limit of {max_pixels:,} pixels",
                         code="image_too_large", status=413) from None
    except UnidentifiedImageError:
        raise ImageError("the file is not a readable image (PNG, JPEG or TIFF)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"the image is truncated or corrupt ({exc})") from None
    return image


def to_gray(image: Image.Image) -> np.ndarray:
    """Grayscale float32 array (H, W) in [0, 1] from any PIL mode.

    16- and 32-bit integer images are scaled by their bit depth, float images by
    their own range; colour and palette images use ITU-R 601 luma (``convert("L")``);
    alpha is ignored.
    """
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        arr = np.asarray(image, dtype=np.float32)
        if image.mode == "F":
            lo, hi = float(arr.min()), float(arr.max())
            return ((arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)).astype(np.float32)
        peak = float(arr.max()) if arr.size else 0.0
        if image.mode.startswith("I;16"):
            full = 65535.0
        else:  # 32-bit "I": 8-bit or 16-bit data widened by the decoder, or wider
            full = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
        return np.clip(arr / full, 0.0, 1.0).astype(np.float32)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def rgb_thumbnail(image: Image.Image, size: int) -> np.ndarray:
    """uint8 (size, size, 3) RGB thumbnail (bilinear resize, as in training).

    16-bit and float images go through :func:`to_gray` (grey RGB); other
    modes through ``convert("RGB")``.
    """
    if image.mode.startswith("I") or image.mode == "F":
        image = Image.fromarray((to_gray(image) * 255).round().astype(np.uint8), "L")
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def normalise(thumbnail: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (3, H, W), scaled to [0, 1] then standardised per channel."""
    x = thumbnail.astype(np.float32).transpose(2, 0, 1) / 255.0
    return ((x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]).astype(np.float32)


def rgb_model_input(image: Image.Image, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (S, S, 3) thumbnail, float32 (3, S, S) normalised input) of an image for a checkpoint
    whose ``meta.json`` gives ``input_shape`` [3, S, S] and per-channel ``normalization``."""
    thumb = rgb_thumbnail(image, int(meta["input_shape"][-1]))
    norm = meta["normalization"]
    return thumb, normalise(thumb, norm["mean"], norm["std"])

import io

import numpy as np
import pytest
from PIL import Image

from geovision.imaging import ImageError, decode_image, to_gray

from .conftest import header_bomb_png, png_bytes

LIMIT = 25_000_000


def test_bad_inputs_raise_image_error():
    good = png_bytes(np.zeros((50, 50), np.uint8))
    cases = {
        "empty_file": b"",
        "invalid_image": b"hello, I am text",
        "invalid_image ": good[: len(good) // 2],
        "unsupported_format": b"%PDF-1.4\n%...",
        "svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    }
    for name, data in cases.items():
        with pytest.raises(ImageError) as info:
            decode_image(data, LIMIT)
        assert info.value.status == 400, name
    with pytest.raises(ImageError) as info:
        decode_image(header_bomb_png(), LIMIT)
    assert info.value.code == "image_too_large" and info.value.status == 413


def test_unusual_valid_images_decode():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    sixteen = (rng.random((30, 40)) * 65535).astype(np.uint16)
    cmyk = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(cmyk, "JPEG")
    palette = io.BytesIO()
    Image.fromarray(rgb).convert("P").save(palette, "GIF")
    tiff = io.BytesIO()
    Image.fromarray(rgb).save(tiff, "TIFF")
    rgba = png_bytes(np.dstack([rgb, np.full((30, 40), 128, np.uint8)]))
    for data in [png_bytes(sixteen), cmyk.getvalue(), palette.getvalue(), tiff.getvalue(), rgba,
                 png_bytes(np.zeros((1, 1), np.uint8))]:
        gray = to_gray(decode_image(data, LIMIT))
        assert gray.dtype == np.float32 and gray.ndim == 2
        assert 0.0 <= gray.min() <= gray.max() <= 1.0
    g16 = to_gray(decode_image(png_bytes(sixteen), LIMIT))
    np.testing.assert_allclose(g16, sixteen / 65535.0, atol=1e-6)


def test_exif_orientation_is_applied():
    img = np.zeros((20, 60), np.uint8)   # wide image, bright left column
    img[:, :5] = 255
    exif = Image.Exif()
    exif[0x0112] = 6                      # rotate 90 CW when displayed
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    decoded = decode_image(buf.getvalue(), LIMIT)
    assert decoded.size == (20, 60)       # now tall
    gray = to_gray(decoded)
    assert gray[:5].mean() > 0.8 and gray[-5:].mean() < 0.2   # bright column became the top rows

import numpy as np
import pytest

from app.salt import processing as proc


@pytest.mark.parametrize("shape", [(1, 1), (40, 300), (101, 101), (250, 433), (102, 101)])
def test_tiles_reassemble_the_image(shape):
    rng = np.random.default_rng(1)
    gray = rng.random(shape).astype(np.float32)
    tiles, origins, canvas = proc.make_tiles(gray, 101, 26)
    assert tiles.shape[1:] == (101, 101)
    out = proc.blend_tiles(tiles, origins, canvas, shape, 26)
    assert out.shape == shape
    np.testing.assert_allclose(out, gray, atol=1e-5)


def test_large_section_uses_overlapping_tiles():
    tiles, origins, canvas = proc.make_tiles(np.zeros((300, 500), np.float32), 101, 26)
    ys = sorted({y for y, _ in origins})
    xs = sorted({x for _, x in origins})
    assert ys[0] == 0 and ys[-1] == 300 - 101 and xs[-1] == 500 - 101
    assert all(b - a <= 101 - 26 for a, b in zip(xs, xs[1:]))
    assert len(tiles) == len(ys) * len(xs)


def test_pad_and_crop_are_inverse():
    tiles = np.random.default_rng(2).random((3, 101, 101)).astype(np.float32)
    x = proc.pad_for_model(tiles, 128, 0.5, 0.25)
    assert x.shape == (3, 1, 128, 128) and x.dtype == np.float32
    np.testing.assert_allclose(proc.crop_from_model(x, 101) * 0.25 + 0.5, tiles, atol=1e-6)


def test_overlay_tints_only_the_mask():
    gray = np.full((20, 20), 0.5, np.float32)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    rgb = np.asarray(proc.overlay(gray, mask))
    assert (rgb[0, 0] == 127).all()
    assert rgb[10, 10, 0] > rgb[10, 10, 2]          # tinted red inside
    assert tuple(rgb[5, 10]) == (255, 64, 32)       # outline on the border

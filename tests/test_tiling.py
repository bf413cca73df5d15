from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geovision import tiling as proc


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


SALT_MODEL = Path(__file__).resolve().parent.parent / "models" / "salt"
TGS_TRAIN = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "tgs-salt" / "train" / "images"


@pytest.mark.skipif(not TGS_TRAIN.is_dir(), reason="../shared/data absent")
def test_no_seams_a_tile_inside_a_section_is_predicted_as_alone():
    """3x3 real TGS tiles stitched into a 303x303 section: the top-left tile's probabilities inside
    the section equal those of the tile alone where no other tile overlaps it, and its masks agree
    up to the blending of the overlap band."""
    from geovision.checkpoint import load_checkpoint

    ckpt = load_checkpoint(SALT_MODEL, torch.device("cpu"))
    names = sorted(p.name for p in TGS_TRAIN.glob("*.png"))[:9]
    tiles = [np.asarray(Image.open(TGS_TRAIN / n).convert("L"), np.float32) / 255 for n in names]
    section = np.block([[tiles[3 * r + c] for c in range(3)] for r in range(3)])

    def probabilities(gray):
        inputs, origins, canvas = proc.model_inputs(gray, ckpt.meta, proc.OVERLAP)   # the served blend
        with torch.inference_mode():
            out = ckpt.module(torch.from_numpy(inputs)).float().numpy()
        return proc.blend_tiles(proc.crop_from_model(out, 101), origins, canvas, gray.shape, proc.OVERLAP)

    alone, inside = probabilities(tiles[0]), probabilities(section)[:101, :101]
    stride = 101 - proc.OVERLAP
    np.testing.assert_allclose(inside[:stride, :stride], alone[:stride, :stride], atol=1e-4)
    threshold = ckpt.meta["threshold"]
    agree = ((inside > threshold) == (alone > threshold)).mean()
    assert agree > 0.97
    # no seam: on a continuous section (a tile enlarged 3x), the probability changes across the
    # pipeline's tile edges about as much as elsewhere: 2-3x the mean step with the blending,
    # 18-42x with hard cuts between tiles (measured on the first six TGS tiles)
    smooth = np.asarray(Image.fromarray((tiles[4] * 255).astype(np.uint8)).resize((303, 303), Image.Resampling.BICUBIC),
                        np.float32) / 255
    full = probabilities(smooth)
    edges = sorted({e for start in proc.tile_starts(303, 101, stride) for e in (start, start + 101)} - {0, 303})
    for axis in (0, 1):
        steps = np.abs(np.diff(full, axis=axis))
        at_edges = np.take(steps, [e - 1 for e in edges], axis=axis)
        assert at_edges.mean() <= 5 * steps.mean() + 1e-3

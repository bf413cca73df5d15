import csv

import numpy as np
import pytest
from PIL import Image

from geovision.rle import rle_decode, rle_encode

from .conftest import DATA


def test_encode_is_column_major_and_one_based():
    mask = np.zeros((3, 3), np.uint8)
    mask[0, 0] = mask[1, 0] = 1      # first column, rows 0-1 -> pixels 1, 2
    mask[2, 2] = 1                   # last pixel -> 9
    assert rle_encode(mask) == "1 2 9 1"
    assert rle_encode(np.zeros((4, 5))) == ""
    assert rle_encode(np.ones((2, 2))) == "1 4"


def test_round_trip_random_masks():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (5, 7), (101, 101)]:
        mask = (rng.random(shape) > 0.5).astype(np.uint8)
        assert np.array_equal(rle_decode(rle_encode(mask), shape), mask)


def test_decode_rejects_bad_runs():
    with pytest.raises(ValueError):
        rle_decode("1", (2, 2))
    with pytest.raises(ValueError):
        rle_decode("3 5", (2, 2))


@pytest.mark.skipif(not (DATA / "tgs-salt").is_dir(), reason="../shared/data absent")
def test_round_trip_against_train_csv():
    folder = DATA / "tgs-salt"
    with open(folder / "train.csv", newline="") as fh:
        rows = [r for _, r in zip(range(200), csv.DictReader(fh))]
    assert any(r["rle_mask"] for r in rows) and any(not r["rle_mask"] for r in rows)
    for row in rows:
        mask = (np.asarray(Image.open(folder / "train" / "masks" / f"{row['id']}.png").convert("L")) > 127)
        assert rle_encode(mask) == row["rle_mask"]
        assert np.array_equal(rle_decode(row["rle_mask"], mask.shape), mask.astype(np.uint8))

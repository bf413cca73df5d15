import numpy as np
import pytest

from train.metrics import iou, tgs_image_score, tgs_metric


def _mask(cells):
    m = np.zeros((10, 10), bool)
    for r, c in cells:
        m[r, c] = True
    return m


def test_empty_mask_rule():
    empty = np.zeros((10, 10), bool)
    assert tgs_image_score(empty, empty) == 1.0
    assert tgs_image_score(empty, _mask([(0, 0)])) == 0.0
    assert tgs_image_score(_mask([(0, 0)]), empty) == 0.0


def test_thresholds_are_050_to_095():
    truth = _mask([(0, c) for c in range(10)])          # 10 pixels
    pred = _mask([(0, c) for c in range(6)])            # iou 0.6
    assert iou(truth, pred) == pytest.approx(0.6)
    assert tgs_image_score(truth, pred) == pytest.approx(0.2)   # 0.50 and 0.55 pass
    assert tgs_image_score(truth, truth) == 1.0
    pred96 = _mask([(r, c) for r in range(5) for c in range(10)][:48])
    truth96 = _mask([(r, c) for r in range(5) for c in range(10)])
    assert tgs_image_score(truth96, pred96) == pytest.approx(1.0)     # iou 0.96 > 0.95
    truth_exact = _mask([(0, c) for c in range(10)] + [(1, c) for c in range(10)])
    pred_exact = _mask([(0, c) for c in range(10)] + [(1, c) for c in range(9)])   # iou 0.95
    assert tgs_image_score(truth_exact, pred_exact) == pytest.approx(0.9)          # 0.95 is not > 0.95


def test_metric_averages_images():
    empty = np.zeros((10, 10), bool)
    full = np.ones((10, 10), bool)
    assert tgs_metric(np.stack([empty, full]), np.stack([empty, empty])) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        tgs_metric(empty, empty)

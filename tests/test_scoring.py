import numpy as np
import pytest

from geovision.metrics import iou, tgs_image_score, tgs_metric


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


def test_map_at_5_hand_made_cases():
    from geovision.metrics import map_at_5

    truths = ["a", "b", "c", "d"]
    preds = [["a", "x", "y", "z", "w"],          # rank 1 -> 1
             ["x", "b", "y", "z", "w"],          # rank 2 -> 1/2
             ["x", "y", "z", "w", "c"],          # rank 5 -> 1/5
             ["x", "y", "z", "w", "v", "d"]]     # rank 6 -> 0
    assert map_at_5(truths, preds) == (1 + 0.5 + 0.2 + 0) / 4
    assert map_at_5(["a"], [["a", "a", "b", "c", "d"]]) == 1.0


def test_new_whale_inserted_where_the_score_falls_below_the_threshold():
    from geovision.metrics import NEW_WHALE, insert_new_whale

    ranked = [("w1", 0.9), ("w2", 0.8), ("w3", 0.5), ("w4", 0.4), ("w5", 0.3), ("w6", 0.2)]
    labels = lambda out: [label for label, _ in out]  # noqa: E731
    assert labels(insert_new_whale(ranked, 0.6)) == ["w1", "w2", NEW_WHALE, "w3", "w4"]
    assert labels(insert_new_whale(ranked, 0.95)) == [NEW_WHALE, "w1", "w2", "w3", "w4"]
    assert labels(insert_new_whale(ranked, 0.1)) == ["w1", "w2", "w3", "w4", "w5"]
    assert labels(insert_new_whale(ranked[:2], 0.1)) == ["w1", "w2", NEW_WHALE]
    assert insert_new_whale(ranked, 0.6)[2] == (NEW_WHALE, 0.6)

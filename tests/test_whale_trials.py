"""The whale trials' pieces: SimCLR views and loss, expected-AP ordering, fusion, cross-validation."""
import numpy as np
import torch

from geovision.metrics import NEW_WHALE
from train.whales.studies import rescoring
from train.whales.studies.ssl import nt_xent, retrieval, views


def test_views_keep_shape_and_range_and_differ():
    x = torch.rand(4, 3, 64, 24)
    gen = torch.Generator().manual_seed(0)
    a, b = views(x, gen), views(x, gen)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, b)


def test_nt_xent_is_low_when_the_two_views_agree():
    z = torch.randn(16, 8)
    same = nt_xent(z, z + 0.01 * torch.randn(16, 8), 0.2)
    shuffled = nt_xent(z, z[torch.randperm(16)], 0.2)
    assert same < 1.0 < 3.0 < shuffled


def test_retrieval_counts_the_truth_in_the_top_k():
    gallery = np.eye(4, dtype=np.float32)
    ids = np.array(["a", "b", "c", "d"])
    queries = np.array([[1, 0, 0, 0], [0, 0.1, 0.9, 0], [0, 0, 0, 1]], np.float32)
    fig = retrieval(queries, gallery, ids, ["a", "b", NEW_WHALE])
    assert fig == {"top1_known": 0.5, "top5_known": 1.0, "top20_known": 1.0}


def test_expected_ap_order_puts_new_whale_where_its_probability_falls():
    ranked = [("a", 9.0), ("b", 3.0), ("c", 2.0)]
    assert rescoring.expected_ap_predictions(0.9, 0.5, [0.3, 0.1, 0.05, 0, 0], ranked)[0] == NEW_WHALE
    confident = rescoring.expected_ap_predictions(0.2, 0.9, [0.5, 0.1, 0.05, 0, 0], ranked)
    assert confident[:3] == ["a", NEW_WHALE, "b"]


def test_fusion_lifts_an_individual_the_embedding_is_sure_of():
    votes = [[("a", 10.0), ("b", 5.0), ("c", 4.0)]]
    cosine = [[("c", 0.9), ("a", 0.1), ("b", 0.0)]]
    assert [w for w, _ in rescoring.fuse(votes, cosine, 0.0)[0]] == ["a", "b", "c"]
    assert [w for w, _ in rescoring.fuse(votes, cosine, 0.5)[0]] == ["a", "c", "b"]   # 1.05, 0.85, 0.5
    assert rescoring.reciprocal_rank_fusion(votes, cosine)[0][0][0] in {"a", "c"}


def test_cross_validation_scores_each_fold_with_what_the_other_fitted():
    # a quarter known and confidently right, a quarter known but only second and unsure, half new
    rng = np.random.default_rng(1)
    truths, ranked, inliers = [], [], []
    for i in range(80):
        kind = i % 4
        truth = f"w{i}" if kind in (0, 2) else NEW_WHALE
        if kind == 0:
            r = [(truth, 20.0 + rng.random()), ("y", 4.0), ("z", 3.0)]
        elif kind == 2:
            r = [("x", 5.0), (truth, 4.5), ("z", 3.0)]
        else:
            r = [("x", 5.0), ("y", 4.5), ("z", 3.0)]
        ranked.append(r)
        inliers.append({r[0][0]: 30 if kind == 0 else 2})
        truths.append(truth)
    out = rescoring.cross_validated(truths, ranked, inliers, np.arange(80) // 4 % 2)
    # the ratio rule puts new_whale first on unsure queries, then the candidates in vote order (the truth
    # third); the calibrated order learns that an unsure first candidate is never right (the truth second)
    assert out == {"ratio threshold, 2-fold": round((20 + 20 / 3 + 40) / 80, 4),
                   "logistic expected-AP order, 2-fold": round((20 + 20 / 2 + 40) / 80, 4)}


def test_a_class_missing_from_a_fold_gives_its_constant_rate():
    p = rescoring.probability(np.zeros((4, 2)), np.array([False] * 4))
    assert p(np.ones(2)) == 0.0


def test_joined_embeddings_average_the_models_cosines():
    from train.whales.studies.ensemble import join

    rng = np.random.default_rng(0)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    a, b = unit(rng.normal(size=(5, 8))), unit(rng.normal(size=(5, 16)))
    joined = join([a, b])
    assert np.allclose(np.linalg.norm(joined, axis=1), 1.0)
    assert np.allclose(joined @ joined.T, ((a @ a.T) + (b @ b.T)) / 2)

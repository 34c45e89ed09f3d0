"""The report's numbers against scikit-learn and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from podium.report import analysis


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    logits = rng.normal(size=(300, 4)) + 2.0 * np.eye(4)[y] * rng.random((300, 1))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


def test_confusion_and_per_class_match_scikit_learn(predictions):
    y, probs = predictions
    pred = probs.argmax(1)
    cm = analysis.confusion(y, pred, 5)  # a class nobody has: an empty row and column
    np.testing.assert_array_equal(cm, confusion_matrix(y, pred, labels=range(5)))
    table = analysis.per_class(cm, list("abcde")).set_index("class")
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=range(5), zero_division=0)
    np.testing.assert_allclose(table.loc[list("abcde"), "precision"], p)
    np.testing.assert_allclose(table.loc[list("abcde"), "recall"], r)
    np.testing.assert_allclose(table.loc[list("abcde"), "f1"], f)
    np.testing.assert_array_equal(table.loc[list("abcde"), "support"], s)
    ordered = analysis.per_class(cm, list("abcde"))["f1"].to_numpy()
    assert (np.diff(ordered) >= 0).all()  # worst first
    np.testing.assert_allclose(analysis.row_normalized(cm).sum(1), [1, 1, 1, 1, 0])


def test_confused_pairs_are_the_largest_off_diagonal_cells():
    cm = np.array([[50, 3, 9], [7, 40, 0], [1, 0, 30]])
    assert analysis.confused_pairs(cm, top=3) == [(0, 2, 9), (1, 0, 7), (0, 1, 3)]
    assert analysis.confused_pairs(np.diag([5, 5]), top=3) == []  # no mistakes, no pairs


def test_top_losses_and_pair_examples(predictions):
    y, probs = predictions
    loss = -np.log(probs[np.arange(len(y)), y])
    top = analysis.top_losses(y, probs, 10)
    np.testing.assert_array_equal(top, np.argsort(-loss)[:10])
    rows = analysis.pair_examples(y, probs, 1, 2, 4)
    assert all(y[r] == 1 and probs[r].argmax() == 2 for r in rows)
    assert (np.diff(probs[rows, 2]) <= 0).all()
    every = np.flatnonzero((y == 1) & (probs.argmax(1) == 2))
    assert len(rows) == min(4, len(every)) and probs[rows, 2].min() >= np.sort(probs[every, 2])[-len(rows)]


def test_reliability_bins_and_ece_by_hand():
    # top-class probabilities 0.95 (right), 0.95 (wrong), 0.65 (right), 0.55 (right)
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.35, 0.65], [0.55, 0.45]])
    y = np.array([0, 1, 1, 0])
    table, ece = analysis.reliability(y, probs, bins=10)
    assert table["count"].tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0, 2]
    assert table.loc[9, "accuracy"] == 0.5 and table.loc[9, "confidence"] == pytest.approx(0.95)
    # ECE = (2 * |0.5 - 0.95| + 1 * |1 - 0.65| + 1 * |1 - 0.55|) / 4
    assert ece == pytest.approx((2 * 0.45 + 0.35 + 0.45) / 4)
    assert analysis.reliability(np.array([0]), np.array([[1.0, 0.0]]))[1] == 0.0  # perfectly calibrated


def test_distribution_counts_every_class():
    np.testing.assert_array_equal(analysis.distribution(np.array([2, 0, 2]), 4), [1, 0, 2, 0])

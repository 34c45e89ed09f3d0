"""metrics.py: balanced accuracy (the long-tail metric) against a hand count; multi-label metrics against sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss

from podium.metrics import METRICS, score_all


def test_balanced_accuracy_is_the_mean_recall_of_the_classes_present():
    y = np.array([0, 0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 0, 1, 1, 0, 0])  # recalls: 3/4, 1/2, 0/1
    probs = np.eye(4)[pred]  # a fourth class nobody holds is left out of the mean
    assert METRICS["balanced_accuracy"].fn(y, probs) == pytest.approx((3 / 4 + 1 / 2 + 0) / 3)
    assert METRICS["accuracy"].fn(y, probs) == pytest.approx(4 / 7)
    assert "balanced_accuracy" in score_all(y, probs)


# ------------------------------------------------------------------------------------------ multi-label


def _multilabel_case(seed: int, n: int = 300, k: int = 6):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < rng.uniform(0.05, 0.6, k)).astype(int)
    y[:, -1] = 0  # a label no image has: F1 0/0 and AP undefined must be handled as sklearn does / skipped
    probs = np.clip(0.6 * y + rng.random((n, k)) * 0.7, 0, 1)
    thr = rng.uniform(0.2, 0.8, k)
    return y, probs, thr


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_metrics_match_sklearn_on_random_inputs(seed):
    from sklearn.metrics import average_precision_score, f1_score, hamming_loss

    from podium.metrics import MULTILABEL_METRICS as M

    y, p, thr = _multilabel_case(seed)
    pred = (p >= thr).astype(int)
    assert M["per_label_accuracy"].fn(y, p, thr) == pytest.approx(1 - hamming_loss(y, pred))
    assert M["exact_match"].fn(y, p, thr) == pytest.approx(accuracy_score(y, pred))  # subset accuracy
    for avg in ("micro", "macro", "samples"):
        assert M[f"f1_{avg}"].fn(y, p, thr) == pytest.approx(f1_score(y, pred, average=avg, zero_division=0)), avg
    assert M["mAP"].fn(y, p, thr) == pytest.approx(average_precision_score(y[:, :-1], p[:, :-1], average="macro"))
    assert M["logloss"].fn(y, p, thr) == pytest.approx(log_loss(y.ravel(), np.clip(p.ravel(), 1e-15, 1 - 1e-15)))
    assert M["per_label_accuracy"].fn(y, p, 0.5) == pytest.approx(1 - hamming_loss(y, (p >= 0.5).astype(int)))

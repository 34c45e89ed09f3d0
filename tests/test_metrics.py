"""metrics.py: balanced accuracy (the long-tail metric) against a hand count."""

from __future__ import annotations

import numpy as np
import pytest

from podium.metrics import METRICS, score_all


def test_balanced_accuracy_is_the_mean_recall_of_the_classes_present():
    y = np.array([0, 0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 0, 1, 1, 0, 0])  # recalls: 3/4, 1/2, 0/1
    probs = np.eye(4)[pred]  # a fourth class nobody holds is left out of the mean
    assert METRICS["balanced_accuracy"].fn(y, probs) == pytest.approx((3 / 4 + 1 / 2 + 0) / 3)
    assert METRICS["accuracy"].fn(y, probs) == pytest.approx(4 / 7)
    assert "balanced_accuracy" in score_all(y, probs)

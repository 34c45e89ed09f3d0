"""Registry of metrics on (true class indices, predicted probabilities), computed with scikit-learn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss, recall_score


@dataclass(frozen=True)
class Metric:
    fn: Callable[[np.ndarray, np.ndarray], float]  # (y_true [N], probs [N, C]) -> score
    higher_is_better: bool
    description: str


def _logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1.0)
    return float(log_loss(y, p / p.sum(1, keepdims=True), labels=np.arange(p.shape[1])))


METRICS: dict[str, Metric] = {
    "accuracy": Metric(lambda y, p: float(accuracy_score(y, p.argmax(1))), True, "share of images whose top class is right"),
    "balanced_accuracy": Metric(lambda y, p: float(recall_score(y, p.argmax(1), average="macro", labels=np.unique(y), zero_division=0)),
                                True, "mean over the classes present of each class's recall (accuracy on a balanced test set)"),
    "f1_macro": Metric(lambda y, p: float(f1_score(y, p.argmax(1), average="macro", labels=np.arange(p.shape[1]), zero_division=0)),
                       True, "unweighted mean of per-class F1 (rare classes count as much as common ones)"),
    "f1_weighted": Metric(lambda y, p: float(f1_score(y, p.argmax(1), average="weighted", labels=np.arange(p.shape[1]), zero_division=0)),
                          True, "per-class F1 weighted by class support"),
    "logloss": Metric(_logloss, False, "multi-class cross-entropy of the probabilities (lower is better)"),
}


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        from podium.errors import PodiumError

        raise PodiumError(f"Unknown metric '{name}' (cv.metric). Known: {', '.join(METRICS)}.")
    return METRICS[name]


def score_all(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    return {name: m.fn(y, probs) for name, m in METRICS.items()}

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


# ------------------------------------------------------------------------------------------ multi-label
# fn(y [N, K] 0/1, probs [N, K], thresholds [K]) -> score: a label is predicted when its probability >= its
# threshold. Counting metrics are numpy (fast enough for the threshold search) and tested against scikit-learn's.
# F1's 0/0 (a label, or an image, neither true nor predicted) counts 0, as sklearn's zero_division=0.


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.zeros(np.shape(den), dtype=np.float64), where=den > 0)


def ml_counts(y: np.ndarray, pred: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tp, fp, fn) summed along `axis` (0: per label, 1: per image) of 0/1 truth and 0/1 predictions."""
    y, pred = y.astype(bool), pred.astype(bool)
    return ((y & pred).sum(axis).astype(np.float64), (~y & pred).sum(axis).astype(np.float64),
            (y & ~pred).sum(axis).astype(np.float64))


def _decide(p: np.ndarray, thr) -> np.ndarray:
    return p >= np.broadcast_to(np.asarray(thr, dtype=np.float64), p.shape[1:])


def _ml_f1_micro(y, p, thr) -> float:
    tp, fp, fn = (c.sum() for c in ml_counts(y, _decide(p, thr), 0))
    return float(_f1(tp, fp, fn))


def _ml_map(y, p, thr) -> float:
    """Mean over the labels with at least one positive of sklearn's average precision (others are undefined)."""
    from sklearn.metrics import average_precision_score

    has = y.sum(0) > 0
    return float(average_precision_score(y[:, has], p[:, has], average="macro")) if has.any() else float("nan")


def _ml_logloss(y, p, thr) -> float:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


MULTILABEL_METRICS: dict[str, Metric] = {
    "per_label_accuracy": Metric(lambda y, p, t: float(np.mean(_decide(p, t) == y.astype(bool))), True,
                                 "share of (image, label) cells decided right (S0's metric; 1 - Hamming loss)"),
    "exact_match": Metric(lambda y, p, t: float(np.mean((_decide(p, t) == y.astype(bool)).all(1))), True,
                          "share of images whose whole label set is right (subset accuracy)"),
    "f1_micro": Metric(_ml_f1_micro, True, "F1 of all (image, label) cells pooled"),
    "f1_macro": Metric(lambda y, p, t: float(_f1(*ml_counts(y, _decide(p, t), 0)).mean()), True,
                       "unweighted mean of each label's F1"),
    "f1_samples": Metric(lambda y, p, t: float(_f1(*ml_counts(y, _decide(p, t), 1)).mean()), True,
                         "mean over images of each image's F1"),
    "mAP": Metric(_ml_map, True, "mean over labels of average precision (ranking quality; no thresholds)"),
    "logloss": Metric(_ml_logloss, False, "binary cross-entropy per (image, label) cell (lower is better)"),
}
THRESHOLD_FREE = ("mAP", "logloss")  # multi-label metrics of the probabilities themselves: thresholds cannot change them

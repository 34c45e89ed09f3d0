"""Registries of metrics (`cv.metric`, `podium list metrics`) on (truth, predicted probabilities), computed with
scikit-learn: one for one class per image, one for multi-label sets. Each entry builds a `Metric`; `METRICS` and
`MULTILABEL_METRICS` are the name -> Metric tables that scoring code reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss, recall_score

from podium.registry import Entry, Registry


@dataclass(frozen=True)
class Metric:
    fn: Callable[..., float]  # (y_true [N], probs [N, C]) -> score;
                              # multi-label: (y [N, K], probs [N, K], thresholds [K])
    higher_is_better: bool

    def __call__(self, *args) -> float:
        return self.fn(*args)


def _logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1.0)
    return float(log_loss(y, p / p.sum(1, keepdims=True), labels=np.arange(p.shape[1])))


# build: the Metric itself (what cv.metric scores with, and which way is better)
METRICS_REGISTRY = Registry("metrics", "cv.metric", [
    Entry("accuracy", "share of images whose top class is right", None,
          Metric(lambda y, p: float(accuracy_score(y, p.argmax(1))), True)),
    Entry("balanced_accuracy", "mean over the classes present of each class's recall (accuracy on a balanced test "
                               "set)", None,
          Metric(lambda y, p: float(recall_score(y, p.argmax(1), average="macro", labels=np.unique(y),
                                                 zero_division=0)), True)),
    Entry("f1_macro", "unweighted mean of per-class F1 (rare classes count as much as common ones)", None,
          Metric(lambda y, p: float(f1_score(y, p.argmax(1), average="macro", labels=np.arange(p.shape[1]),
                                             zero_division=0)), True)),
    Entry("f1_weighted", "per-class F1 weighted by class support", None,
          Metric(lambda y, p: float(f1_score(y, p.argmax(1), average="weighted", labels=np.arange(p.shape[1]),
                                             zero_division=0)), True)),
    Entry("logloss", "multi-class cross-entropy of the probabilities (lower is better)", None, Metric(_logloss, False)),
], noun="metric", scope="data.task=multiclass")
METRICS: dict[str, Metric] = METRICS_REGISTRY.builds()


def get_metric(name: str) -> Metric:
    """The single-label metric `name`, or a PodiumError naming cv.metric and the choices."""
    return METRICS_REGISTRY.get(name).build


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


MULTILABEL_METRICS_REGISTRY = Registry("metrics", "cv.metric", [
    Entry("per_label_accuracy", "share of (image, label) cells decided right (S0's metric; 1 - Hamming loss)", None,
          Metric(lambda y, p, t: float(np.mean(_decide(p, t) == y.astype(bool))), True)),
    Entry("exact_match", "share of images whose whole label set is right (subset accuracy)", None,
          Metric(lambda y, p, t: float(np.mean((_decide(p, t) == y.astype(bool)).all(1))), True)),
    Entry("f1_micro", "F1 of all (image, label) cells pooled", None, Metric(_ml_f1_micro, True)),
    Entry("f1_macro", "unweighted mean of each label's F1", None,
          Metric(lambda y, p, t: float(_f1(*ml_counts(y, _decide(p, t), 0)).mean()), True)),
    Entry("f1_samples", "mean over images of each image's F1", None,
          Metric(lambda y, p, t: float(_f1(*ml_counts(y, _decide(p, t), 1)).mean()), True)),
    Entry("mAP", "mean over labels of average precision (ranking quality; no thresholds)", None, Metric(_ml_map, True)),
    Entry("logloss", "binary cross-entropy per (image, label) cell (lower is better)", None,
          Metric(_ml_logloss, False)),
], noun="metric", scope="data.task=multilabel")
MULTILABEL_METRICS: dict[str, Metric] = MULTILABEL_METRICS_REGISTRY.builds()
THRESHOLD_FREE = ("mAP", "logloss")  # multi-label metrics of the probabilities themselves:
                                     # thresholds cannot change them

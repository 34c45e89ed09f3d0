"""The numbers behind a report, from true class indices `y` (N) and probabilities `probs` (N x C).

Pure numpy/pandas: no plotting, no files, so each is tested against scikit-learn or by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def confusion(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """counts[t, p]: how many images of true class t were predicted as p."""
    return np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def row_normalized(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its total (the share of class t predicted as p); empty rows stay 0."""
    totals = cm.sum(1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros(cm.shape, dtype=np.float64), where=totals > 0)


def per_class(cm: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """precision, recall, F1 and support per class, worst F1 first (0 where undefined, as scikit-learn's
    zero_division=0)."""
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(0), cm.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    table = pd.DataFrame({"class": classes, "precision": precision, "recall": recall, "f1": f1,
                          "support": support, "predicted": predicted})
    return table.sort_values(["f1", "support"], ascending=[True, False], kind="stable").reset_index(drop=True)


def confused_pairs(cm: np.ndarray, top: int = 10) -> list[tuple[int, int, int]]:
    """The most frequent (true, predicted, count) mistakes, largest count first."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:top]
    pairs = [(int(t), int(p), int(off[t, p])) for t, p in zip(*np.unravel_index(order, cm.shape))]
    return [pair for pair in pairs if pair[2] > 0]


def losses(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-image cross-entropy: -log p(true class), probabilities clipped at 1e-15 as in metrics.logloss."""
    return -np.log(np.clip(probs[np.arange(len(y)), y], 1e-15, 1.0))


def top_losses(y: np.ndarray, probs: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k highest-loss images, highest first."""
    loss = losses(y, probs)
    k = min(k, len(loss))
    part = np.argpartition(-loss, k - 1)[:k] if k else np.array([], dtype=int)  # O(N): 60,000 rows stay cheap
    return part[np.argsort(-loss[part], kind="stable")]


def pair_examples(y: np.ndarray, probs: np.ndarray, true: int, pred: int, k: int) -> np.ndarray:
    """Up to k rows of class `true` predicted as `pred`, most confident mistakes first."""
    rows = np.flatnonzero((y == true) & (probs.argmax(1) == pred))
    return rows[np.argsort(-probs[rows, pred], kind="stable")][:k]


def reliability(y: np.ndarray, probs: np.ndarray, bins: int = 10) -> tuple[pd.DataFrame, float]:
    """Top-class confidence in equal-width bins vs the accuracy inside each bin, and the expected
    calibration error (ECE: the count-weighted mean |accuracy - confidence| over bins)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)  # bin i holds (edge_i, edge_i+1]
    count = np.bincount(which, minlength=bins)
    mean_conf = np.bincount(which, conf, bins) / np.maximum(count, 1)
    accuracy = np.bincount(which, correct.astype(np.float64), bins) / np.maximum(count, 1)
    table = pd.DataFrame({"lo": edges[:-1], "hi": edges[1:], "count": count, "confidence": mean_conf,
                          "accuracy": accuracy})
    ece = float(np.sum(count * np.abs(accuracy - mean_conf)) / max(len(y), 1))
    return table, ece


def distribution(index: np.ndarray, n_classes: int) -> np.ndarray:
    """How many items fall in each class."""
    return np.bincount(np.asarray(index, dtype=np.int64), minlength=n_classes)


def suspects(y: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Likely mislabels, single-label: (rows, suspected class, confidence), most suspicious first. An image's
    confidence is its OOF probability of the likeliest class other than its given one: the fold model that never
    saw the image is sure it is something else. Ties keep row order."""
    other = probs.astype(np.float64, copy=True)
    other[np.arange(len(y)), y] = -1.0
    suspected = other.argmax(1)
    confidence = other[np.arange(len(y)), suspected]
    order = np.argsort(-confidence, kind="stable")
    return order, suspected[order], confidence[order]


def label_suspects(hot: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Likely mislabels, multi-label: (rows, the label of each row's surest disagreement, its confidence), most
    suspicious first. A disagreement's confidence is p(label) where the label is absent, 1 - p(label) where it is
    given; an image ranks by its surest one."""
    disagree = np.where(hot > 0.5, 1.0 - probs, probs).astype(np.float64)
    label = disagree.argmax(1)
    confidence = disagree[np.arange(len(hot)), label]
    order = np.argsort(-confidence, kind="stable")
    return order, label[order], confidence[order]

"""Per-label decision thresholds for multi-label runs, fitted on the merged OOF for cv.metric (RUN/thresholds.json).

A label is predicted when its probability reaches its threshold (0.5 until fitted). The search is coordinate-wise:
each label in turn takes the grid value (0.05, 0.06, ..., 0.95) that maximises the metric with every other
label's threshold held, for up to `PASSES` sweeps or until nothing moves. Among equal scores the value nearest
0.5 wins, so a flat metric leaves the default alone. Each label's candidates are scored in one vectorised step
(N x grid), so 50,000 images x 26 labels fit in seconds. mAP and logloss do not depend on thresholds: fitting
for them keeps 0.5.

The fitted OOF score is optimistic (the thresholds saw those labels); metrics.json's `cv` stays the score at 0.5
and `thresholds` records the OOF score before and after.
"""

from __future__ import annotations

import numpy as np

from podium.metrics import MULTILABEL_METRICS, THRESHOLD_FREE, _f1, ml_counts

GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)  # candidate thresholds
PASSES = 3  # coordinate sweeps at most


def _column_scores(metric: str, y: np.ndarray, probs: np.ndarray, thr: np.ndarray, k: int) -> np.ndarray:
    """The metric (or a quantity that orders the candidates alike) for each GRID threshold of label k, the other
    labels' thresholds `thr` held."""
    pred = probs >= thr[None, :]
    yk = y[:, k].astype(bool)[:, None]
    pk = probs[:, k][:, None] >= GRID[None, :]  # N x G
    tp, fp, fn = (pk & yk).sum(0), (pk & ~yk).sum(0), (~pk & yk).sum(0)
    others = np.ones(y.shape[1], dtype=bool)
    others[k] = False
    if metric == "per_label_accuracy":
        return (pk == yk).sum(0).astype(np.float64)  # the other labels' cells add a constant
    if metric == "f1_macro":
        return _f1(tp, fp, fn)  # the other labels' F1 add a constant
    if metric == "f1_micro":
        t, f, n = (c.sum() for c in ml_counts(y[:, others], pred[:, others], 0))
        return _f1(t + tp, f + fp, n + fn)
    if metric == "exact_match":
        rest_ok = (pred[:, others] == y[:, others].astype(bool)).all(1)[:, None]
        return (rest_ok & (pk == yk)).mean(0)
    if metric == "f1_samples":
        t, f, n = ml_counts(y[:, others], pred[:, others], 1)
        return _f1(t[:, None] + (pk & yk), f[:, None] + (pk & ~yk), n[:, None] + (~pk & yk)).mean(0)
    fn = MULTILABEL_METRICS[metric].fn  # a metric without a shortcut: scored whole, one candidate at a time
    return np.asarray([fn(y, probs, np.where(others, thr, g)) for g in GRID])


def fit_thresholds(y: np.ndarray, probs: np.ndarray, metric: str) -> np.ndarray:
    """Per-label thresholds maximising `metric` on (y, probs); 0.5 everywhere for threshold-free metrics."""
    thr = np.full(y.shape[1], 0.5)
    if metric in THRESHOLD_FREE:
        return thr
    for _ in range(PASSES):
        moved = False
        for k in range(y.shape[1]):
            scores = _column_scores(metric, y, probs, thr, k)
            best = scores.max()
            ties = GRID[np.isclose(scores, best, rtol=0, atol=1e-12)]
            current = _column_scores_at(scores, thr[k])
            if current is not None and current >= best - 1e-12:
                continue  # the current value is as good as any: keep it
            new = float(ties[np.argmin(np.abs(ties - 0.5))])
            moved |= new != thr[k]
            thr[k] = new
        if not moved:
            break
    return thr


def _column_scores_at(scores: np.ndarray, t: float) -> float | None:
    hit = np.flatnonzero(np.isclose(GRID, t))
    return float(scores[hit[0]]) if len(hit) else None


def summary(params: dict) -> str:
    m = params["metric"]
    return (f"thresholds fitted on OOF for {m}: {params['oof_before'][m]:.4f} -> {params['oof_after'][m]:.4f} "
            f"(per label, {min(params['thresholds'].values()):.2f}..{max(params['thresholds'].values()):.2f})")

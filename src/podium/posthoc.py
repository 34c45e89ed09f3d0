"""Post-hoc corrections for long tails (`posthoc.method`, `podium posthoc RUN`): fitted on a run's OOF predictions,
stored in RUN/posthoc.json, applied by `podium predict`.

A network trained on a long tail learns p_train(y|x), which carries the training prior pi_train(y): rare classes
are under-predicted. Both methods shift log-probabilities by the log prior and renormalise:

    p'(y|x) = softmax(log p(y|x) - tau x log pi_train(y))

  logit_adjust  tau searched over 0, 0.05, ..., tau_max for the best cv.metric on OOF (Menon et al. 2021), or given
  prior         tau = 1: Bayes' rule for a uniform test prior, p(y|x) x (1/C) / pi_train(y), renormalised

pi_train is the class distribution of the OOF labels (the training images of the folds done). Fit on a metric
that rewards the rare classes (balanced_accuracy, f1_macro): on plain accuracy with a test set as skewed as the
training set, the best tau is usually 0, and the search says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from podium.errors import PodiumError
from podium.io import atomic_write_json
from podium.metrics import get_metric, score_all

POSTHOC: dict[str, str] = {
    "none": "the probabilities as the folds predict them",
    "logit_adjust": "log p - tau x log(train prior), tau fitted on OOF for cv.metric (Menon et al. 2021)",
    "prior": "p x uniform prior / train prior, renormalised (Bayes' rule for a balanced test set; tau = 1)",
}
TAU_STEP = 0.05  # spacing of logit_adjust's tau search


def adjust(probs: np.ndarray, log_prior: np.ndarray, tau: float) -> np.ndarray:
    """softmax(log probs - tau x log_prior), row-wise, in float64."""
    z = np.log(np.clip(probs, 1e-12, 1.0)) - tau * np.asarray(log_prior)[None, :]
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def tau_grid(tau_max: float) -> list[float]:
    return [round(t, 4) for t in np.arange(0.0, tau_max + 1e-9, TAU_STEP)]


def fit_tau(probs: np.ndarray, y: np.ndarray, log_prior: np.ndarray, metric: str, tau_max: float) -> tuple[float, dict]:
    """The tau of the grid with the best `metric` on (y, adjusted probs); ties keep the smaller tau."""
    m = get_metric(metric)
    scores = {t: m.fn(y, adjust(probs, log_prior, t)) for t in tau_grid(tau_max)}
    best = 0.0
    for t, s in scores.items():
        if (s > scores[best]) if m.higher_is_better else (s < scores[best]):
            best = t
    return best, scores


def read_oof(run: Path) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """(probs N x C, class index per row, classes, folds) from RUN/oof.csv."""
    from podium.run import RunDir

    rd = RunDir(run)
    classes = rd.classes()
    if not rd.oof_csv.exists():
        raise PodiumError(f"'{run}' has no oof.csv: train at least one fold first (`podium train`).")
    oof = rd.oof(classes)
    y = oof["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    return oof[classes].to_numpy(np.float64), y, classes, sorted(int(k) for k in oof["fold"].unique())


def fit_run(run: Path, method: str, metric: str, tau: float | None = None, tau_max: float = 2.0) -> dict:
    """Fit `method` on RUN's OOF, write RUN/posthoc.json and return it; the OOF scores before and after also go
    into RUN/metrics.json under "posthoc"."""
    if method not in POSTHOC or method == "none":
        raise PodiumError(f"Unknown post-hoc method '{method}'. Choose logit_adjust or prior (`podium list posthoc`).")
    run = Path(run)
    if (run / "config.yaml").exists():
        from podium.config import load_config
        from podium.tasks import require_multiclass

        require_multiclass(load_config(run / "config.yaml"), "podium posthoc")
    probs, y, classes, folds = read_oof(run)
    counts = np.bincount(y, minlength=len(classes))
    log_prior = np.log(np.maximum(counts, 1) / counts.sum())
    search: dict = {}
    if method == "prior":
        tau = 1.0
    elif tau is None:
        tau, search = fit_tau(probs, y, log_prior, metric, tau_max)
    params = {"method": method, "tau": float(tau), "metric": metric, "classes": classes,
              "class_counts": counts.tolist(), "log_prior": log_prior.tolist(), "folds": folds, "n_oof": len(y),
              "oof_before": score_all(y, probs), "oof_after": score_all(y, adjust(probs, log_prior, tau)),
              "search": {str(t): s for t, s in search.items()}}
    metrics = _run_metrics(run)  # read before anything is written: a damaged file stops the command first
    atomic_write_json(run / "posthoc.json", params)
    if metrics is not None:  # the run's scores say what the correction does to them
        metrics["posthoc"] = {k: params[k] for k in ("method", "tau", "metric", "oof_before", "oof_after")}
        atomic_write_json(run / "metrics.json", metrics)
    return params


def _run_metrics(run: Path) -> dict | None:
    """RUN/metrics.json when the run has one (a PodiumError naming it when it is damaged)."""
    from podium.run import RunDir

    return RunDir(run).metrics() if (run / "metrics.json").exists() else None


def load_posthoc(run: Path) -> dict | None:
    path = Path(run) / "posthoc.json"
    return json.loads(path.read_text()) if path.exists() else None


def apply_posthoc(probs: np.ndarray, params: dict) -> np.ndarray:
    return adjust(probs, np.asarray(params["log_prior"]), params["tau"])


def summary(params: dict) -> str:
    """One line: method, tau, and the fitted metric on OOF before -> after."""
    m = params["metric"]
    return (f"post-hoc {params['method']} (tau {params['tau']:g}): OOF {m} {params['oof_before'][m]:.4f} -> "
            f"{params['oof_after'][m]:.4f}")

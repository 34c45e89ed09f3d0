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

import numpy as np

from podium.metrics import get_metric
from podium.registry import Entry, Registry

# build: none (podium.run.decisions fits a method on a run's OOF: logit_adjust searches tau, prior takes tau = 1)
POSTHOC = Registry("posthoc", "posthoc.method", [
    Entry("none", "the probabilities as the folds predict them"),
    Entry("logit_adjust", "log p - tau x log(train prior), tau fitted on OOF for cv.metric (Menon et al. 2021)"),
    Entry("prior", "p x uniform prior / train prior, renormalised (Bayes' rule for a balanced test set; tau = 1)"),
], noun="post-hoc method")
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


def apply_posthoc(probs: np.ndarray, params: dict) -> np.ndarray:
    return adjust(probs, np.asarray(params["log_prior"]), params["tau"])


def summary(params: dict) -> str:
    """One line: method, tau, and the fitted metric on OOF before -> after."""
    m = params["metric"]
    return (f"post-hoc {params['method']} (tau {params['tau']:g}): OOF {m} {params['oof_before'][m]:.4f} -> "
            f"{params['oof_after'][m]:.4f}")

"""A run's decisions, fitted on its OOF and read by predict: post-hoc correction (RUN/posthoc.json), multi-label
thresholds (RUN/thresholds.json), and the run's task with them (`run_task`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from podium.config import Config
from podium.errors import PodiumError
from podium.metrics import score_all
from podium.posthoc import POSTHOC, adjust, fit_tau
from podium.run.rundir import RunDir
from podium.tasks import Multiclass, make_task, require_multiclass


def read_oof(run: Path) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """(probs N x C, class index per row, classes, folds) from RUN/oof.csv."""
    rd = RunDir(run)
    classes = rd.classes()
    if not rd.oof_csv.exists():
        raise PodiumError(f"'{run}' has no {rd.oof_csv.name}: train at least one fold first (`podium train`).")
    oof = rd.oof(classes)
    y = oof["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    return oof[classes].to_numpy(np.float64), y, classes, sorted(int(k) for k in oof["fold"].unique())


def fit_run(run: Path, method: str, metric: str, tau: float | None = None, tau_max: float = 2.0) -> dict:
    """Fit `method` on RUN's OOF, write RUN/posthoc.json and return it; the OOF scores before and after also go
    into RUN/metrics.json under "posthoc"."""
    if method not in POSTHOC or method == "none":
        raise PodiumError(f"Unknown post-hoc method '{method}'. Choose logit_adjust or prior (`podium list posthoc`).")
    rd = RunDir(run)
    if rd.config.exists():
        require_multiclass(rd.load_config(), "podium posthoc")
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
    # read before anything is written: a damaged file stops the command first
    metrics = rd.metrics() if rd.metrics_json.exists() else None
    rd.write_posthoc(params)
    if metrics is not None:  # the run's scores say what the correction does to them
        metrics["posthoc"] = {k: params[k] for k in ("method", "tau", "metric", "oof_before", "oof_after")}
        rd.write_metrics(metrics)
    return params


def load_posthoc(run: Path) -> dict | None:
    return RunDir(run).posthoc()


def fit_run_thresholds(run: Path, task, metric: str, y: np.ndarray, probs: np.ndarray, folds: list[int]) -> dict:
    """Fit on the run's merged OOF, write RUN/thresholds.json, add before/after to metrics.json; returns the file."""
    rd = RunDir(run)
    task.set_decision(None)
    before = task.score(y, probs)
    decision = task.fit_decision(y, probs, metric)
    task.set_decision(decision)
    after = task.score(y, probs)
    params = {**decision, "metric": metric, "folds": folds, "n_oof": len(y), "oof_before": before, "oof_after": after}
    rd.write_thresholds(params)
    if rd.metrics_json.exists():
        metrics = rd.metrics()
        metrics["thresholds"] = {"metric": metric, "oof_before": before[metric], "oof_after": after[metric]}
        rd.write_metrics(metrics)
    return params


def run_task(run: Path, cfg: Config | None = None) -> Multiclass:
    """The task of a run folder (config.yaml, classes.json), with its fitted decision (thresholds.json) set."""
    rd = RunDir(run)
    cfg = cfg or rd.load_config()
    task = make_task(cfg.data, rd.classes())
    decision = rd.thresholds()
    if decision is not None:
        task.set_decision(decision)
    return task


def posthoc_for(run: Path, cfg: Config, folds: list[int]) -> dict | None:
    """RUN/posthoc.json when the run has one; refused when it was fitted on other folds than those predicting."""
    rd = RunDir(run)
    params = rd.posthoc()
    if params is None:
        if cfg.posthoc.method != "none":
            raise PodiumError(f"The run's config sets posthoc.method={cfg.posthoc.method} but '{run}' has no "
                              f"{rd.posthoc_json.name}: fit it with `podium posthoc {run}`, or pass --no-posthoc.")
        return None
    if params.get("folds") != folds:
        raise PodiumError(f"'{rd.posthoc_json}' was fitted on the OOF of folds {params['folds']}, but folds {folds} "
                          f"are finished now: refit it with `podium posthoc {run}`, or pass --no-posthoc.")
    return params

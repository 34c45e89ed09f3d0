"""Merge every finished fold's OOF into RUN/oof.csv and score it into RUN/metrics.json (idempotent: any machine
that finishes a fold re-merges whatever folds are finished)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from podium.run.rundir import RunDir


def merge_folds(rd: Path, cv_metric: str, task=None) -> dict:
    """Merge every finished fold's OOF into oof.csv and score them (by `task`, default the run's) into metrics.json.
    Multi-label scores use the 0.5 thresholds: the fitted ones (thresholds.json) would flatter the OOF."""
    from podium.run.decisions import run_task

    run = RunDir(rd)
    classes = run.classes()
    task = task or run_task(rd)
    task.set_decision(None)
    n_folds = run.folds()["fold"].nunique()
    parts = [run.fold_dir(k).oof(classes) for k in run.finished_folds() if run.fold_dir(k).oof_csv.exists()]
    if not parts:
        return {}
    oof = pd.concat(parts, ignore_index=True)

    def scores(df: pd.DataFrame) -> dict:
        s = task.score(task.parse(df["label"]), df[classes].to_numpy(dtype=np.float64))
        return {**s, "cv": s[cv_metric]}

    per_fold = {f"fold{int(k)}": {**scores(df), "n": len(df)} for k, df in oof.groupby("fold")}
    fold_cv = [v["cv"] for v in per_fold.values()]
    metrics = {"cv_metric": cv_metric, "higher_is_better": task.metrics[cv_metric].higher_is_better,
               "folds_done": sorted(int(k) for k in oof["fold"].unique()), "n_folds": n_folds,
               "complete": oof["fold"].nunique() == n_folds, "oof": {**scores(oof), "n": len(oof)},
               "cv": scores(oof)["cv"], "cv_fold_std": float(np.std(fold_cv)), "folds": per_fold}
    run.write_oof(oof.sort_values("id"))
    run.write_metrics(metrics)
    return metrics

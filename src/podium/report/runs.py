"""`podium runs [OUTPUT_DIR]`: a leaderboard of every run folder under OUTPUT_DIR, best CV first.

Read from each run's config.yaml (as plain YAML, so runs made by older or newer podium versions still list),
metrics.json and fold<k>/done.json. Runs are ranked within their CV metric (a log loss and an accuracy do not
rank against each other); runs without a finished fold come last within their metric.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import yaml
from rich import box
from rich.console import Console
from rich.table import Table

from podium.errors import PodiumError
from podium.io import atomic_write_csv

COLUMNS = ["name", "model", "image_size", "loss", "cv_metric", "cv", "cv_fold_std", "folds", "wall_s", "date", "path"]


def _loss(train: dict) -> str:
    name = str(train.get("loss", "cross_entropy"))
    args = train.get("loss_args") or {}
    smoothing = args.get("label_smoothing", train.get("label_smoothing"))
    return f"{name} (ls {smoothing:g})" if isinstance(smoothing, (int, float)) and smoothing else name


def run_row(rd: Path) -> dict:
    raw = yaml.safe_load((rd / "config.yaml").read_text()) or {}
    metrics = json.loads((rd / "metrics.json").read_text()) if (rd / "metrics.json").exists() else {}
    done = [json.loads(p.read_text()) for p in sorted(rd.glob("fold*/done.json"))]
    stamp = max((p.stat().st_mtime for p in [rd / "config.yaml", *rd.glob("fold*/done.json")]), default=0)
    n_folds = metrics.get("n_folds") or (raw.get("cv") or {}).get("n_folds", "?")
    return {"name": rd.name, "model": (raw.get("model") or {}).get("name", "?"),
            "image_size": (raw.get("data") or {}).get("image_size"), "loss": _loss(raw.get("train") or {}),
            "cv_metric": metrics.get("cv_metric", (raw.get("cv") or {}).get("metric", "accuracy")),
            "cv": metrics.get("cv"), "cv_fold_std": metrics.get("cv_fold_std"),
            "higher_is_better": metrics.get("higher_is_better", True),
            "folds": f"{len(done)}/{n_folds}", "wall_s": round(sum(d.get("seconds", 0.0) for d in done), 1),
            "date": datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M"), "path": str(rd)}


def collect_runs(output_dir: Path | str) -> pd.DataFrame:
    """One row per run folder (a folder holding config.yaml), ranked: best CV first within each metric."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise PodiumError(f"'{output_dir}' is not a folder. Pass the output_dir your runs were written to "
                          "(default: runs).")
    rows = [run_row(d) for d in sorted(output_dir.iterdir()) if (d / "config.yaml").is_file()]
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "higher_is_better"])
    if frame.empty:
        return frame[COLUMNS]
    frame["_key"] = frame["cv"].astype(float) * frame["higher_is_better"].map({True: -1.0, False: 1.0})
    frame["_n"] = frame.groupby("cv_metric")["name"].transform("size")
    frame = frame.sort_values(["_n", "cv_metric", "_key", "name"], ascending=[False, True, True, True],
                              na_position="last")
    return frame[COLUMNS].reset_index(drop=True)


def runs_table(frame: pd.DataFrame, title: str) -> Table:
    metrics = frame["cv_metric"].unique()
    if len(metrics) == 1:
        title += f" (CV = OOF {metrics[0]})"
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col, justify in [("#", "right"), ("name", "left"), ("model", "left"), ("px", "right"), ("loss", "left"),
                         ("CV", "right"), ("± std", "right"), ("folds", "right"), ("wall", "right"),
                         ("date", "left")]:
        table.add_column(col, justify=justify, overflow="fold", no_wrap=col not in ("name", "model", "loss"))
    for i, r in enumerate(frame.itertuples(index=False), 1):
        finished = r.cv is not None and r.cv == r.cv
        score = (f"{r.cv:.4f}" if len(metrics) == 1 else f"{r.cv_metric} {r.cv:.4f}") if finished else "-"
        table.add_row(str(i), r.name, r.model, str(r.image_size), r.loss, score,
                      f"{r.cv_fold_std:.4f}" if finished else "", r.folds, f"{r.wall_s:.0f} s", r.date[5:])
    return table


def list_runs(output_dir: Path | str = "runs", csv: Path | str | None = None,
              console: Console | None = None) -> pd.DataFrame:
    """Print the leaderboard and write it as CSV (default OUTPUT_DIR/leaderboard.csv)."""
    frame = collect_runs(output_dir)
    console = console or Console()
    if frame.empty:
        console.print(f"No runs in {output_dir} (a run is a folder holding config.yaml).")
        return frame
    csv = Path(csv) if csv is not None else Path(output_dir) / "leaderboard.csv"
    atomic_write_csv(csv, frame)
    console.print(runs_table(frame, f"runs in {output_dir}"))
    console.print(f"written to {csv}")
    return frame

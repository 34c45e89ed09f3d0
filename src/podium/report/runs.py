"""`podium runs [OUTPUT_DIR]`: a leaderboard of every run folder under OUTPUT_DIR, best CV first.

Read from each run's config.yaml (as plain YAML, so runs made by older or newer podium versions still list),
metrics.json, fold<k>/done.json and data.json. Runs are ranked within their CV metric (a log loss and an accuracy do
not rank against each other); runs without a finished fold come last within their metric. The `data` column is the
first 8 hex digits of the data version each run recorded (RunDir.write_data; "-" for runs made before podium
recorded it); a run trained on other data than the newest run is flagged: its CV score does not compare.
"""

from __future__ import annotations

from datetime import datetime
from numbers import Real
from pathlib import Path

import pandas as pd
import yaml
from rich import box
from rich.console import Console
from rich.table import Table

from podium.errors import PodiumError, fmt_list
from podium.io import atomic_write_csv
from podium.run.files import METRICS
from podium.run.outputs import check_out
from podium.run.rundir import RunDir

COLUMNS = ["name", "model", "image_size", "loss", "cv_metric", "cv", "cv_fold_std", "folds", "wall_s", "date", "data",
           "data_note", "path", "problem"]  # problem: why a broken run could not be read ("" for the others)
OTHER_DATA = "trained on other data than"  # data_note: OTHER_DATA <newest run> (data <its version>)


def _loss(train: dict) -> str:
    name = str(train.get("loss", "cross_entropy"))
    args = train.get("loss_args") or {}
    smoothing = args.get("label_smoothing", train.get("label_smoothing"))
    return f"{name} (ls {smoothing:g})" if isinstance(smoothing, (int, float)) and smoothing else name


def _mapping(value, path: Path, what: str) -> dict:
    if not isinstance(value, dict):
        raise PodiumError(f"'{path}' must hold {what}")
    return value


def _read_row(rd: Path) -> dict:
    """The row of a readable run; a PodiumError naming the file that is not."""
    run = RunDir(rd)
    try:
        raw = _mapping(yaml.safe_load(run.config.read_text()) or {}, run.config, "a mapping of config keys")
    except yaml.YAMLError as exc:
        raise PodiumError(f"'{run.config}' is not valid YAML ({str(exc).splitlines()[0]})") from None
    metrics = run.read_json(METRICS) if run.metrics_json.exists() else {}
    _mapping(metrics, run.metrics_json, "the run's scores as a mapping (train.merge_folds writes it)")
    for key, kind in (("cv", Real), ("cv_fold_std", Real), ("cv_metric", str)):
        if key in metrics and not isinstance(metrics[key], kind):
            raise PodiumError(f"'{run.metrics_json}' has a {key} of the wrong type ({metrics[key]!r}). To get it back, "
                              f"{run.fix(METRICS)}.")
    done = [run.done(k) for k in run.finished_folds()]
    version = run.data_version() or ""
    n_folds = metrics.get("n_folds") or (raw.get("cv") or {}).get("n_folds", "?")
    return {"name": rd.name, "model": (raw.get("model") or {}).get("name", "?"),
            "image_size": (raw.get("data") or {}).get("image_size"), "loss": _loss(raw.get("train") or {}),
            "cv_metric": metrics.get("cv_metric", (raw.get("cv") or {}).get("metric", "accuracy")),
            "cv": metrics.get("cv"), "cv_fold_std": metrics.get("cv_fold_std"),
            "higher_is_better": metrics.get("higher_is_better", True),
            "folds": f"{len(done)}/{n_folds}", "wall_s": round(sum(d.get("seconds", 0.0) for d in done), 1),
            "date": _date(rd), "data": version[:8], "data_note": "", "path": str(rd), "problem": "",
            "_version": version}


def _stamp(rd: Path) -> float:
    """When the run last changed: its config written, or a fold finished."""
    run = RunDir(rd)
    return max((p.stat().st_mtime for p in [run.config, *(run.done_json(k) for k in run.finished_folds())]),
               default=0)


def _date(rd: Path) -> str:
    return datetime.fromtimestamp(_stamp(rd)).strftime("%Y-%m-%d %H:%M")


def run_row(rd: Path) -> dict:
    """One leaderboard row. A run whose files cannot be read is listed as broken, its `problem` naming the file:
    one damaged run never hides the others."""
    try:
        return _read_row(rd)
    except (PodiumError, OSError, AttributeError, TypeError) as exc:  # the types: a config section that is no mapping
        return {**dict.fromkeys(COLUMNS), "name": rd.name, "model": "?", "loss": "?", "cv_metric": "?", "folds": "?",
                "wall_s": 0.0, "date": _date(rd), "data": "", "data_note": "", "path": str(rd),
                "higher_is_better": True, "_version": "",
                "problem": str(exc) if isinstance(exc, PodiumError) else f"'{rd}' cannot be read ({exc})"}


def _run_folders(output_dir: Path) -> list[Path]:
    """The run folders (folders holding a config.yaml) directly under output_dir."""
    return [d for d in sorted(output_dir.iterdir()) if RunDir(d).config.is_file()] if output_dir.is_dir() else []


def flag_other_data(frame: pd.DataFrame) -> pd.DataFrame:
    """data_note = "trained on other data than <newest run> (data <its version>)" on each run whose data version
    differs from the newest run's (runs without a version are not judged)."""
    known = frame[frame["_version"] != ""]
    if known.empty:
        return frame
    newest = known.loc[known["path"].map(lambda p: _stamp(Path(p))).idxmax()]
    other = (frame["_version"] != "") & (frame["_version"] != newest["_version"])
    frame.loc[other, "data_note"] = f"{OTHER_DATA} {newest['name']} (data {newest['data']})"
    return frame


def collect_runs(output_dir: Path | str) -> pd.DataFrame:
    """One row per run folder (a folder holding config.yaml), ranked: best CV first within each metric, broken
    runs (`problem` says why) last."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise PodiumError(f"'{output_dir}' is not a folder. Pass the output_dir your runs were written to "
                          "(default: runs).")
    rows = [run_row(d) for d in _run_folders(output_dir)]
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "higher_is_better", "_version"])
    if frame.empty:
        return frame[COLUMNS]
    frame = flag_other_data(frame)
    frame["_broken"] = frame["problem"] != ""
    frame["_key"] = frame["cv"].astype(float) * frame["higher_is_better"].map({True: -1.0, False: 1.0})
    frame["_n"] = frame.groupby("cv_metric")["name"].transform("size")
    frame = frame.sort_values(["_broken", "_n", "cv_metric", "_key", "name"], ascending=[True, False, True, True, True],
                              na_position="last")
    return frame[COLUMNS].reset_index(drop=True)


def _data_versions(frame: pd.DataFrame) -> set[str]:
    """The short data versions of the readable runs ("" for a run that recorded none)."""
    return set(frame.loc[frame["problem"] == "", "data"].fillna(""))


def runs_table(frame: pd.DataFrame, title: str) -> Table:
    """The leaderboard; its data column only when the runs were not all trained on the same data (the table is
    already as wide as an 80-column terminal: list_runs says the one version otherwise)."""
    metrics = frame.loc[frame["problem"] == "", "cv_metric"].unique()  # a broken run has no metric
    if len(metrics) == 1:
        title += f" (CV = OOF {metrics[0]})"
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    show_data = len(_data_versions(frame)) > 1
    for col, justify in [("#", "right"), ("name", "left"), ("model", "left"), ("px", "right"), ("loss", "left"),
                         ("CV", "right"), ("± std", "right"), ("folds", "right"), ("wall", "right"),
                         ("date", "left"), *([("data", "left")] if show_data else [])]:
        table.add_column(col, justify=justify, overflow="fold", no_wrap=col not in ("name", "model", "loss"))
    for i, r in enumerate(frame.itertuples(index=False), 1):
        finished = r.cv is not None and r.cv == r.cv
        score = (f"{r.cv:.4f}" if len(metrics) == 1 else f"{r.cv_metric} {r.cv:.4f}") if finished else "-"
        score = "broken" if r.problem else score
        data = (r.data + (" *" if r.data_note else "")) if r.data else "-"
        table.add_row(str(i), r.name, r.model, str(r.image_size), r.loss, score,
                      f"{r.cv_fold_std:.4f}" if finished else "", r.folds, f"{r.wall_s:.0f} s", r.date[5:],
                      *([data] if show_data else []))
    return table


def list_runs(output_dir: Path | str = "runs", csv: Path | str | None = None,
              console: Console | None = None, overwrite: bool = False) -> pd.DataFrame:
    """Print the leaderboard and write it as CSV (default OUTPUT_DIR/leaderboard.csv, replaced; another existing
    `csv` only with `overwrite`)."""
    default = Path(output_dir) / "leaderboard.csv"
    if csv is not None:  # before the work: a refused --csv costs nothing
        check_out(csv, overwrite, {f"the run '{d.name}'": d for d in _run_folders(Path(output_dir))}, what="--csv",
                  allowed=(default,))
    frame = collect_runs(output_dir)
    console = console or Console()
    if frame.empty:
        console.print(f"No runs in {output_dir} (a run is a folder `podium train` made, holding its config).")
        return frame
    csv = Path(csv) if csv is not None else default
    atomic_write_csv(csv, frame)
    console.print(runs_table(frame, f"runs in {output_dir}"))
    versions = _data_versions(frame)
    flagged = frame[frame["data_note"] != ""]
    if len(flagged):  # one note for all: every flagged run differs from the same newest run
        console.print(f"* {fmt_list(list(flagged['name']))}: {flagged['data_note'].iloc[0]}, the newest run: CV "
                      "scores on other data do not compare.", highlight=False, markup=False)
    elif len(versions) == 1 and "" not in versions:
        console.print(f"data: every run was trained on the same data (version {versions.pop()})", highlight=False,
                      markup=False)
    for r in frame[frame["problem"] != ""].itertuples(index=False):
        console.print(f"broken run {r.name}: {r.problem}", highlight=False, markup=False)
    console.print(f"written to {csv}")
    return frame

"""Terminal summaries of a run's scores (rich tables), used by `podium train` and the demo."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

SCORES = ("accuracy", "f1_macro", "f1_weighted", "logloss")  # the scores every run has had from the start


def score_names(metrics: dict) -> list[str]:
    """The scores a metrics.json holds (those of podium.metrics when it was written), in their order."""
    return [k for k in metrics.get("oof", {}) if k not in ("n", "cv")] or list(SCORES)


def metrics_table(metrics: dict, title: str) -> Table:
    names = score_names(metrics)
    table = Table(title=title)
    table.add_column("fold")
    table.add_column("n", justify="right")
    for name in names:
        table.add_column(name + (" (cv)" if name == metrics.get("cv_metric") else ""), justify="right")
    for fold, s in metrics.get("folds", {}).items():
        table.add_row(fold, str(s["n"]), *(f"{s[n]:.4f}" for n in names))
    oof = metrics.get("oof")
    if oof:
        label = "OOF" if metrics.get("complete") else f"OOF (folds {metrics['folds_done']} of {metrics['n_folds']})"
        table.add_row(f"[bold]{label}", str(oof["n"]), *(f"[bold]{oof[n]:.4f}" for n in names))
    return table


def print_metrics(metrics: dict, run: Path, console: Console | None = None) -> None:
    console = console or Console()
    if not metrics:
        console.print(f"No finished fold in {run}.")
        return
    console.print(metrics_table(metrics, f"{run}"))
    console.print(f"cv {metrics['cv_metric']} = [bold]{metrics['cv']:.4f}[/] ± {metrics['cv_fold_std']:.4f} "
                  f"(std over folds); files in {run}")


def _num(value) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def print_study(summary: dict, console: Console | None = None, top: int = 20) -> None:
    """`podium tune`'s summary: the trials (best first), the confirmed finalists, importances, best.yaml."""
    console = console or Console()
    rows = summary["trials"]
    keys = sorted({k for r in rows for k in r["params"]})
    table = Table(title=f"study {summary['study']} ({summary['direction']}): {len(rows)} trials"
                        + (f", best {top} shown" if len(rows) > top else ""))
    for col in ("trial", "state", "value", "epochs", "seconds", *keys):
        table.add_column(col, justify="left" if col in ("trial", "state") else "right")
    for r in rows[:top]:
        value = r["value"] if r["value"] is not None else r["last"]
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        table.add_row(str(r["trial"]), r["state"], _num(value), str(r["epochs"]), seconds,
                      *(_num(r["params"].get(k)) for k in keys))
    console.print(table)
    if summary["confirmed"]:
        ranked = Table(title="confirmed on every fold (OOF CV ± fold std)")
        for col in ("trial", "OOF CV", "± std", "search value"):
            ranked.add_column(col, justify="right")
        for r in summary["confirmed"]:
            ranked.add_row(str(r["trial"]), f"{r['cv']:.4f}", f"{r['cv_fold_std']:.4f}", _num(r["search_value"]))
        console.print(ranked)
    if summary.get("importances"):
        console.print("importances: " + ", ".join(f"{k} {v:.2f}" for k, v in summary["importances"].items()))
    if summary["confirmed"]:
        best = summary["confirmed"][0]
        console.print(f"best: trial {best['trial']}, " + ", ".join(f"{k}={v}" for k, v in best["params"].items())
                      + f"; OOF CV {best['cv']:.4f} ± {best['cv_fold_std']:.4f}; its run: {best['run']}",
                      markup=False, highlight=False)
    if summary.get("best_yaml"):
        console.print(f"best config, ready for `podium train`: {summary['best_yaml']}", markup=False, highlight=False)
    if summary.get("folder"):
        console.print(f"study folder: {summary['folder']}")

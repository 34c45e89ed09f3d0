"""Terminal summaries of a run's scores (rich tables)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

SCORES = ("accuracy", "f1_macro", "f1_weighted", "logloss")


def metrics_table(metrics: dict, title: str) -> Table:
    table = Table(title=title)
    table.add_column("fold")
    table.add_column("n", justify="right")
    for name in SCORES:
        table.add_column(name + (" (cv)" if name == metrics.get("cv_metric") else ""), justify="right")
    for fold, s in metrics.get("folds", {}).items():
        table.add_row(fold, str(s["n"]), *(f"{s[n]:.4f}" for n in SCORES))
    oof = metrics.get("oof")
    if oof:
        label = "OOF" if metrics.get("complete") else f"OOF (folds {metrics['folds_done']} of {metrics['n_folds']})"
        table.add_row(f"[bold]{label}", str(oof["n"]), *(f"[bold]{oof[n]:.4f}" for n in SCORES))
    return table


def print_metrics(metrics: dict, run: Path, console: Console | None = None) -> None:
    console = console or Console()
    if not metrics:
        console.print(f"No finished fold in {run}.")
        return
    console.print(metrics_table(metrics, f"{run}"))
    console.print(f"cv {metrics['cv_metric']} = [bold]{metrics['cv']:.4f}[/] ± {metrics['cv_fold_std']:.4f} "
                  f"(std over folds); files in {run}")

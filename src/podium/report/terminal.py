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

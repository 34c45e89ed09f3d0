"""What a finished run logs to the experiment trackers (podium.engine.tracking): scores, config, OOF and the
report as artifacts."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from podium.config import Config
from podium.engine.tracking import mlflow_log_run, wandb_log_run
from podium.errors import PodiumError
from podium.report.build import build_report


def log_run(cfg: Config, run_dir: Path, metrics: dict) -> None:
    """Called once the folds asked for are trained and merged (scores, config, OOF as artifacts)."""
    if not metrics or not (cfg.track.mlflow or cfg.track.wandb):
        return
    _write_report(run_dir)
    if cfg.track.mlflow:
        mlflow_log_run(cfg, run_dir, metrics)
    if cfg.track.wandb:
        wandb_log_run(cfg, run_dir, metrics)


def _write_report(run_dir: Path) -> None:
    try:
        build_report(run_dir)
    except (PodiumError, OSError, ValueError, RuntimeError) as exc:  # tracking must not lose a trained run
        Console(stderr=True).print(f"[yellow]report not written ({exc}); the trackers get the other files[/]")

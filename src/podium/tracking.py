"""Experiment tracking: the loggers each fold trains with, and what a finished run logs.

CSV (fold<k>/metrics.csv) and TensorBoard are always written; other trackers are opt-in (`track.*`).
"""

from __future__ import annotations

from pathlib import Path

from podium.config import Config


def fold_loggers(cfg: Config, fold_dir: Path, fold: int) -> list:
    """Lightning loggers for one fold."""
    from lightning.pytorch.loggers import TensorBoardLogger

    return [TensorBoardLogger(fold_dir, name="tensorboard", version="")]


def log_run(cfg: Config, run_dir: Path, metrics: dict) -> None:
    """Called once the folds asked for are trained and merged (scores, config, OOF as artifacts)."""

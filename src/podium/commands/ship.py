"""`podium export`, `podium serve`, `podium package`: thin calls into podium.ship (docs/shipping.md)."""

from __future__ import annotations

from pathlib import Path

from podium.ship.export import Exported, export_run


def export(run: Path, folds: list[int] | None = None, tta: str | None = None, how: str | None = None,
           fmt: str = "onnx", out: Path | None = None, overwrite: bool = False, posthoc: bool = True) -> Exported:
    """The run as one checked ONNX graph + manifest.json (podium.ship.export)."""
    return export_run(run, folds=folds, tta=tta, how=how, fmt=fmt, out=out, overwrite=overwrite, posthoc=posthoc)

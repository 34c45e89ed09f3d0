"""The marker every run folder carries from its creation: RUN/.podium-run, JSON {podium, created, kind}.

It is how podium knows a folder is its own: `podium train --overwrite` removes only a folder that carries it, and
no `--out` ever writes a file inside one (kind "train": a run made by `podium train`; "ensemble": a folder made by
`podium ensemble`).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from podium import __version__
from podium.io import atomic_write_json
from podium.run.writer import check_writer

MARKER = ".podium-run"


def write_marker(folder: Path | str, kind: str = "train") -> Path:
    """Mark `folder` (created if missing) as made by podium; returns the marker's path."""
    path = Path(folder) / MARKER
    check_writer(path)
    atomic_write_json(path, {"podium": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             "kind": kind})
    return path


def is_podium_run(path: Path | str) -> bool:
    """Whether `path` is a folder podium made (it carries the marker)."""
    return (Path(path) / MARKER).is_file()


def marker_kind(path: Path | str) -> str | None:
    """'train' or 'ensemble' for a folder podium made, None for any other; a marker whose text was damaged still
    marks podium's folder, of kind 'unknown'."""
    marker = Path(path) / MARKER
    if not marker.is_file():
        return None
    try:
        kind = json.loads(marker.read_text()).get("kind", "train")
    except (ValueError, AttributeError, OSError):
        return "unknown"
    return kind if isinstance(kind, str) else "unknown"


def run_above(path: Path | str) -> Path | None:
    """The nearest folder at or above `path` (resolved) that carries the marker, or None."""
    path = Path(path).resolve()
    return next((p for p in (path, *path.parents) if is_podium_run(p)), None)

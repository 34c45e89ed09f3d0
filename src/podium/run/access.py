"""Folder: what RunDir and FoldDir share. Reads are checked (a damaged file is a PodiumError naming it and how to get
it back), writes are atomic (podium.io), and both the run and each fold keep their MLflow run id (mlflow.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from podium.errors import PodiumError
from podium.io import atomic_write_csv, atomic_write_json, atomic_write_text
from podium.run.files import MLFLOW
from podium.run.mirror import written
from podium.run.writer import check_writer


class Folder:
    """A folder podium writes: its files by name, checked readers, atomic writers."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.path}')"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def fix(self, name: str) -> str:
        """How to get a good `name` back (RunDir and FoldDir say which command)."""
        raise NotImplementedError

    def wrong(self, name: str, why: str) -> PodiumError:
        """The error for a file that exists but is not what podium wrote: names it, why, and the fix."""
        return PodiumError(f"'{self.path / name}' {why}. To get it back, {self.fix(name)}.")

    def _missing(self, name: str) -> PodiumError:
        return PodiumError(f"'{self.path / name}' is missing. To get it back, {self.fix(name)}.")

    # ------------------------------------------------------------------ readers
    def read_json(self, name: str) -> Any:
        """`name` parsed; missing or not JSON: a PodiumError naming the file and the fix."""
        path = self.path / name
        if not path.is_file():
            raise self._missing(name)
        try:
            return json.loads(path.read_text())
        except (ValueError, OSError) as exc:  # UnicodeDecodeError is a ValueError
            raise self.wrong(name, f"is not valid JSON ({exc})") from None

    def read_mapping(self, name: str, what: str, required: bool = True) -> dict | None:
        """`name` as a JSON mapping (`what` it holds, for the message); None when it is absent and not `required`."""
        if not required and not (self.path / name).exists():
            return None
        value = self.read_json(name)
        if not isinstance(value, dict):
            raise self.wrong(name, f"must be a mapping ({what})")
        return value

    def read_csv(self, name: str, columns: list[str], text: tuple[str, ...] = ("id", "label")):
        """`name` as a table with at least `columns` (`text` columns kept as written: ids like '007');
        missing, unreadable or without those columns: a PodiumError naming the file and the fix."""
        import pandas as pd

        path = self.path / name
        if not path.is_file():
            raise self._missing(name)
        try:
            frame = pd.read_csv(path, dtype={c: str for c in text})
        except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise self.wrong(name, f"is not a readable CSV file ({type(exc).__name__})") from None
        lacking = [c for c in columns if c not in frame.columns]
        if lacking:
            shown = ", ".join(map(str, lacking[:5])) + (f" (+{len(lacking) - 5} more)" if len(lacking) > 5 else "")
            raise self.wrong(name, f"lacks the column(s) {shown}")
        return frame

    def read_oof(self, name: str, classes: list[str]):
        """Out-of-fold predictions: id, fold (integers), label and one probability column per output."""
        import pandas as pd

        frame = self.read_csv(name, ["id", "fold", "label", *classes])
        if not pd.api.types.is_integer_dtype(frame["fold"]):
            raise self.wrong(name, "must hold integer folds in its 'fold' column")
        return frame

    # ------------------------------------------------------------------ writers (atomic: temp file + rename)
    # each on rank 0 of a multi-process run only (podium.run.writer): another rank writing is a bug, and fails
    def write_json(self, name: str, obj) -> Path:
        check_writer(self.path / name)
        atomic_write_json(self.path / name, obj)
        written()  # a running mirror (podium.run.mirror) publishes it now
        return self.path / name

    def write_csv(self, name: str, frame) -> Path:
        check_writer(self.path / name)
        atomic_write_csv(self.path / name, frame)
        written()
        return self.path / name

    def write_text(self, name: str, text: str) -> Path:
        check_writer(self.path / name)
        atomic_write_text(self.path / name, text)
        written()
        return self.path / name

    # ------------------------------------------------------------------ MLflow run id (podium.engine.tracking)
    mlflow_json = property(lambda self: self.path / MLFLOW)

    def tracking_id(self, uri: str) -> str | None:
        """The MLflow run id saved for the tracking store `uri` (None: none yet, or saved for another store)."""
        saved = self.read_mapping(MLFLOW, "tracking_uri and run_id", required=False)
        if saved is None or saved.get("tracking_uri") != uri:
            return None
        if not isinstance(saved.get("run_id"), str):
            raise self.wrong(MLFLOW, "must hold the MLflow run id as text under 'run_id'")
        return saved["run_id"]

    def write_tracking_id(self, uri: str, run_id: str) -> None:
        self.write_json(MLFLOW, {"tracking_uri": uri, "run_id": run_id})

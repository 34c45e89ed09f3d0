"""RunDir: a run folder's files by name, and readers that say which file is wrong and how to fix it.

<output_dir>/<name>/ holds:
  .podium-run                        the marker: made by podium (podium.run.marker)
  config.yaml, folds.csv, classes.json, run.json   what the run was made from, written when it starts
  fold<k>/best.ckpt, last.ckpt       Lightning checkpoints; fold<k>/metrics.csv, oof.csv, done.json
  oof.csv, metrics.json              every finished fold merged, and their scores
  locks/fold<k>.lock                 who trains fold k right now (podium.run.lock)
  test_probs.csv, submission.csv, predict.json, posthoc.json, thresholds.json, report.html   later commands' files
"""

from __future__ import annotations

import json
from numbers import Real
from pathlib import Path
from typing import Any

from podium.errors import PodiumError
from podium.run.marker import MARKER, is_podium_run

# the files a run's merge writes (and `podium train --resume` rewrites from the finished folds)
_MERGED = ("oof.csv", "metrics.json")
# the files written when a run starts, from the config and the data
_STARTED = ("config.yaml", "folds.csv", "classes.json", "run.json")


class RunDir:
    """A run folder: paths of its files, and checked readers. Nothing here writes."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir('{self.path}')"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------------ files
    marker = property(lambda self: self.path / MARKER)
    config = property(lambda self: self.path / "config.yaml")
    classes_file = property(lambda self: self.path / "classes.json")
    run_json = property(lambda self: self.path / "run.json")
    folds_csv = property(lambda self: self.path / "folds.csv")
    oof_csv = property(lambda self: self.path / "oof.csv")
    metrics_json = property(lambda self: self.path / "metrics.json")
    test_probs = property(lambda self: self.path / "test_probs.csv")
    submission = property(lambda self: self.path / "submission.csv")
    report = property(lambda self: self.path / "report.html")

    def fold(self, k: int) -> Path:
        return self.path / f"fold{k}"

    def best_ckpt(self, k: int) -> Path:
        return self.fold(k) / "best.ckpt"

    def last_ckpt(self, k: int) -> Path:
        return self.fold(k) / "last.ckpt"

    def done_json(self, k: int) -> Path:
        return self.fold(k) / "done.json"

    # ------------------------------------------------------------------ state
    def is_podium_run(self) -> bool:
        return is_podium_run(self.path)

    def finished_folds(self) -> list[int]:
        return sorted(int(p.parent.name[4:]) for p in self.path.glob("fold*/done.json") if p.parent.name[4:].isdigit())

    def has_progress(self) -> bool:
        """Whether any fold has a checkpoint or has finished: a run without either lost nothing when replaced."""
        return any(any(self.path.glob(f"fold*/{name}")) for name in ("last.ckpt", "best.ckpt", "done.json"))

    def fix(self, name: str) -> str:
        """How to get a good RUN/`name` back."""
        if name in _MERGED:
            return f"rebuild it from the finished folds with `podium train {self.config} --resume`"
        if name.startswith("fold") and "/" in name:
            k = name[4:name.index("/")]
            return f"retrain that fold: `podium train {self.config} --folds {k} --overwrite`"
        if name in ("test_probs.csv", "predict.json"):
            return f"write it again with `podium predict {self.path}`"
        if name == "posthoc.json":
            return f"fit it again with `podium posthoc {self.path}`"
        if name in _STARTED:
            return ("restore it from a backup, or retrain the run (`podium train CONFIG --overwrite`, or a new "
                    "name=...)")
        return "restore it from a backup, or retrain the run"

    # ------------------------------------------------------------------ readers
    def read_json(self, name: str) -> Any:
        """RUN/`name` parsed; missing or not JSON: a PodiumError naming the file and the fix."""
        path = self.path / name
        if not path.is_file():
            raise PodiumError(f"'{path}' is missing. To get it back, {self.fix(name)}.")
        try:
            return json.loads(path.read_text())
        except (ValueError, OSError) as exc:  # UnicodeDecodeError is a ValueError
            raise PodiumError(f"'{path}' is not valid JSON ({exc}). To get it back, {self.fix(name)}.") from None

    def _wrong(self, name: str, why: str) -> PodiumError:
        return PodiumError(f"'{self.path / name}' {why}. To get it back, {self.fix(name)}.")

    def classes(self) -> list[str]:
        """classes.json: the network's outputs in order, a non-empty list of distinct strings."""
        classes = self.read_json("classes.json")
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise self._wrong("classes.json", "must be a non-empty list of class names (strings), the network's "
                                              "outputs in order")
        if len(set(classes)) != len(classes):
            raise self._wrong("classes.json", "lists a class name twice")
        return classes

    def info(self) -> dict:
        """run.json: {channels, n_train, mean, std}, the model's input as trained."""
        info = self.read_json("run.json")
        if not isinstance(info, dict) or not isinstance(info.get("channels"), int) or info["channels"] < 1:
            raise self._wrong("run.json", "must be a mapping with 'channels' (the images' channel count, 1 or 3)")
        for key in ("mean", "std"):
            if key in info and not (isinstance(info[key], list) and all(isinstance(v, Real) for v in info[key])):
                raise self._wrong("run.json", f"must hold '{key}' as a list of numbers, one per input channel")
        return info

    def metrics(self) -> dict:
        """metrics.json: the merged OOF scores (train.merge_folds)."""
        metrics = self.read_json("metrics.json")
        shape = {"cv_metric": str, "cv": Real, "cv_fold_std": Real, "folds_done": list, "n_folds": int,
                 "complete": bool, "oof": dict, "folds": dict}
        bad = [key for key, kind in shape.items() if not isinstance(metrics, dict) or not isinstance(metrics.get(key), kind)]
        if bad:
            raise self._wrong("metrics.json", f"lacks or has the wrong type for {', '.join(bad)}")
        return metrics

    def read_csv(self, name: str, columns: list[str], text: tuple[str, ...] = ("id", "label")):
        """RUN/`name` as a table with at least `columns` (`text` columns kept as written: ids like '007');
        missing, unreadable or without those columns: a PodiumError naming the file and the fix."""
        import pandas as pd

        path = self.path / name
        if not path.is_file():
            raise PodiumError(f"'{path}' is missing. To get it back, {self.fix(name)}.")
        try:
            frame = pd.read_csv(path, dtype={c: str for c in text})
        except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise self._wrong(name, f"is not a readable CSV file ({type(exc).__name__})") from None
        lacking = [c for c in columns if c not in frame.columns]
        if lacking:
            shown = ", ".join(map(str, lacking[:5])) + (f" (+{len(lacking) - 5} more)" if len(lacking) > 5 else "")
            raise self._wrong(name, f"lacks the column(s) {shown}")
        return frame

    def folds(self):
        """folds.csv: (id, fold) of every training image as the run was trained, folds non-negative integers."""
        import pandas as pd

        frame = self.read_csv("folds.csv", ["id", "fold"], text=("id",))
        if not pd.api.types.is_integer_dtype(frame["fold"]) or (frame["fold"] < 0).any() or frame["id"].duplicated().any():
            raise self._wrong("folds.csv", "must hold each id once with a non-negative integer fold")
        return frame

    def oof(self, classes: list[str], name: str = "oof.csv"):
        """oof.csv (or a TTA OOF file): id, fold, label and one probability column per class."""
        import pandas as pd

        frame = self.read_csv(name, ["id", "fold", "label", *classes])
        if not pd.api.types.is_integer_dtype(frame["fold"]):
            raise self._wrong(name, "must hold integer folds in its 'fold' column")
        return frame

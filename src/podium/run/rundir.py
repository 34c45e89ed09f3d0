"""RunDir: the one owner of a run folder <output_dir>/<name>/ — every path in it, every reader and every writer.

The names live in podium.run.files (docs/run-folder.md lists them with what writes and reads each); a fold's own
files are FoldDir's (podium.run.folddir). Readers are checked: a missing or damaged file is a PodiumError naming
it and how to get it back. Writers are atomic (temp file + rename). Readers take the run's outputs (classes.json:
classes, labels or task:class) and hold no task logic, so multi-label and multi-task runs load the same way.
Files newer than a run (data.json, thresholds.json, posthoc.json, predict.json) are optional: their readers
return None when they are absent. An ensemble folder (`podium ensemble`) is written through RunDir too.
"""

from __future__ import annotations

import hashlib
from numbers import Real
from pathlib import Path

from podium.config import load_config, to_yaml
from podium.errors import PodiumError
from podium.run import files as f
from podium.run.access import Folder
from podium.run.folddir import FoldDir
from podium.run.marker import MARKER, is_podium_run


class RunDir(Folder):
    """A run folder (or an ensemble folder): paths, checked readers, atomic writers."""

    # ------------------------------------------------------------------ paths
    marker = property(lambda self: self.path / MARKER)
    config = property(lambda self: self.path / f.CONFIG)
    classes_file = property(lambda self: self.path / f.CLASSES)
    run_json = property(lambda self: self.path / f.INFO)
    data_json = property(lambda self: self.path / f.DATA)
    folds_csv = property(lambda self: self.path / f.FOLDS)
    oof_csv = property(lambda self: self.path / f.OOF)
    metrics_json = property(lambda self: self.path / f.METRICS)
    thresholds_json = property(lambda self: self.path / f.THRESHOLDS)
    posthoc_json = property(lambda self: self.path / f.POSTHOC)
    test_probs_csv = property(lambda self: self.path / f.TEST_PROBS)
    submission_csv = property(lambda self: self.path / f.SUBMISSION)
    predict_json = property(lambda self: self.path / f.PREDICT)
    report_html = property(lambda self: self.path / f.REPORT)
    suspects_csv = property(lambda self: self.path / f.SUSPECTS)
    ensemble_json = property(lambda self: self.path / f.ENSEMBLE)
    pseudo_json = property(lambda self: self.path / f.PSEUDO)
    pseudo_csv = property(lambda self: self.path / f.PSEUDO_TABLE)
    export_dir = property(lambda self: self.path / f.EXPORT)  # `podium export`'s default --out
    package_dir = property(lambda self: self.path / f.PACKAGE)  # `podium package`'s default --out

    def tta_oof_path(self, views: list[str], how: str) -> Path:
        """RUN/oof_tta-<views>.csv: the OOF predicted again with these TTA views, combined by `how`."""
        return self.path / f.tta_oof_name(views, how)

    def fold(self, k: int) -> Path:
        return self.path / f"fold{k}"

    def fold_dir(self, k: int) -> FoldDir:
        return FoldDir(self.fold(k))

    def best_ckpt(self, k: int) -> Path:
        return self.fold_dir(k).best_ckpt

    def last_ckpt(self, k: int) -> Path:
        return self.fold_dir(k).last_ckpt

    def done_json(self, k: int) -> Path:
        return self.fold_dir(k).done_json

    def fix(self, name: str) -> str:
        """How to get a good RUN/`name` back."""
        return f.fix(self.path, name)

    # ------------------------------------------------------------------ state
    def is_podium_run(self) -> bool:
        return is_podium_run(self.path)

    def is_started(self) -> bool:
        """`podium train` got as far as writing what the run is made from (its config and outputs)."""
        return self.config.is_file() and self.classes_file.is_file()

    def started_folds(self) -> list[int]:
        """Every fold with a folder, finished or not, in order."""
        return sorted(int(p.name[4:]) for p in self.path.glob("fold*") if p.is_dir() and p.name[4:].isdigit())

    def finished_folds(self) -> list[int]:
        return [k for k in self.started_folds() if self.fold_dir(k).is_done()]

    def has_progress(self) -> bool:
        """Whether any fold has a checkpoint or has finished: a run without either lost nothing when replaced."""
        return any(self.fold_dir(k).has_checkpoint() or self.fold_dir(k).is_done() for k in self.started_folds())

    def artifacts(self) -> list[Path]:
        """The files an experiment tracker keeps of a run: config, scores, OOF and report, those that exist."""
        return [p for p in (self.config, self.metrics_json, self.oof_csv, self.report_html) if p.exists()]

    # ------------------------------------------------------------------ what the run was made from
    def load_config(self):
        """config.yaml as a Config; a folder without one is not a run."""
        if not self.config.is_file():
            raise PodiumError(self.not_a_run())
        return load_config(self.config)

    def not_a_run(self) -> str:
        """Why this path is not a run folder, and what to pass instead."""
        if self.path.is_file() and (self.path.parent / f.CONFIG).is_file():
            return (f"'{self.path}' is a file of a run; pass the run folder itself: "
                    f"'{self.path.parent}'.")
        return f"'{self.path}' is not a run folder (no {f.CONFIG}). Pass <output_dir>/<name> of a trained run."

    def write_config(self, cfg) -> None:
        self.write_text(f.CONFIG, to_yaml(cfg))

    def classes(self) -> list[str]:
        """classes.json: the network's outputs in order, a non-empty list of distinct strings."""
        classes = self.read_json(f.CLASSES)
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise self.wrong(f.CLASSES, "must be a non-empty list of class names (strings), the network's outputs in "
                                        "order")
        if len(set(classes)) != len(classes):
            raise self.wrong(f.CLASSES, "lists a class name twice")
        return classes

    def write_classes(self, classes: list[str]) -> None:
        self.write_json(f.CLASSES, list(classes))

    def info(self) -> dict:
        """run.json: {channels, n_train, mean, std, weights}, the model's input as trained; weights (absent in runs
        made before podium recorded them; null: none): what the network started from (podium.models.Weights: name,
        source, input_size, interpolation, mean, std, and the file and its hub revision)."""
        info = self.read_json(f.INFO)
        if not isinstance(info, dict) or not isinstance(info.get("channels"), int) or info["channels"] < 1:
            raise self.wrong(f.INFO, "must be a mapping with 'channels' (the images' channel count, 1 or 3)")
        for key in ("mean", "std"):
            if key in info and not (isinstance(info[key], list) and all(isinstance(v, Real) for v in info[key])):
                raise self.wrong(f.INFO, f"must hold '{key}' as a list of numbers, one per input channel")
        if not isinstance(info.get("weights"), (dict, type(None))):
            raise self.wrong(f.INFO, "must hold 'weights' as a mapping (the starting weights) or null")
        return info

    def write_info(self, channels: int, n_train: int, stats: tuple[tuple, tuple], weights: dict | None = None,
                   image_size: int | None = None) -> None:
        """`image_size`: the input size the folds' best checkpoints were chosen at (train.finetune_size when set),
        the one prediction uses; runs made before podium recorded it predict at data.image_size."""
        record = {"channels": channels, "n_train": n_train, "mean": list(stats[0]), "std": list(stats[1]),
                  "weights": weights}
        self.write_json(f.INFO, record if image_size is None else {**record, "image_size": image_size})

    def input_size(self, fallback: int) -> int:
        """The size the run's models predict at: run.json's image_size, else `fallback` (data.image_size)."""
        size = self.info().get("image_size")
        return size if isinstance(size, int) and size > 0 else fallback

    def folds(self, with_train_only: bool = False):
        """folds.csv: (id, fold) of every labeled training image as the run was trained, folds non-negative integers
        (the split every OOF, CV score and ensemble is made of). `with_train_only`: also the pseudo-labelled images
        of data.pseudo, whose fold is TRAIN_ONLY (-1): they trained in every fold and were validated in none."""
        import pandas as pd

        from podium.data.splits import TRAIN_ONLY  # with pandas, which the run's readers load when first used

        frame = self.read_csv(f.FOLDS, ["id", "fold"], text=("id",))
        folds = frame["fold"]
        if (not pd.api.types.is_integer_dtype(folds) or ((folds < 0) & (folds != TRAIN_ONLY)).any()
                or frame["id"].duplicated().any()):
            raise self.wrong(f.FOLDS, f"must hold each id once with a non-negative integer fold (or {TRAIN_ONLY}: "
                                      "a pseudo-labelled image that only ever trains)")
        return frame if with_train_only else frame[folds >= 0].reset_index(drop=True)

    def write_folds(self, frame) -> None:
        """(id, fold) of every training image, by id (fold TRAIN_ONLY: a pseudo-labelled image of data.pseudo)."""
        self.write_csv(f.FOLDS, frame[["id", "fold"]].sort_values("id"))

    # ------------------------------------------------------------------ the data it was trained on (data.json)
    @staticmethod
    def data_record(table: str, images: str, cache: str, n_train: int, exclude: dict | None = None) -> dict:
        """What data.json holds: `table` (podium.data.sources.table_fingerprint: ids, labels, paths), `images` (the
        decode cache's fingerprint of the image files: paths, sizes, mtimes), `cache` (that with the decode
        settings: the cache folder's key) and the version: the table's and the files' together, so runs at another
        image size on the same data share it. `exclude`: data.exclude's record (file, sha256, dropped, relabelled),
        kept only when the run has one."""
        version = hashlib.sha256(f"podium-data 1\n{table}\n{images}\n".encode()).hexdigest()
        record = {"version": version, "table": table, "images": images, "cache": cache, "n_train": n_train}
        return record if exclude is None else {**record, "exclude": exclude}

    def write_data(self, record: dict) -> None:
        self.write_json(f.DATA, record)

    def data(self) -> dict | None:
        """data.json; None for a run made before podium recorded its data."""
        record = self.read_mapping(f.DATA, "the data version and its fingerprints", required=False)
        if record is not None and not (isinstance(record.get("version"), str) and len(record["version"]) == 64):
            raise self.wrong(f.DATA, "must hold the data version (64 hex digits) under 'version'")
        return record

    def data_version(self) -> str | None:
        record = self.data()
        return None if record is None else record["version"]

    # ------------------------------------------------------------------ folds (fold<k>/: FoldDir)
    def done(self, k: int) -> dict | None:
        return self.fold_dir(k).done()

    def write_done(self, k: int, record: dict) -> None:
        self.fold_dir(k).write_done(record)

    def curves(self, k: int):
        return self.fold_dir(k).curves()

    # ------------------------------------------------------------------ merged OOF and scores
    def oof(self, classes: list[str], name: str = f.OOF):
        """oof.csv (or a TTA OOF file, by `name`): id, fold, label, one probability column per output."""
        return self.read_oof(name, classes)

    def write_oof(self, frame) -> None:
        self.write_csv(f.OOF, frame)

    def metrics(self) -> dict:
        """metrics.json: the merged OOF scores (podium.run.merge)."""
        metrics = self.read_json(f.METRICS)
        shape = {"cv_metric": str, "cv": Real, "cv_fold_std": Real, "folds_done": list, "n_folds": int,
                 "complete": bool, "oof": dict, "folds": dict}
        bad = [key for key, kind in shape.items()
               if not isinstance(metrics, dict) or not isinstance(metrics.get(key), kind)]
        if bad:
            raise self.wrong(f.METRICS, f"lacks or has the wrong type for {', '.join(bad)}")
        return metrics

    def write_metrics(self, metrics: dict) -> None:
        self.write_json(f.METRICS, metrics)

    # ------------------------------------------------------------------ decisions fitted on the OOF
    def thresholds(self) -> dict | None:
        """thresholds.json (multi-label: per-label thresholds and the folds they were fitted on), if fitted."""
        return self.read_mapping(f.THRESHOLDS, "per-label thresholds", required=False)

    def write_thresholds(self, params: dict) -> None:
        self.write_json(f.THRESHOLDS, params)

    def posthoc(self) -> dict | None:
        """posthoc.json (the post-hoc correction and the folds it was fitted on), if fitted."""
        return self.read_mapping(f.POSTHOC, "the post-hoc correction", required=False)

    def write_posthoc(self, params: dict) -> None:
        self.write_json(f.POSTHOC, params)

    # ------------------------------------------------------------------ predictions
    def test_probs(self, classes: list[str]):
        """test_probs.csv (id, one probability column per output); None before `podium predict`."""
        return self.read_csv(f.TEST_PROBS, ["id", *classes], text=("id",)) if self.test_probs_csv.exists() else None

    def write_test_probs(self, table) -> Path:
        return self.write_csv(f.TEST_PROBS, table)

    def write_submission(self, frame) -> Path:
        """The default submission (`podium predict`'s and `podium ensemble`'s): RUN/submission.csv."""
        return self.write_csv(f.SUBMISSION, frame)

    def predict_record(self) -> dict | None:
        """predict.json: what the last `podium predict` did (views, OOF with and without TTA, files); None before."""
        return self.read_mapping(f.PREDICT, "what the last `podium predict` did", required=False)

    def write_predict_record(self, record: dict) -> None:
        self.write_json(f.PREDICT, record)

    def write_tta_oof(self, views: list[str], how: str, frame) -> Path:
        return self.write_csv(self.tta_oof_path(views, how).name, frame)

    def write_ensemble(self, record: dict) -> None:
        self.write_json(f.ENSEMBLE, record)

    def ensemble(self) -> dict | None:
        """ensemble.json of an ensemble folder (`podium ensemble`); None for any other folder."""
        return self.read_mapping(f.ENSEMBLE, "the ensemble's runs, weights and scores", required=False)

    # ------------------------------------------------------------------ pseudo-labels (`podium pseudo`, data.pseudo)
    def pseudo(self) -> dict | None:
        """pseudo.json: a pseudo folder's record (source, selection, counts per class), or the copy a run trained
        with data.pseudo keeps; None when absent."""
        return self.read_mapping(f.PSEUDO, "where the pseudo-labels came from and how many per class", required=False)

    def write_pseudo(self, record: dict) -> None:
        self.write_json(f.PSEUDO, record)

    def pseudo_table(self, classes: list[str]):
        """pseudo.csv: id, path (absolute), label (the most probable class), soft (1: learn the probabilities, 0:
        the label) and one probability column per class."""
        import pandas as pd

        frame = self.read_csv(f.PSEUDO_TABLE, ["id", "path", "label", "soft", *classes])
        probs = frame[classes]
        if (len(frame) and not all(pd.api.types.is_numeric_dtype(probs[c]) for c in classes)
                or probs.isna().any().any()
                or frame["id"].duplicated().any() or not frame["soft"].isin([0, 1]).all()):
            raise self.wrong(f.PSEUDO_TABLE, "must hold each id once, soft 0 or 1, and a probability per class")
        return frame

    def write_pseudo_table(self, frame) -> Path:
        return self.write_csv(f.PSEUDO_TABLE, frame)

"""FoldDir: one fold's folder RUN/fold<k>/ — its checkpoints, curves, out-of-fold predictions and finished marker.

Training writes them (podium.engine.fold: Lightning's ModelCheckpoint names the checkpoints, EpochMetricsCSV the
curves); `podium train`'s merge, predict and the report read them. Reached as RunDir(run).fold_dir(k), or as
FoldDir(folder) where only the folder is known (a benchmark trains into any folder).
"""

from __future__ import annotations

from numbers import Real

from podium.run.access import Folder
from podium.run.files import BEST, CURVES, DONE, FINETUNE, LAST, OOF, TENSORBOARD, fix


class FoldDir(Folder):
    best_ckpt = property(lambda self: self.path / BEST)
    last_ckpt = property(lambda self: self.path / LAST)
    done_json = property(lambda self: self.path / DONE)
    oof_csv = property(lambda self: self.path / OOF)
    curves_csv = property(lambda self: self.path / CURVES)
    tensorboard = property(lambda self: self.path / TENSORBOARD)
    finetune_json = property(lambda self: self.path / FINETUNE)

    def fix(self, name: str) -> str:
        return fix(self.path.parent, f"{self.path.name}/{name}")

    def is_done(self) -> bool:
        return self.done_json.exists()

    def has_checkpoint(self) -> bool:
        return self.last_ckpt.exists() or self.best_ckpt.exists()

    # ------------------------------------------------------------------ done.json
    def done(self) -> dict | None:
        """done.json ({fold, best_epoch, epochs_run, seconds}); None while the fold is unfinished."""
        record = self.read_mapping(DONE, "the fold's best epoch, epochs run and seconds", required=False)
        if record is not None and not isinstance(record.get("seconds", 0.0), Real):
            raise self.wrong(DONE, "must hold the fold's training time in seconds as a number under 'seconds'")
        return record

    def write_done(self, record: dict) -> None:
        self.write_json(DONE, record)

    # ------------------------------------------------------------------ finetune.json
    def finetune(self) -> dict | None:
        """finetune.json ({from_epoch, size}): train.finetune_size's epochs started after epoch from_epoch - 1 (the
        first epochs' early stopping included); None before they start, or without train.finetune_size."""
        record = self.read_mapping(FINETUNE, "the epoch the larger input size started from", required=False)
        if record is not None and not isinstance(record.get("from_epoch"), int):
            raise self.wrong(FINETUNE, "must hold 'from_epoch', the first epoch at train.finetune_size")
        return record

    def write_finetune(self, record: dict) -> None:
        self.write_json(FINETUNE, record)

    # ------------------------------------------------------------------ oof.csv
    def oof(self, classes: list[str]):
        """The fold's out-of-fold predictions: id, fold, label and one probability column per output."""
        return self.read_oof(OOF, classes)

    def write_oof(self, frame) -> None:
        self.write_csv(OOF, frame)

    # ------------------------------------------------------------------ metrics.csv
    def curves(self):
        """One row per epoch (epoch, step, train_loss, lr, val_<metric>...); empty before the first epoch ends."""
        import pandas as pd

        return self.read_csv(CURVES, ["epoch"], text=()) if self.curves_csv.exists() else pd.DataFrame()

    def write_curves(self, frame) -> None:
        self.write_csv(CURVES, frame)

"""podium's Lightning plumbing: atomic checkpoints that load weights only, and the per-epoch metrics CSV."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from podium.errors import PodiumError
from podium.io import atomic_path
from podium.run.checkpoint import load_checkpoint
from podium.run.folddir import FoldDir
from podium.run.mirror import written

RESUME = "set output_dir=... to a folder with room that you can write to; then continue with --resume"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temp file in the same folder, then rename: a kill never leaves half a file.
    Read them through podium.run.load_checkpoint (Lightning's resume included): never pickled code."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        try:  # an OSError (full disk, permissions) becomes atomic_path's PodiumError naming the file, with RESUME
            with atomic_path(path, hint=RESUME) as tmp:  # the temp file is removed whatever fails
                torch.save(checkpoint, tmp)
            written()  # a running mirror publishes it now
        except RuntimeError as exc:
            # torch's zip writer reports a full disk as a RuntimeError from inline_container ("unexpected pos")
            if "inline_container" not in str(exc) and "StreamWriter" not in str(exc):
                raise
            raise PodiumError(f"Could not write the checkpoint '{path}' ({_why(exc, path.parent)}). Free space on "
                              f"that disk, or {RESUME}.") from None

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return load_checkpoint(path)  # whatever Lightning or the environment asks: weights only


def _why(exc: BaseException, folder: Path) -> str:
    """The OS's reason, and the free space where the file was going."""
    reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[-1][:120]
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return reason
    return f"{reason}; {free / 2**20:.0f} MiB free there"


class MovableCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose state survives the run folder moving (pulled from its mirror onto another machine, or
    renamed): the paths a checkpoint recorded are read as the same files in this fold's folder. Lightning's own drops
    the best score when the folder differs, so the first resumed epoch would replace a better best.ckpt. It keeps
    ModelCheckpoint's state key, so checkpoints written before still restore."""

    @property
    def state_key(self) -> str:
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def load_state_dict(self, state_dict: dict) -> None:
        saved = state_dict.get("dirpath")
        if self.dirpath and saved and saved != self.dirpath:
            def here(path):
                return str(Path(self.dirpath) / Path(path).name) if path else path

            state_dict = {**state_dict, "dirpath": self.dirpath,
                          "best_model_path": here(state_dict.get("best_model_path")),
                          "kth_best_model_path": here(state_dict.get("kth_best_model_path")),
                          "last_model_path": here(state_dict.get("last_model_path")),
                          "best_k_models": {here(k): v for k, v in state_dict.get("best_k_models", {}).items()}}
        super().load_state_dict(state_dict)


class EpochMetricsCSV(pl.Callback):
    """fold<k>/metrics.csv: one row per epoch (train loss, every validation metric, lr), rewritten atomically."""

    def __init__(self, fold: FoldDir, extra: dict | None = None):
        self.fold = fold
        self.extra = extra or {}  # constant columns, e.g. the input size with train.finetune_size

    def on_train_epoch_end(self, trainer, module):  # runs after this epoch's validation (and the module's hooks)
        if not module.last_val or not trainer.is_global_zero:  # rank 0 writes the run folder (podium.run.writer)
            return
        rows = self.fold.curves()
        if len(rows):
            rows = rows[rows["epoch"] < trainer.current_epoch]  # a resumed epoch replaces its earlier row
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step, "train_loss": module.train_loss_mean(),
               "lr": trainer.optimizers[0].param_groups[0]["lr"],
               **{f"val_{k}": v for k, v in module.last_val.items()}, **self.extra}
        self.fold.write_curves(pd.concat([rows, pd.DataFrame([row])], ignore_index=True))


class FreezeBackbone(pl.Callback):
    """Freezing as a callback (Lightning's BaseFinetuning pattern): `backbone` keeps the backbone and its BatchNorm
    statistics fixed every epoch (model.freeze=backbone, and cRT's classifier stage), `backbone_until` for the first
    `epochs` epochs, then trains everything."""

    def __init__(self, mode: str, epochs: int = 1):
        if mode not in ("backbone", "backbone_until"):
            raise ValueError(f"FreezeBackbone mode {mode!r}: backbone | backbone_until")
        self.mode, self.epochs = mode, epochs

    def on_train_epoch_start(self, trainer, module):
        from podium.models import set_backbone_trainable

        frozen = self.mode == "backbone" or trainer.current_epoch < self.epochs
        set_backbone_trainable(module.model, not frozen)


class EpochReport(pl.Callback):
    """Hands each epoch's validation score (cv.metric) to `report(epoch, value)`, which may raise to stop the fit:
    `podium tune`'s pruner. Its own callback rather than optuna-integration's PyTorchLightningPruningCallback: the
    engine stays free of Optuna (the caller owns the trial and the step numbering across folds), and it runs after
    podium's own metrics (module.last_val), on every Lightning version podium supports."""

    def __init__(self, report):
        self.report = report

    def on_train_epoch_end(self, trainer, module):  # after this epoch's validation, as EpochMetricsCSV
        if module.last_val and not trainer.sanity_checking:
            self.report(trainer.current_epoch, float(module.last_val[module.metric]))


class FinetuneBest(ModelCheckpoint):
    """best.ckpt among the epochs at train.finetune_size only: prediction runs at that size, so an epoch at the first
    size never wins. Its own class gives it its own state key in last.ckpt: the first epochs' best score is not
    restored into it when the larger size starts, and its own is restored when a fold resumes there."""

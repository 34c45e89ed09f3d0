"""podium's Lightning plumbing: atomic checkpoints that load weights only, and the per-epoch metrics CSV."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from podium.errors import PodiumError
from podium.io import atomic_path
from podium.run.checkpoint import load_checkpoint
from podium.run.folddir import FoldDir

RESUME = "set output_dir=... to a folder with room that you can write to; then continue with --resume"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temp file in the same folder, then rename: a kill never leaves half a file.
    Read them through podium.run.load_checkpoint (Lightning's resume included): never pickled code."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        try:  # an OSError (full disk, permissions) becomes atomic_path's PodiumError naming the file, with RESUME
            with atomic_path(path, hint=RESUME) as tmp:  # the temp file is removed whatever fails
                torch.save(checkpoint, tmp)
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


class EpochMetricsCSV(pl.Callback):
    """fold<k>/metrics.csv: one row per epoch (train loss, every validation metric, lr), rewritten atomically."""

    def __init__(self, fold: FoldDir):
        self.fold = fold

    def on_train_epoch_end(self, trainer, module):  # runs after this epoch's validation (and the module's hooks)
        if not module.last_val or not trainer.is_global_zero:  # rank 0 writes the run folder (podium.run.writer)
            return
        rows = self.fold.curves()
        if len(rows):
            rows = rows[rows["epoch"] < trainer.current_epoch]  # a resumed epoch replaces its earlier row
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step, "train_loss": module.train_loss_mean(),
               "lr": trainer.optimizers[0].param_groups[0]["lr"],
               **{f"val_{k}": v for k, v in module.last_val.items()}}
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

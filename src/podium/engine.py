"""The Lightning side of training: the module (loss, optimiser, schedule, EMA, metrics) and podium's callbacks.

Reproducibility: every epoch reseeds torch from (seed, epoch) and the sampler draws its order from
(seed, epoch), so an epoch's randomness never depends on what ran before it. Resuming from the last
end-of-epoch checkpoint after a crash therefore replays the interrupted epoch exactly; the RNG states are
saved in every checkpoint as well.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from podium.augment import to_float, train_transform
from podium.config import Config
from podium.heads import margin_logits
from podium.errors import PodiumError
from podium.io import atomic_path, atomic_write_csv
from podium.metrics import get_metric
from podium.mixing import NO_MIX, draw_mix, mix_images, mixed_loss, mixing_enabled


class Classifier(pl.LightningModule):
    """A timm/podium network trained with a podium loss; validates into probabilities and the config's metric.

    `loss` (podium.losses) is None for a module built only to predict. With a margin head (ArcFace, CosFace) the
    training logits get the true class's margin before the loss; validation and prediction never do.
    """

    def __init__(self, cfg: Config, model: torch.nn.Module, mean: tuple, std: tuple, steps_per_epoch: int,
                 loss: torch.nn.Module | None = None, task=None):
        super().__init__()
        from podium.tasks import make_task

        self.cfg, self.model, self.steps_per_epoch = cfg, model, steps_per_epoch
        self.task = task or make_task(cfg.data, [])  # probabilities and scores (podium.tasks)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)
        self.augment = train_transform(cfg.augment)
        self.loss = loss  # its tensors are non-persistent buffers: checkpoints hold the network only
        self.ema = None
        if cfg.train.ema:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(model, decay=cfg.train.ema_decay)
        self._val_probs: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []
        self.last_val: dict[str, float] = {}

    def eval_model(self) -> torch.nn.Module:
        """The weights used to validate and predict: the EMA when enabled."""
        return self.ema.module if self.ema is not None else self.model

    def forward(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return self.eval_model()(to_float(x_uint8, self.mean, self.std))

    def training_step(self, batch, batch_idx):
        x, y = batch
        x = self.augment(to_float(x, self.mean, self.std))
        mix = draw_mix(self.cfg.augment, x.shape) if mixing_enabled(self.cfg.augment, self.current_epoch) else NO_MIX
        logits = self.model(mix_images(x, mix))
        # a mixed batch's loss is lam L(y_a) + (1 - lam) L(y_b), each term with its own true class (podium.mixing)
        loss = mixed_loss(lambda z, t: self.loss(margin_logits(self.model, z, t), t), logits, y, mix)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.ema is not None and (batch_idx + 1) % self.cfg.train.accumulate == 0:
            self.ema.update(self.model, step=self.global_step)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self._val_probs.append(self.task.activation(logits.float()).cpu())
        self._val_targets.append(y.cpu())

    def on_validation_epoch_end(self):
        probs = torch.cat(self._val_probs).numpy().astype(np.float64)
        y = torch.cat(self._val_targets).numpy()
        self._val_probs.clear()
        self._val_targets.clear()
        if self.trainer.sanity_checking:
            return
        scores = self.task.score(y, probs)
        self.last_val = scores
        self.log("val_metric", scores[self.cfg.cv.metric], prog_bar=True, sync_dist=True)
        for name, value in scores.items():
            self.log(f"val_{name}", value, sync_dist=True)

    def configure_optimizers(self):
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2

        t = self.cfg.train
        from podium.models import param_groups

        groups = param_groups(self.model, t.lr, t.weight_decay, t.layer_decay)  # tested in tests/test_models.py
        optimizer = create_optimizer_v2(groups, opt=t.optimizer, lr=t.lr, weight_decay=t.weight_decay)
        updates = max(1, self.steps_per_epoch // t.accumulate)
        scheduler, _ = create_scheduler_v2(optimizer, sched=t.scheduler, num_epochs=t.epochs, min_lr=t.min_lr,
                                           warmup_lr=t.warmup_lr, warmup_epochs=t.warmup_epochs,
                                           step_on_epochs=False, updates_per_epoch=updates)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def lr_scheduler_step(self, scheduler, metric):
        scheduler.step_update(num_updates=self.global_step)  # timm schedulers step on update counts

    def on_train_batch_start(self, batch, batch_idx):
        if batch_idx == 0:  # reseed here, after Lightning and the DataLoader have drawn whatever they draw
            seed_everything(self.cfg.train.seed + 1000 * self.current_epoch)

    def on_train_epoch_start(self):
        from podium.models import set_backbone_trainable

        self.loss.set_epoch(self.current_epoch)
        m = self.cfg.model
        if self.cfg.train.stage == "classifier":  # cRT: the trained backbone and its BatchNorm statistics stay fixed
            set_backbone_trainable(self.model, False)
        elif m.freeze == "backbone" or (m.freeze == "backbone_until" and self.current_epoch < m.freeze_epochs):
            set_backbone_trainable(self.model, False)
        elif m.freeze == "backbone_until":
            set_backbone_trainable(self.model, True)

    def on_save_checkpoint(self, checkpoint):
        # plain tensors and ints only, so the checkpoint still loads with torch.load(weights_only=True)
        checkpoint["podium_rng"] = {"torch": torch.get_rng_state(),
                                    "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
                                    "python": list(random.getstate()[1])}

    def on_load_checkpoint(self, checkpoint):
        state = checkpoint.get("podium_rng")
        if state is not None:
            torch.set_rng_state(state["torch"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
        from podium.run import load_checkpoint

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

    def __init__(self, path: Path):
        self.path = path

    def on_train_epoch_end(self, trainer, module):  # runs after this epoch's validation (and the module's hooks)
        if not module.last_val:
            return
        rows = pd.read_csv(self.path) if self.path.exists() else pd.DataFrame()
        if len(rows):
            rows = rows[rows["epoch"] < trainer.current_epoch]  # a resumed epoch replaces its earlier row
        m = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step,
               "train_loss": float(m["train_loss_epoch"]) if "train_loss_epoch" in m else np.nan,
               "lr": trainer.optimizers[0].param_groups[0]["lr"],
               **{f"val_{k}": v for k, v in module.last_val.items()}}
        atomic_write_csv(self.path, pd.concat([rows, pd.DataFrame([row])], ignore_index=True))


def metric_mode(name: str, data=None) -> str:
    """'max' or 'min' for metric `name` of the task `data` (a DataConfig; None: multiclass) describes."""
    if data is None or data.task == "multiclass":
        return "max" if get_metric(name).higher_is_better else "min"
    from podium.tasks import make_task

    return "max" if make_task(data, []).metrics[name].higher_is_better else "min"

"""The Lightning side of training: the module (loss, optimiser, schedule, EMA, metrics) and podium's callbacks.

Reproducibility: every epoch reseeds torch from (seed, epoch) and the sampler draws its order from
(seed, epoch), so an epoch's randomness never depends on what ran before it. Resuming from the last
end-of-epoch checkpoint after a crash therefore replays the interrupted epoch exactly; the RNG states are
saved in every checkpoint as well.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass

import lightning.pytorch as pl
import numpy as np
import torch

from podium.augment import to_float, train_transform
from podium.config import AugmentConfig
from podium.engine import fastpath
from podium.engine.distributed import gather_validation
from podium.engine.fastpath import as_channels_last, fused_optimizer_args, wants_channels_last
from podium.heads import margin_logits
from podium.losses import SoftLayout, distilled_loss
from podium.mixing import NO_MIX, draw_mix, mix_images, mixed_loss, mixing_enabled


@dataclass(frozen=True)
class Optim:
    """The optimiser and its per-update schedule, built by timm's factories (every default: config.TrainConfig)."""

    optimizer: str  # a timm optimizer name (timm.optim.create_optimizer_v2)
    lr: float  # peak learning rate, after warmup
    weight_decay: float  # decoupled; never on norms and biases (podium.models.param_groups)
    layer_decay: float | None  # each earlier block gets lr x this; None: off
    scheduler: str  # a timm scheduler name, stepped per optimizer update
    epochs: int
    warmup_epochs: int
    warmup_lr: float
    min_lr: float
    accumulate: int  # batches per optimizer update
    steps_per_epoch: int  # batches per epoch (the schedule counts updates)


class Classifier(pl.LightningModule):
    """A timm/podium network trained with a podium loss; validates into probabilities and scores `metric`.

    Everything it uses is an explicit argument, saved as hyper-parameters (plain values, so a checkpoint still loads
    with weights_only=True): the network, the loss (None for a module built only to predict), the task (activation
    and scores, podium.tasks), the input's mean/std, the optimiser, the augmentation it applies on the batch, the
    seed of each epoch's randomness and the EMA decay. podium.engine.build turns a config into these arguments.
    With a margin head (ArcFace, CosFace) the training logits get the true class's margin before the loss;
    validation and prediction never do. Freezing is a callback (podium.engine.callbacks.FreezeBackbone).

    The fast path (podium.engine.fastpath): on CUDA the network and every batch it sees are channels_last and the
    optimizer step is fused where torch has the kernel; `compile` (train.compile) runs the training network through
    torch.compile. Nothing in a training step waits for the device: the loss is logged as an epoch average kept on
    the device, validation outputs stay there until the epoch's end.
    """

    def __init__(self, model: torch.nn.Module, task, mean: tuple, std: tuple, *, metric: str, optim: Optim,
                 augment: AugmentConfig = AugmentConfig(), seed: int = 42, ema_decay: float | None = None,
                 loss: torch.nn.Module | None = None, compile: bool = False, soft: SoftLayout | None = None):
        super().__init__()
        self.save_hyperparameters({"mean": list(mean), "std": list(std), "metric": metric, "optim": asdict(optim),
                                   "augment": augment.model_dump(mode="json"), "seed": seed, "ema_decay": ema_decay,
                                   "compile": compile, "soft": None if soft is None else asdict(soft)})
        self.model, self.task, self.loss = model, task, loss  # the loss's tensors are non-persistent buffers
        self.metric, self.optim, self.augment_cfg, self.seed = metric, optim, augment, seed
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)
        self.augment = train_transform(augment)
        self.ema = None
        if ema_decay is not None:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(model, decay=ema_decay)
        self._val_probs: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []
        self._val_positions: list[torch.Tensor] = []
        self.last_val: dict[str, float] = {}
        self.soft = soft  # training targets packed with soft ones (train.soft_targets, data.pseudo); None: plain
        self.compile_net = compile  # not `compile`: nn.Module.compile is the method that does it
        self.channels_last = False  # set by `setup` for the device the trainer runs on
        self.first_step_seconds: float | None = None  # the first training step of a fit: torch.compile's warm-up
        self._loss_sum, self._loss_n = torch.zeros(()), 0  # the epoch's training loss, summed on the device
        self._first_step_start: float | None = None

    def setup(self, stage: str) -> None:
        """Before Lightning moves the module and builds the optimizer: the memory format (so the optimizer's state
        is created channels_last too) and torch.compile, for the device the trainer runs on."""
        device = self.trainer.strategy.root_device.type
        self.channels_last = wants_channels_last(self.model, device)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)  # the EMA copy too; 1-D buffers (mean, std) stay as they are
        if self.compile_net and stage == "fit":
            self.model.compile(backend=fastpath.COMPILE_BACKEND)  # in place: state_dict keys stay those of the network

    def net_input(self, x: torch.Tensor) -> torch.Tensor:
        """A float batch as the network takes it: channels_last on the fast path."""
        return as_channels_last(x) if self.channels_last else x

    def eval_model(self) -> torch.nn.Module:
        """The weights used to validate and predict: the EMA when enabled."""
        return self.ema.module if self.ema is not None else self.model

    def forward(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return self.eval_model()(self.net_input(to_float(x_uint8, self.mean, self.std)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        x = self.augment(to_float(x, self.mean, self.std))
        mix = draw_mix(self.augment_cfg, x.shape) if mixing_enabled(self.augment_cfg, self.current_epoch) else NO_MIX
        logits = self.model(self.net_input(mix_images(x, mix)))
        # a mixed batch's loss is lam L(y_a) + (1 - lam) L(y_b), each term with its own true class (podium.mixing)
        loss = mixed_loss(self._loss, logits, y, mix)
        # the epoch's mean only, summed on the device: a per-step value is turned into a Python number for the
        # progress bar and the loggers, which makes the host wait for the device every step, and Lightning's
        # self.log costs ~0.5 ms of Python per call (metrics.csv always kept the epoch mean)
        self._loss_sum += loss.detach() * len(y)
        self._loss_n += len(y)
        return loss

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss of a batch's targets (any margin applied to the hard label); with soft targets packed in,
        (1 - alpha) of the label's loss + alpha of the soft one, per image (podium.losses.distilled_loss)."""
        hard = lambda z, t: self.loss(margin_logits(self.model, z, t), t)  # noqa: E731
        return hard(logits, y) if self.soft is None else distilled_loss(hard, self.loss.soft, logits, y, self.soft)

    def train_loss_mean(self) -> float:
        """The mean training loss over the epoch's batches so far (NaN before the first): one wait for the device."""
        return float(self._loss_sum / self._loss_n) if self._loss_n else float("nan")

    def on_train_epoch_end(self):
        if self._loss_n:  # the loggers' and the progress bar's train_loss_epoch, as Lightning's on_epoch mean named it
            self.log("train_loss_epoch", self._loss_sum / self._loss_n, prog_bar=True)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.ema is not None and (batch_idx + 1) % self.optim.accumulate == 0:
            self.ema.update(self.model, step=self.global_step)
        if self.first_step_seconds is None and self._first_step_start is not None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # once per fit, so the warm-up's length includes the device's
            self.first_step_seconds = time.perf_counter() - self._first_step_start

    def validation_step(self, batch, batch_idx):
        x, y, *positions = batch  # positions: each image's place in the validation set (podium.engine.loader)
        logits = self(x)
        self._val_probs.append(self.task.activation(logits.float()))  # on the device: one copy at the epoch's end
        self._val_targets.append(y)
        self._val_positions.extend(positions)

    def on_validation_epoch_end(self):
        # multi-device: every rank's share gathered, padding dropped, in order: the whole validation set, each image
        # once, on every rank (podium.engine.distributed); one device: this epoch's outputs as they are
        positions = torch.cat(self._val_positions) if self._val_positions else None
        probs, y = gather_validation(self, torch.cat(self._val_probs), torch.cat(self._val_targets), positions)
        probs = probs.astype(np.float64)
        self._val_probs.clear()
        self._val_targets.clear()
        self._val_positions.clear()
        if self.trainer.sanity_checking:
            return
        scores = self.task.score(y, probs)
        self.last_val = scores
        # already the same on every rank: no reduction (a mean of per-rank scores is not the score of the whole set)
        self.log("val_metric", scores[self.metric], prog_bar=True, sync_dist=False)
        for name, value in scores.items():
            self.log(f"val_{name}", value, sync_dist=False)

    def configure_optimizers(self):
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2

        from podium.models import param_groups

        o = self.optim
        groups = param_groups(self.model, o.lr, o.weight_decay, o.layer_decay)  # tested in tests/test_models.py
        fused = fused_optimizer_args(o.optimizer, self.trainer.strategy.root_device.type,
                                     self.trainer.gradient_clip_val)
        optimizer = create_optimizer_v2(groups, opt=o.optimizer, lr=o.lr, weight_decay=o.weight_decay, **fused)
        updates = max(1, o.steps_per_epoch // o.accumulate)
        scheduler, _ = create_scheduler_v2(optimizer, sched=o.scheduler, num_epochs=o.epochs, min_lr=o.min_lr,
                                           warmup_lr=o.warmup_lr, warmup_epochs=o.warmup_epochs,
                                           step_on_epochs=False, updates_per_epoch=updates)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def lr_scheduler_step(self, scheduler, metric):
        scheduler.step_update(num_updates=self.global_step)  # timm schedulers step on update counts

    def on_train_batch_start(self, batch, batch_idx):
        if batch_idx == 0:  # reseed here, after Lightning and the DataLoader have drawn whatever they draw
            seed_everything(self.seed + 1000 * self.current_epoch)
        if self._first_step_start is None:
            self._first_step_start = time.perf_counter()

    def on_train_epoch_start(self):
        self._loss_sum, self._loss_n = torch.zeros((), device=self.device), 0
        if self.loss is not None:
            self.loss.set_epoch(self.current_epoch)  # deferred re-weighting (LDAM-DRW) switches on at an epoch

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



"""The Lightning side of training: the module (loss, optimiser, schedule, EMA, metrics) and podium's callbacks.

Reproducibility: every epoch reseeds torch from (seed, epoch) and the sampler draws its order from
(seed, epoch), so an epoch's randomness never depends on what ran before it. Resuming from the last
end-of-epoch checkpoint after a crash therefore replays the interrupted epoch exactly; the RNG states are
saved in every checkpoint as well.
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from podium.augment import to_float, train_transform
from podium.config import Config
from podium.errors import PodiumError
from podium.heads import margin_logits
from podium.metrics import get_metric
from podium.mixing import NO_MIX, draw_mix, mix_images, mixed_loss, mixing_enabled
from podium.run import RunDir, load_checkpoint


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


def metric_mode(name: str, data=None) -> str:
    """'max' or 'min' for metric `name` of the task `data` (a DataConfig; None: multiclass) describes."""
    if data is None or data.task == "multiclass":
        return "max" if get_metric(name).higher_is_better else "min"
    from podium.tasks import make_task

    return "max" if make_task(data, []).metrics[name].higher_is_better else "min"


def normalisation(cfg: Config, channels: int, images: np.ndarray | None = None) -> tuple[tuple, tuple]:
    """The per-channel mean/std of the model's input, by augment.normalize: auto = what the weights expect (the
    pretrained stats, else 0.5/0.5), imagenet = ImageNet's, data = `images`' own (the training images); averaged
    for grayscale; the edge channel (augment.edges) last, as (0, 1)."""
    from podium.augment import EDGE_STATS, IMAGENET_STATS
    from podium.data.cache import data_stats
    from podium.models import pretrained_stats

    mode = cfg.augment.normalize
    if mode == "data":
        if images is None:
            raise PodiumError("augment.normalize=data needs the training images' statistics: they are stored in "
                              "RUN/run.json by `podium train`.")
        mean, std = data_stats(images)
    else:
        stats = pretrained_stats(cfg.model.name) if (cfg.model.pretrained or cfg.model.weights) else None
        mean, std = IMAGENET_STATS if mode == "imagenet" else stats or ((0.5,) * 3, (0.5,) * 3)
    if channels != len(mean):
        mean, std = (float(np.mean(mean)),) * channels, (float(np.mean(std)),) * channels
    if cfg.augment.edges:
        mean, std = (*mean, EDGE_STATS[0]), (*std, EDGE_STATS[1])
    return tuple(mean), tuple(std)


def build_module(cfg: Config, task, channels: int, steps_per_epoch: int,
                 train_targets: np.ndarray | None = None, init_state: dict | None = None,
                 stats: tuple[tuple, tuple] | None = None):
    """The LightningModule for one fold: network with one output per `task.outputs` + head (+ weights of
    `init_state`) and, given the fold's training targets, its loss (without them the module can only predict).
    `stats`: the input's (mean, std), as in run.json; default `normalisation(cfg, ...)`."""
    from podium.heads import attach_head, logit_scale
    from podium.models import create_model

    in_chans = cfg.model.in_chans or channels
    model = attach_head(create_model(cfg.model, len(task.outputs), in_chans, extra_chans=int(cfg.augment.edges)),
                        cfg.model)
    if init_state is not None:
        _start_from(model, init_state, cfg)
    mean, std = stats or normalisation(cfg, in_chans)
    loss = None
    if train_targets is not None:  # class counts etc. from the fold's training rows only, never validation's
        loss = task.build_loss(cfg, np.asarray(train_targets), logit_scale(cfg.model))
    return Classifier(cfg, model, mean, std, steps_per_epoch, loss, task)


def fold_weights(run: Path, k: int) -> dict:
    """The network weights fold k of `run` predicts with (its EMA when it kept one), keys without prefix."""
    state = load_checkpoint(RunDir(run).best_ckpt(k))["state_dict"]
    prefix = "ema.module." if any(key.startswith("ema.module.") for key in state) else "model."
    return {key[len(prefix):]: v for key, v in state.items() if key.startswith(prefix)}


def _start_from(model: torch.nn.Module, state: dict, cfg: Config) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise PodiumError(f"train.init_from: the weights of '{cfg.train.init_from}' do not fit this config's "
                          f"model (model.name={cfg.model.name}, model.head={cfg.model.head}); use the model settings "
                          f"of '{RunDir(cfg.train.init_from).config}'. ({str(err).splitlines()[0]})") from None
    if cfg.train.reinit_classifier:
        for module in model.get_classifier().modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

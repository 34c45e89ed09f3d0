"""`podium train`: train the chosen folds of the persisted split into one run folder, then collect OOF.

Run folder <output_dir>/<name>/ (podium.run.RunDir):
  .podium-run                               the marker: podium made it (only a marked folder is ever removed)
  locks/fold<k>.lock                        held while a process trains fold k: one writer per fold
  config.yaml, folds.csv, classes.json      what the run was made from (run.json: input channels, mean/std)
  fold<k>/best.ckpt, last.ckpt              Lightning checkpoints (written atomically)
  fold<k>/metrics.csv                       one row per epoch
  fold<k>/oof.csv, fold<k>/done.json        the fold's out-of-fold probabilities, and its finished marker
  oof.csv, metrics.json                     every finished fold merged, per-fold and overall scores
Folds are independent, so machines can train disjoint folds into one shared folder; each finished fold
re-merges whatever folds are finished.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from podium.config import Config, to_yaml
from podium.errors import PodiumError, fmt_list
from podium.io import atomic_write_csv, atomic_write_json, atomic_write_text
from podium.run import RunDir, fold_locks, load_checkpoint
from podium.samplers import EpochSampler, create_sampler


@dataclass
class TrainData:
    """Everything a fold needs: the table, the classes, each row's fold and the decoded images."""

    frame: pd.DataFrame  # id, path, label, target (one class index per row: what samplers balance), fold
    classes: list[str]  # the network's outputs: classes | labels | task:class (podium.tasks)
    images: np.ndarray  # N x H x W x C uint8 memmap, rows aligned with frame
    channels: int
    task: object = None  # podium.tasks task of data.task; None: multiclass over `classes`
    targets: np.ndarray | None = None  # what the loss takes: class index N | multi-hot N x K | index per task N x T


def make_loader(images, targets, indices, batch_size: int, seed: int | None,
                sampler: torch.utils.data.Sampler | None = None, pipeline=None,
                augment_seed: int | None = None) -> torch.utils.data.DataLoader:
    """Whole-batch reads from the memmap in the loop's own process (see benchmarks/data_loading.py).

    Order: `sampler` (positions in `indices`, see podium.samplers) when given; else shuffled from (seed, epoch);
    else (seed None) in order. `pipeline` (podium.augment.ItemPipeline): the per-image CPU stage each batch goes
    through, augmenting from `augment_seed` (None: edge channel only, no augmentation)."""
    from podium.augment import AugmentedDataset
    from podium.data.cache import CachedDataset

    ds = CachedDataset(images, targets, np.asarray(indices))
    if sampler is None and seed is not None:
        sampler = EpochSampler(len(ds), seed)
    if pipeline is not None:
        ds = AugmentedDataset(ds, pipeline, augment_seed, sampler)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, shuffle=False,
                                       num_workers=0, collate_fn=lambda batch: batch)


def load_data(cfg: Config) -> TrainData:
    from podium.data.cache import build_cache, resolve_channels
    from podium.data.sources import load_train
    from podium.data.splits import load_folds

    frame, classes = load_train(cfg)
    frame["fold"] = load_folds(cfg, frame)
    channels = resolve_channels(list(frame["path"]), cfg.data.channels)
    cache = build_cache(list(frame["path"]), cfg.data.image_size, cfg.data.resize, channels, cfg.cache_dir(),
                        center_crop=cfg.data.center_crop)
    from podium.tasks import make_task

    task = make_task(cfg.data, classes)
    return TrainData(frame, classes, cache.images, channels, task, task.encode(frame))


def run_dir(cfg: Config) -> Path:
    return Path(cfg.output_dir) / cfg.name


def _prepare_run(cfg: Config, data: TrainData, rd: RunDir, folds: list[int], resume: bool, overwrite: bool,
                 stats: tuple[tuple, tuple], held: list[dict]) -> Path:
    """Refuse to clobber a finished run; write config.yaml, folds.csv and classes.json. `rd` is checked and marked
    (podium.run.guard.open_run); `held`: the fold locks this process holds."""
    from podium.run.guard import clear_run
    from podium.run.lock import live_holders

    saved = rd.config
    if saved.exists() and saved.read_text() != to_yaml(cfg):
        if not overwrite and rd.has_progress():
            raise PodiumError(f"Run folder '{rd.path}' holds a run made with a different config. Pass --overwrite to "
                              f"replace it, or set name=... to train a new run.")
        busy = live_holders(rd.path, held)
        if busy:  # replacing the run would pull the folder from under another machine's training
            lock, holder = busy[0]
            raise PodiumError(f"Run folder '{rd.path}' holds a run made with a different config, and process "
                              f"{holder.get('pid')} on host {holder.get('host')} is training it (lock file '{lock}'). "
                              "Set name=... to train a new run; if that process is gone, delete the lock file.")
        if not overwrite:  # it failed before its first checkpoint: nothing is lost, and the corrected config reruns
            _note(f"replacing '{rd.path}': it was started with a different config and never got a checkpoint")
        clear_run(rd)
    started = [k for k in folds if rd.fold(k).exists()]
    if started and not (resume or overwrite):
        done = [k for k in started if rd.done_json(k).exists()]
        raise PodiumError(f"Run folder '{rd.path}' already holds fold(s) {fmt_list(started)} (finished: "
                          f"{fmt_list(done) or 'none'}). Pass --resume to continue unfinished folds, --overwrite to "
                          "retrain them, or set name=... for a new run.")
    if overwrite:
        for k in started:
            shutil.rmtree(rd.fold(k))
    if rd.classes_file.exists():
        try:
            recorded = rd.classes()
        except PodiumError:
            if not overwrite:
                raise
            recorded = data.classes  # damaged, and rewritten below from the data
        if recorded != data.classes:
            raise PodiumError(f"'{rd.classes_file}' lists other classes than the data ({fmt_list(data.classes)}). "
                              "Pass --overwrite or use a new name=.")
    atomic_write_text(saved, to_yaml(cfg))
    atomic_write_csv(rd.folds_csv, data.frame[["id", "fold"]].sort_values("id"))
    atomic_write_json(rd.classes_file, data.classes)
    atomic_write_json(rd.run_json, {"channels": data.channels, "n_train": len(data.frame),
                                    "mean": list(stats[0]), "std": list(stats[1])})  # the model's input stats
    return rd.path


def _note(text: str) -> None:
    Console(stderr=True).print(text, highlight=False, markup=False)


def _trains_on_this_rank() -> bool:
    """False in the extra processes of a multi-device run (Lightning's launcher, torchrun and SLURM start one per
    device, each running the command): the first one holds the fold locks for all of them."""
    return all(os.environ.get(var, "0") == "0" for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def normalisation(cfg: Config, channels: int, images: np.ndarray | None = None) -> tuple[tuple, tuple]:
    """The per-channel mean/std of the model's input, by augment.normalize: auto = what the weights expect (the
    pretrained stats, else 0.5/0.5), imagenet = ImageNet's, data = `images`' own (the training images); averaged
    for grayscale; the edge channel (augment.edges) last, as (0, 1)."""
    from podium.augment import EDGE_STATS, IMAGENET_STATS, data_stats
    from podium.models import pretrained_stats

    mode = cfg.augment.normalize
    if mode == "data":
        if images is None:
            raise PodiumError("augment.normalize=data needs the training images' statistics: they are stored in "
                              "the run's run.json by `podium train`.")
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
    from podium.engine import Classifier
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


# ------------------------------------------------------------------------- classifier re-training (cRT)


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
                          f"of that run's config.yaml. ({str(err).splitlines()[0]})") from None
    if cfg.train.reinit_classifier:
        for module in model.get_classifier().modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()


def check_init_run(cfg: Config, data: TrainData, folds: list[int]) -> Path:
    """cRT starts fold k from fold k of train.init_from: refuse unless that run has the same classes, the same
    folds (so no fold's validation images were ever trained on) and a finished fold k for every k asked for."""
    init = Path(cfg.train.init_from)
    if not (init / "config.yaml").exists() or not (init / "folds.csv").exists():
        raise PodiumError(f"train.init_from: '{init}' is not a trained run folder (no config.yaml / folds.csv).")
    if init.resolve() == run_dir(cfg).resolve():
        raise PodiumError(f"train.init_from is this run's own folder '{init}': give the classifier stage its own "
                          f"name, e.g. name={cfg.name}-crt.")
    classes = RunDir(init).classes()
    if classes != data.classes:
        raise PodiumError(f"train.init_from: '{init}' was trained on classes {fmt_list(classes)}, this data has "
                          f"{fmt_list(data.classes)}.")
    theirs = RunDir(init).folds().set_index("id")["fold"]
    ours = data.frame.set_index("id")["fold"]
    differ = ours.index.symmetric_difference(theirs.index).tolist()
    common = ours.index.intersection(theirs.index)
    differ += common[ours.loc[common].to_numpy() != theirs.loc[common].to_numpy()].tolist()
    if differ:
        raise PodiumError(f"train.init_from: '{init}' used other folds than this config ({len(differ)} id(s) differ, "
                          f"first: {fmt_list(differ[:5])}): its backbones saw some of this split's validation "
                          f"images. Use the same data, cv settings and folds file as that run.")
    missing = [k for k in folds if not (init / f"fold{k}" / "done.json").exists()]
    if missing:
        raise PodiumError(f"train.init_from: '{init}' has no finished fold {fmt_list(missing)}. Train it there first, "
                          f"or pass --folds with finished ones.")
    return init


def _precision(cfg: Config, accelerator: str) -> str:
    if cfg.train.precision != "auto":
        return {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}[cfg.train.precision]
    if accelerator != "gpu":
        return "32-true"  # bf16 on a CPU without native support is hundreds of times slower than fp32
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def _quiet_lightning() -> None:
    """Keep the terminal for podium's own output: no hardware banner, no tips, no known-harmless warnings."""
    import logging
    import warnings

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")  # fold<k>/ holds metrics.csv first
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning vs torch 2.14 deprecation notice
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # in-process reads are the fast path


def make_trainer(cfg: Config, fold_dir: Path, steps_per_epoch: int, fold: int = 0, **overrides):
    """The Lightning Trainer podium trains every fold with (overrides: for benchmarks and tests)."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
    from podium.engine import AtomicCheckpointIO, EpochMetricsCSV, metric_mode
    from podium.tracking import fold_loggers

    _quiet_lightning()
    gpu = cfg.train.accelerator == "gpu" or (cfg.train.accelerator == "auto" and torch.cuda.is_available())
    accelerator = "gpu" if gpu else "cpu"
    mode = metric_mode(cfg.cv.metric, cfg.data)
    callbacks = [ModelCheckpoint(dirpath=fold_dir, filename="best", monitor="val_metric", mode=mode, save_last=True,
                                 save_top_k=1, enable_version_counter=False, auto_insert_metric_name=False),
                 EpochMetricsCSV(fold_dir / "metrics.csv"), RichProgressBar(leave=False)]
    if cfg.train.patience > 0:
        callbacks.append(EarlyStopping("val_metric", patience=cfg.train.patience, mode=mode))
    settings = dict(
        max_epochs=cfg.train.epochs, accelerator=accelerator, devices=cfg.train.devices,
        precision=_precision(cfg, accelerator), accumulate_grad_batches=cfg.train.accumulate,
        gradient_clip_val=cfg.train.grad_clip, callbacks=callbacks, plugins=[AtomicCheckpointIO()],
        logger=fold_loggers(cfg, fold_dir, fold), num_sanity_val_steps=0,
        enable_model_summary=False, log_every_n_steps=max(1, min(50, steps_per_epoch)),
    )
    return pl.Trainer(**{**settings, **overrides})


def train_fold(cfg: Config, data: TrainData, rd: Path, k: int, resume: bool, stats: tuple[tuple, tuple]) -> dict:
    from podium.augment import eval_pipeline, train_pipeline
    from podium.engine import seed_everything
    from podium.predict import predict_probs
    from podium.tasks import make_task

    fold_dir = rd / f"fold{k}"
    t0 = time.time()
    is_val = data.frame["fold"].to_numpy() == k
    key = data.frame["target"].to_numpy()  # one class per row (multitask: the combination) for the sampler
    task = data.task or make_task(cfg.data, data.classes)
    targets = data.targets if data.targets is not None else key
    tr_idx, va_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    seed_everything(cfg.train.seed + k)  # weights init differs per fold, but is fixed by the seed
    sampler = create_sampler(cfg.train.resolved_sampler(), key[tr_idx], cfg.train.seed + k,
                             cfg.train.repeat_threshold)
    train_loader = make_loader(data.images, targets, tr_idx, cfg.train.batch_size, None, sampler=sampler,
                               pipeline=train_pipeline(cfg.augment, data.channels),
                               augment_seed=cfg.train.seed * 1000 + k)
    val_loader = make_loader(data.images, targets, va_idx, cfg.train.eval_batch_size, None,
                             pipeline=eval_pipeline(cfg.augment, data.channels))
    start = fold_weights(cfg.train.init_from, k) if cfg.train.stage == "classifier" else None
    module = build_module(cfg, task, data.channels, len(train_loader), train_targets=targets[tr_idx],
                          init_state=start, stats=stats)
    trainer = make_trainer(cfg, fold_dir, len(train_loader), fold=k)
    last = fold_dir / "last.ckpt"
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if resume and last.exists() else None)
    if trainer.global_rank != 0:
        return {}
    module.load_state_dict(load_checkpoint(fold_dir / "best.ckpt")["state_dict"])
    probs = predict_probs(module, data.images, va_idx, cfg.train.eval_batch_size, tta="none")
    oof = pd.DataFrame({"id": data.frame["id"].to_numpy()[va_idx], "fold": k,
                        "label": data.frame["label"].to_numpy()[va_idx]})
    oof[data.classes] = probs
    atomic_write_csv(fold_dir / "oof.csv", oof)
    done = {"fold": k, "best_epoch": int(pd.read_csv(fold_dir / "metrics.csv").pipe(_best_epoch, cfg.cv.metric)),
            "epochs_run": trainer.current_epoch, "seconds": round(time.time() - t0, 1)}
    atomic_write_json(fold_dir / "done.json", done)
    return done


def _best_epoch(rows: pd.DataFrame, metric: str) -> int:
    col = rows[f"val_{metric}"]
    return int(rows["epoch"].iloc[col.idxmin() if metric == "logloss" else col.idxmax()])


def merge_folds(rd: Path, cv_metric: str, task=None) -> dict:
    """Merge every finished fold's OOF into oof.csv and score them (by `task`, default the run's) into metrics.json.
    Multi-label scores use the 0.5 thresholds: the fitted ones (thresholds.json) would flatter the OOF."""
    from podium.tasks import run_task

    classes = RunDir(rd).classes()
    task = task or run_task(rd)
    task.set_decision(None)
    n_folds = RunDir(rd).folds()["fold"].nunique()
    parts = [pd.read_csv(p, dtype={"id": str, "label": str}) for p in sorted(rd.glob("fold*/oof.csv"))
             if (p.parent / "done.json").exists()]
    if not parts:
        return {}
    oof = pd.concat(parts, ignore_index=True)

    def scores(df: pd.DataFrame) -> dict:
        s = task.score(task.parse(df["label"]), df[classes].to_numpy(dtype=np.float64))
        return {**s, "cv": s[cv_metric]}

    per_fold = {f"fold{int(k)}": {**scores(df), "n": len(df)} for k, df in oof.groupby("fold")}
    fold_cv = [v["cv"] for v in per_fold.values()]
    metrics = {"cv_metric": cv_metric, "higher_is_better": task.metrics[cv_metric].higher_is_better,
               "folds_done": sorted(int(k) for k in oof["fold"].unique()), "n_folds": n_folds,
               "complete": oof["fold"].nunique() == n_folds, "oof": {**scores(oof), "n": len(oof)},
               "cv": scores(oof)["cv"], "cv_fold_std": float(np.std(fold_cv)), "folds": per_fold}
    atomic_write_csv(rd / "oof.csv", oof.sort_values("id"))
    atomic_write_json(rd / "metrics.json", metrics)
    return metrics


def train(cfg: Config, folds: list[int] | None = None, resume: bool = False, overwrite: bool = False,
          config_path: Path | str | None = None) -> dict:
    """Train the listed folds (default all), skipping finished ones on resume; returns the merged metrics.
    `config_path`: the config file in use, which the run folder must never hold (podium.run.guard)."""
    from podium.run.guard import check_location, check_writable, open_run

    check_location(cfg, config_path)  # before anything is read or written
    check_writable(cfg.output_dir)
    data = load_data(cfg)
    all_folds = sorted(int(k) for k in np.unique(data.frame["fold"]))
    folds = all_folds if folds is None else folds
    bad = [k for k in folds if k not in all_folds]
    if bad:
        raise PodiumError(f"--folds {fmt_list(bad)} not in the split (folds {fmt_list(all_folds)}).")
    if cfg.train.stage == "classifier":
        check_init_run(cfg, data, folds)
    stats = normalisation(cfg, cfg.model.in_chans or data.channels, data.images)  # once: data stats read every image
    rd = open_run(cfg, config_path, note=_note)
    with fold_locks(rd.path, folds if _trains_on_this_rank() else [], note=_note) as held:
        _prepare_run(cfg, data, rd, folds, resume, overwrite, stats, held)
        for k in folds:
            if resume and rd.done_json(k).exists():
                continue
            done = train_fold(cfg, data, rd.path, k, resume, stats)
            fold_metrics = merge_folds(rd.path, cfg.cv.metric).get("folds", {}).get(f"fold{k}")
            if done and fold_metrics:
                Console(stderr=True).print(f"fold {k}: {cfg.cv.metric} {fold_metrics['cv']:.4f} (best epoch "
                                           f"{done['best_epoch']} of {done['epochs_run']}, {done['seconds']:.0f} s)")
        metrics = merge_folds(rd.path, cfg.cv.metric)
        if cfg.posthoc.method != "none" and metrics:
            metrics = _fit_posthoc(cfg, rd.path)
        if cfg.data.task == "multilabel" and metrics:
            metrics = fit_decision(cfg, rd.path)
    from podium.tracking import log_run

    log_run(cfg, rd.path, metrics)
    return metrics


def fit_decision(cfg: Config, rd: Path) -> dict:
    """Multi-label: per-label thresholds fitted on the merged OOF for cv.metric (RUN/thresholds.json, used by
    predict); returns metrics.json with the OOF score before and after."""
    from podium.tasks import make_task
    from podium.thresholds import fit_run_thresholds, summary

    task = make_task(cfg.data, RunDir(rd).classes())
    oof = RunDir(rd).oof(task.outputs)
    folds = sorted(int(k) for k in oof["fold"].unique())
    params = fit_run_thresholds(rd, task, cfg.cv.metric, task.parse(oof["label"]),
                                oof[task.outputs].to_numpy(np.float64), folds)
    Console(stderr=True).print(summary(params))
    return json.loads((rd / "metrics.json").read_text())


def _fit_posthoc(cfg: Config, rd: Path) -> dict:
    """Fit posthoc.method on the merged OOF (RUN/posthoc.json); returns metrics.json with its before/after scores."""
    from podium.posthoc import fit_run, summary

    params = fit_run(rd, cfg.posthoc.method, cfg.cv.metric, cfg.posthoc.tau, cfg.posthoc.tau_max)
    Console(stderr=True).print(summary(params))
    return json.loads((rd / "metrics.json").read_text())

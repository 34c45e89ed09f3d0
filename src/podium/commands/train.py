"""`podium train`: train the chosen folds of the persisted split into one run folder, then collect OOF.

Run folder <output_dir>/<name>/ (podium.run.RunDir; docs/run-folder.md):
  .podium-run                               the marker: podium made it (only a marked folder is ever removed)
  locks/fold<k>.lock                        held while a process trains fold k: one writer per fold
  config.yaml, folds.csv, classes.json      what the run was made from (run.json: input channels, mean/std)
  data.json                                 the data it was trained on: fingerprints, and the data version
  fold<k>/best.ckpt, last.ckpt              Lightning checkpoints (written atomically)
  fold<k>/metrics.csv                       one row per epoch
  fold<k>/oof.csv, fold<k>/done.json        the fold's out-of-fold probabilities, and its finished marker
  oof.csv, metrics.json                     every finished fold merged, per-fold and overall scores
Folds are independent, so machines can train disjoint folds into one shared folder; each finished fold
re-merges whatever folds are finished.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from rich.console import Console

from podium.commands.mirror import TrainMirror, mirror_url
from podium.commands.tracking import log_run
from podium.config import Config, config_changes
from podium.data.sources import table_fingerprint
from podium.engine.build import normalisation
from podium.engine.fold import TrainData, check_device, load_data, train_fold
from podium.errors import PodiumError, fmt_list
from podium.models import prepare_weights
from podium.posthoc import summary as posthoc_summary
from podium.run.decisions import fit_run, fit_run_thresholds
from podium.run.guard import check_location, check_writable, clear_run, open_run
from podium.run.lock import fold_locks, live_holders
from podium.run.merge import merge_folds
from podium.run.rundir import RunDir
from podium.run.writer import declare, is_writer
from podium.tasks import make_task
from podium.tasks.check import check_config
from podium.thresholds import summary as thresholds_summary


def run_dir(cfg: Config) -> Path:
    return Path(cfg.output_dir) / cfg.name


def _prepare_run(cfg: Config, data: TrainData, rd: RunDir, folds: list[int], resume: bool, overwrite: bool,
                 stats: tuple[tuple, tuple], held: list[dict], weights: dict | None = None) -> Path:
    """Refuse to clobber a finished run; write what it is made from (config, folds, classes, input stats and starting
    weights, data fingerprints). `rd` is checked and marked (podium.run.guard.open_run); `held`: the fold locks this
    process holds."""
    changed = config_changes(rd.config, cfg) if rd.config.exists() else []
    if changed:
        if not overwrite and rd.has_progress():
            raise PodiumError(f"Run folder '{rd.path}' holds a run made with a different config (it differs in "
                              f"{fmt_list(changed)}). Pass --overwrite to replace it, or set name=... to train a new "
                              "run.")
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
    rd.write_config(cfg)
    rd.write_folds(data.frame)
    rd.write_classes(data.classes)
    # the model's input stats, its starting weights, the size it predicts at
    rd.write_info(data.channels, len(data.frame), stats, weights, cfg.train.finetune_size or cfg.data.image_size)
    _record_data(rd, data)
    if data.pseudo is not None:
        rd.write_pseudo(data.pseudo)  # where its pseudo-labelled images came from: source, selection, per class
    return rd.path


def _record_data(rd: RunDir, data: TrainData) -> None:
    """data.json: the table's and the image files' fingerprints, and the data version they make. A run with finished
    folds keeps the record of the data they were trained on (a note says when the data changed since); a new run, or
    one without a finished fold or a readable record, records the data found now."""
    try:
        before = rd.data_version()
    except PodiumError:
        before = None  # damaged: written again
    prints = data.fingerprints or {}
    now = RunDir.data_record(table_fingerprint(data.frame), prints.get("images", ""), prints.get("cache", ""),
                             len(data.frame), data.exclude)
    done = rd.finished_folds()
    if before is None or not done:
        rd.write_data(now)
    elif before != now["version"]:
        _note(f"the data changed since fold(s) {fmt_list(done)} of '{rd.path}' were trained (data version "
              f"{before[:8]}, now {now['version'][:8]}; {rd.data_json} keeps theirs): retrain every fold "
              "(--overwrite) to train them all on the same data")


def _note(text: str) -> None:
    Console(stderr=True).print(text, highlight=False, markup=False)


# ------------------------------------------------------------------------- classifier re-training (cRT)


def check_init_run(cfg: Config, data: TrainData, folds: list[int]) -> Path:
    """cRT starts fold k from fold k of train.init_from: refuse unless that run has the same classes, the same
    folds (so no fold's validation images were ever trained on) and a finished fold k for every k asked for."""
    init = Path(cfg.train.init_from)
    ir = RunDir(init)
    if not ir.config.exists() or not ir.folds_csv.exists():
        raise PodiumError(f"train.init_from: '{init}' is not a trained run folder (no {ir.config.name} / "
                          f"{ir.folds_csv.name}).")
    if init.resolve() == run_dir(cfg).resolve():
        raise PodiumError(f"train.init_from is this run's own folder '{init}': give the classifier stage its own "
                          f"name, e.g. name={cfg.name}-crt.")
    classes = ir.classes()
    if classes != data.classes:
        raise PodiumError(f"train.init_from: '{init}' was trained on classes {fmt_list(classes)}, this data has "
                          f"{fmt_list(data.classes)}.")
    theirs = ir.folds().set_index("id")["fold"]
    ours = data.frame[data.frame["fold"] >= 0].set_index("id")["fold"]  # the labeled images: the split
    differ = ours.index.symmetric_difference(theirs.index).tolist()
    common = ours.index.intersection(theirs.index)
    differ += common[ours.loc[common].to_numpy() != theirs.loc[common].to_numpy()].tolist()
    if differ:
        raise PodiumError(f"train.init_from: '{init}' used other folds than this config ({len(differ)} id(s) differ, "
                          f"first: {fmt_list(differ[:5])}): its backbones saw some of this split's validation "
                          f"images. Use the same data, cv settings and folds file as that run.")
    missing = [k for k in folds if not ir.fold_dir(k).is_done()]
    if missing:
        raise PodiumError(f"train.init_from: '{init}' has no finished fold {fmt_list(missing)}. Train it there first, "
                          f"or pass --folds with finished ones.")
    return init


def train(cfg: Config, folds: list[int] | str | None = None, resume: bool = False, overwrite: bool = False,
          config_path: Path | str | None = None, mirror: str | None = None, fold_callbacks=None) -> dict | None:
    """Train the listed folds (default all; "next": the next fold no machine has taken, through the mirror, until
    none is left), skipping finished ones on resume; returns the merged metrics (None in the processes of a
    multi-device run other than rank 0, which writes them). `config_path`: the config file in use, which the run
    folder must never hold (podium.run.guard). `mirror`: the mirror's URL prefix (default cfg.mirror;
    docs/mirror.md). `fold_callbacks(k)`: extra Lightning callbacks for fold k (podium tune's pruner)."""
    cfg = check_config(cfg)  # loss_args filled in: the saved config.yaml records the loss exactly
    declare(cfg.train.devices, cfg.train.nodes)  # before the run folder is touched: which process writes it
    check_location(cfg, config_path)  # before anything is read or written
    check_device(cfg)  # train.compile where torch.compile cannot run
    if is_writer():
        check_writable(cfg.output_dir)
    url = mirror or cfg.mirror
    take_next = folds == "next"
    if take_next and not url:
        raise PodiumError("--folds next takes the next fold no machine has taken, through the mirror: pass --mirror "
                          "URL (file:///shared/folder for machines that share a disk).")
    if take_next and cfg.train.devices * cfg.train.nodes > 1:  # the ranks of one DDP run must train the same fold
        raise PodiumError("--folds next hands folds to processes one at a time, but train.devices/train.nodes make "
                          "one run of several processes: name the folds instead (--folds 0,1), or run one process "
                          "per GPU with --folds next (CUDA_VISIBLE_DEVICES, docs/mirror.md).")
    if take_next and overwrite:
        raise PodiumError("--folds next continues the run (it resumes a fold another machine started): it cannot "
                          "be combined with --overwrite. Name the folds to retrain: --folds 0,2 --overwrite.")
    weights = prepare_weights(cfg.model)  # located (or downloaded) before any image is read: offline fails fast
    data = load_data(cfg)
    all_folds = sorted(int(k) for k in np.unique(data.frame["fold"]) if k >= 0)  # not TRAIN_ONLY (data.pseudo)
    folds = all_folds if folds is None or take_next else folds
    bad = [k for k in folds if k not in all_folds]
    if bad:
        raise PodiumError(f"--folds {fmt_list(bad)} not in the split (folds {fmt_list(all_folds)}).")
    if cfg.train.stage == "classifier":
        check_init_run(cfg, data, folds)
    stats = normalisation(cfg, cfg.model.in_chans or data.channels, data.images)  # once: data stats read every image
    # multi-device: every process runs this command; only rank 0 touches the run folder and the mirror
    # (podium.run.writer), the others train beside it and return None
    writer = is_writer()
    rd = open_run(cfg, config_path, note=_note) if writer else RunDir(check_location(cfg, config_path))
    with TrainMirror(url and mirror_url(url, cfg.name), rd, writer, _note) as remote:
        remote.restore([] if take_next else folds, overwrite, lambda saved: config_changes(saved, cfg))
        with fold_locks(rd.path, [] if take_next or not writer else folds, note=_note) as held:
            if not take_next:
                remote.lease(folds, overwrite)
            if writer:
                _prepare_run(cfg, data, rd, [] if take_next else folds, resume, overwrite, stats, held, weights)
            for k in folds if not take_next else []:
                if resume and rd.done_json(k).exists():
                    continue
                _train_and_merge(cfg, data, rd, k, resume, stats, fold_callbacks, writer)
                remote.poke()
        while take_next and (k := remote.next_fold(all_folds)) is not None:
            with fold_locks(rd.path, [k], note=_note):
                _train_and_merge(cfg, data, rd, k, True, stats, fold_callbacks)
                remote.poke()
        if not writer:
            return None  # rank 0 merges, fits the decisions and logs the run
        remote.gather()  # the folds finished on other machines: the merge covers every finished fold
        metrics = merge_folds(rd.path, cfg.cv.metric)
        if cfg.posthoc.method != "none" and metrics:
            metrics = _fit_posthoc(cfg, rd.path)
        if cfg.data.task == "multilabel" and metrics:
            metrics = fit_decision(cfg, rd.path)
    log_run(cfg, rd.path, metrics)
    return metrics


def _train_and_merge(cfg: Config, data: TrainData, rd: RunDir, k: int, resume: bool, stats,
                     fold_callbacks=None, writer: bool = True) -> None:
    """Train fold k (with `fold_callbacks(k)`, if given), re-merge every finished fold and print the fold's score
    (the writing process only: podium.run.writer)."""
    extra = tuple(fold_callbacks(k)) if fold_callbacks else ()
    done = train_fold(cfg, data, rd.path, k, resume, stats, extra_callbacks=extra)
    if not writer:
        return
    fold_metrics = merge_folds(rd.path, cfg.cv.metric).get("folds", {}).get(f"fold{k}")
    if done and fold_metrics:
        first = done.get("first_step_seconds") if cfg.train.compile else None
        warmup = f", torch.compile warm-up {first:.1f} s" if first is not None else ""
        Console(stderr=True).print(f"fold {k}: {cfg.cv.metric} {fold_metrics['cv']:.4f} (best epoch "
                                   f"{done['best_epoch']} of {done['epochs_run']}, {done['seconds']:.0f} s"
                                   f"{warmup})")


def fit_decision(cfg: Config, rd: Path) -> dict:
    """Multi-label: per-label thresholds fitted on the merged OOF for cv.metric (RUN/thresholds.json, used by
    predict); returns metrics.json with the OOF score before and after."""
    task = make_task(cfg.data, RunDir(rd).classes())
    oof = RunDir(rd).oof(task.outputs)
    folds = sorted(int(k) for k in oof["fold"].unique())
    params = fit_run_thresholds(rd, task, cfg.cv.metric, task.parse(oof["label"]),
                                oof[task.outputs].to_numpy(np.float64), folds)
    Console(stderr=True).print(thresholds_summary(params))
    return RunDir(rd).metrics()


def _fit_posthoc(cfg: Config, rd: Path) -> dict:
    """Fit posthoc.method on the merged OOF (RUN/posthoc.json); returns metrics.json with its before/after scores."""
    params = fit_run(rd, cfg.posthoc.method, cfg.cv.metric, cfg.posthoc.tau, cfg.posthoc.tau_max)
    Console(stderr=True).print(posthoc_summary(params))
    return RunDir(rd).metrics()

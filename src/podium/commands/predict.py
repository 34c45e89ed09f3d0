"""`podium predict`: every finished fold's best checkpoint on the test set, TTA, fold average, submission.

With TTA (`--tta hflip,vflip`, `tta.views`; podium.tta) each finished fold's validation images are predicted again
with the same views by that fold's model (the one that never saw them), so the out-of-fold score with and without
TTA is known before anything reaches a leaderboard: RUN/oof_tta-<views>.csv, and RUN/predict.json records the
setting, both OOF scores, the time it took and the files written. metrics.json and oof.csv stay the plain run's.

Checkpoints are read through podium.run.load_checkpoint (`torch.load(weights_only=True)`): loading one never runs
pickled code.
The submission copies the competition template (`data.sample_submission`): same id order, same columns;
a label column gets the class names as the user wrote them, one column per class gets probabilities.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from podium.commands.mirror import predict_mirror
from podium.commands.train import fit_decision
from podium.config import Config
from podium.data.cache import build_cache
from podium.data.sources import load_test, load_train
from podium.data.submission import align_submission
from podium.engine.predict import load_fold_module, predict_probs
from podium.errors import PodiumError, fmt_list
from podium.io import atomic_write_csv
from podium.posthoc import apply_posthoc
from podium.run.decisions import posthoc_for as _posthoc_params
from podium.run.decisions import run_task
from podium.run.guard import data_paths
from podium.run.merge import merge_folds
from podium.run.outputs import check_out
from podium.run.rundir import RunDir
from podium.tta import check_combine, parse_tta, tta_key, tta_views


@dataclass(frozen=True)
class OOFWithTTA:
    """The OOF re-predicted with TTA by each fold's own model: scores without and with it over the same images."""

    file: str  # RUN/oof_tta-<views>.csv
    n: int  # images
    folds: list[int]
    metric: str  # cv.metric
    plain: dict[str, float]  # every score without TTA (the run's oof.csv)
    tta: dict[str, float]  # every score with TTA
    seconds: float
    images_predicted: int  # images x views


@dataclass(frozen=True)
class Prediction:
    """What `podium predict` wrote and how (RUN/predict.json holds the same)."""

    submission: Path
    test_probs: Path
    folds: list[int]  # the finished folds averaged
    tta: str  # the views' key, e.g. 'hflip' or 'none'
    combine: str  # mean_probs | mean_logits
    views: list[str]  # every view's label, identity first
    n: int  # submission rows
    posthoc: str | None  # the correction applied, e.g. 'logit_adjust (tau 1.2)'
    test_seconds: float
    test_images_predicted: int  # images x folds x views
    oof: OOFWithTTA | None  # None without TTA or with --no-oof

    def record(self) -> dict:
        """As JSON: paths as text."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def predict(run: Path, tta: str | list[str] | None = None, test_csv: Path | None = None, out: Path | None = None,
            overwrite: bool = False, posthoc: bool = True, how: str | None = None, oof: bool = True,
            mirror: str | None = None) -> Prediction:
    """`_predict`, with the run's mirror (`mirror`, a URL prefix, default the run's config's): RUN is pulled from
    <mirror>/<RUN's name> when it is not here, and what predict writes is mirrored there (docs/mirror.md)."""
    run = Path(run)
    if mirror is None and RunDir(run).config.exists():
        mirror = RunDir(run).load_config().mirror
    remote = predict_mirror(run, mirror, lambda text: Console(stderr=True).print(text, highlight=False, markup=False))
    if remote is None:
        return _predict(run, tta, test_csv, out, overwrite, posthoc, how, oof)
    with remote:
        return _predict(run, tta, test_csv, out, overwrite, posthoc, how, oof)


def _predict(run: Path, tta: str | list[str] | None = None, test_csv: Path | None = None, out: Path | None = None,
             overwrite: bool = False, posthoc: bool = True, how: str | None = None, oof: bool = True) -> Prediction:
    """Fold-averaged test probabilities with TTA (`tta`, default the run's tta.views; combined by `how`, default
    tta.combine) -> test_probs.csv and the submission; with TTA and `oof`, the OOF score with and without it
    (`oof_with_tta`). With `posthoc`, the correction fitted on the run's OOF (RUN/posthoc.json, `podium posthoc`) is
    applied to the averaged test probabilities."""
    run = Path(run)
    rd = RunDir(run)
    cfg = rd.load_config()
    names = parse_tta(cfg.tta.views if tta is None else tta)
    how = check_combine(how or cfg.tta.combine)
    if test_csv is not None:
        data = cfg.data.model_copy(update={"test_csv": Path(test_csv), "test_dir": None})
        cfg = cfg.model_copy(update={"data": data})
    folds = rd.finished_folds()
    if not folds:
        raise PodiumError(f"Run '{run}' has no finished fold yet. Train it first (`podium train`).")
    test = load_test(cfg)
    if test is None:
        raise PodiumError("The run's config names no test data: set data.test_csv or data.test_dir, or pass "
                          "--test-csv.")
    classes = rd.classes()
    info = rd.info()
    task = _run_task(run, cfg, folds)  # with its decision: multi-label thresholds fitted on these folds' OOF
    out = check_out(out if out is not None else rd.submission_csv, overwrite,
                    {"the run folder": run, **data_paths(cfg)}, allowed=(rd.submission_csv,))
    adjustment = _posthoc_params(run, cfg, folds) if posthoc else None  # refused before the work, not after
    oof_result = oof_with_tta(run, names, how, cfg=cfg, folds=folds) if names and oof else None
    t0 = time.time()
    size = rd.input_size(cfg.data.image_size)  # train.finetune_size when the run fine-tuned at a larger size
    cache = build_cache(list(test["path"]), size, cfg.data.resize, info["channels"], cfg.cache_dir(),
                        center_crop=cfg.data.center_crop)
    idx = np.arange(len(test))
    probs = np.mean([predict_probs(load_fold_module(cfg, run, k, len(classes), info["channels"], task), cache.images,
                                   idx, cfg.train.eval_batch_size, names, how) for k in folds], axis=0)
    if adjustment is not None:
        probs = apply_posthoc(probs, adjustment)
    table = pd.DataFrame({"id": test["id"]})
    table[classes] = probs
    rd.write_test_probs(table)
    if cfg.data.sample_submission is not None:
        sub = align_submission(Path(cfg.data.sample_submission), cfg.data.id_col, test["id"].to_numpy(), probs, classes,
                               task)
    else:
        sub = task.fill(pd.DataFrame({cfg.data.id_col: test["id"]}), task.default_columns(), probs, "the submission")
    atomic_write_csv(out, sub)
    n_views = len(tta_views(names))
    result = Prediction(submission=out, test_probs=rd.test_probs_csv, folds=folds, tta=tta_key(names), combine=how,
                        views=[label for label, _ in tta_views(names)], n=len(sub),
                        posthoc=None if adjustment is None else f"{adjustment['method']} (tau {adjustment['tau']:g})",
                        test_seconds=round(time.time() - t0, 1),
                        test_images_predicted=len(test) * len(folds) * n_views, oof=oof_result)
    rd.write_predict_record(result.record())
    return result


def oof_with_tta(run: Path, tta: str | list[str], how: str = "mean_probs", cfg: Config | None = None,
                 folds: list[int] | None = None) -> OOFWithTTA:
    """Each finished fold's validation images predicted again with TTA by that fold's model -> RUN/oof_tta-<...>.csv;
    returns the OOF scores without TTA (the run's oof.csv) and with it, over the same images, and the cost."""
    run = Path(run)
    rd = RunDir(run)
    cfg = cfg or rd.load_config()
    folds = folds if folds is not None else rd.finished_folds()
    names, how = parse_tta(tta), check_combine(how)
    classes = rd.classes()
    channels = rd.info()["channels"]
    task = run_task(run, cfg)
    task.set_decision(None)  # scored like metrics.json: multi-label at 0.5, before thresholds fitted on this OOF
    t0 = time.time()
    frame, _ = load_train(cfg)
    fold = _run_folds(run, frame["id"])
    cache = build_cache(list(frame["path"]), rd.input_size(cfg.data.image_size), cfg.data.resize, channels,
                        cfg.cache_dir(), center_crop=cfg.data.center_crop)
    parts = []
    for k in folds:
        va = np.flatnonzero(fold == k)
        part = pd.DataFrame({"id": frame["id"].to_numpy()[va], "fold": k, "label": frame["label"].to_numpy()[va]})
        part[classes] = predict_probs(load_fold_module(cfg, run, k, len(classes), channels, task), cache.images, va,
                                      cfg.train.eval_batch_size, names, how)
        parts.append(part)
    with_tta = pd.concat(parts, ignore_index=True).sort_values("id", kind="stable")
    written = rd.write_tta_oof(names, how, with_tta)
    plain = rd.oof(classes).set_index("id").loc[with_tta["id"]]
    y = task.parse(with_tta["label"])
    n_views = len(tta_views(names))
    return OOFWithTTA(file=written.name, n=len(with_tta), folds=folds, metric=cfg.cv.metric,
                      plain=task.score(y, plain[classes].to_numpy(dtype=np.float64)),
                      tta=task.score(y, with_tta[classes].to_numpy(dtype=np.float64)),
                      seconds=round(time.time() - t0, 1), images_predicted=len(with_tta) * n_views)


def _run_folds(run: Path, ids: pd.Series) -> np.ndarray:
    """The fold of each training id as the run recorded it (RUN/folds.csv); refused when the data changed."""
    rd = RunDir(run)
    recorded = rd.folds().set_index("id")["fold"]
    missing = ids[~ids.isin(recorded.index)]
    if len(missing) or len(ids) != len(recorded):
        raise PodiumError(f"The training data no longer matches '{rd.folds_csv}' ({len(ids)} images now, "
                          f"{len(recorded)} when trained; not in the run: {fmt_list(missing[:5].tolist())}): "
                          "the OOF with TTA needs the images the run was trained on. Pass --no-oof to skip it.")
    return recorded.loc[ids].to_numpy()


def _run_task(run: Path, cfg: Config, folds: list[int]):
    """The run's task with its decision; multi-label thresholds fitted on other folds than those predicting (or
    never fitted) are fitted again on the OOF of the finished folds."""
    task = run_task(run, cfg)
    if cfg.data.task == "multilabel":
        path = RunDir(run).thresholds_json
        fitted = RunDir(run).thresholds()
        if fitted is None or fitted.get("folds") != folds:
            Console(stderr=True).print(f"fitting thresholds on the OOF of folds {folds} ({path} was "
                                       f"{'fitted on other folds' if path.exists() else 'missing'})")
            merge_folds(run, cfg.cv.metric)
            fit_decision(cfg, run)
            task = run_task(run, cfg)
    return task

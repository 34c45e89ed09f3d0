"""`podium pseudo SOURCE --out DIR`: pseudo-label unlabeled images with a run's (or an ensemble's) predictions.

DIR gets three files and nothing else: pseudo.csv (the chosen pool images: id, absolute path, label = the most
probable class, soft = 1 with --soft, one probability column per class), pseudo.json (where they came from: the
source, the selection, the counts per class) and config.yaml (the source's config with data.pseudo=DIR and
name=<source>-pseudo), so `podium train DIR/config.yaml` trains on the labeled images plus these, on the persisted
folds of the labeled images unchanged. The pool images join every fold's training images at fold TRAIN_ONLY and no
validation fold (podium.engine.distill): the new run's CV stays comparable with the source's. The user's CSVs and
folds file are never written.

The pool: the source's test set, whose probabilities the source already holds (RUN/test_probs.csv, written by
`podium predict` or `podium ensemble`), or `--pool FOLDER_OR_CSV` (any unlabeled images, predicted here by the
source run's finished folds with its tta.views; an ensemble cannot predict new images).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from podium.config import Config
from podium.data.pseudo import class_balance, parse_threshold, select_threshold, select_top_fraction
from podium.data.sources import load_test, load_train
from podium.errors import PodiumError, fmt_list
from podium.run.decisions import run_task
from podium.run.guard import data_paths
from podium.run.outputs import check_out
from podium.run.rundir import RunDir
from podium.tasks import require_multiclass

DEFAULT_THRESHOLD = 0.9  # without --threshold or --top-fraction, hard labels need a top probability of 0.9
COLLISION_PREFIX = "pseudo-"  # pool ids that are also labeled ids all get it (ids must be unique in the table)


@dataclass(frozen=True)
class PseudoLabels:
    """What `podium pseudo` wrote (DIR/pseudo.json holds the same record)."""

    out: Path
    config: Path  # DIR/config.yaml: `podium train` it
    record: dict


def source_config(source: Path) -> tuple[RunDir, Config, str]:
    """The source folder, the config the new run starts from (a run's own; an ensemble's first run's) and its kind."""
    rd = RunDir(source)
    if rd.config.is_file():
        return rd, rd.load_config(), "run"
    record = rd.ensemble()
    if record is None:
        raise PodiumError(f"'{source}' is neither a run folder nor an ensemble folder (no {rd.config.name}, no "
                          f"{rd.ensemble_json.name}). Pass a trained run or a `podium ensemble` --out folder.")
    runs = record.get("runs")
    if not isinstance(runs, list) or not runs or not RunDir(runs[0]).config.is_file():
        raise PodiumError(f"'{rd.ensemble_json}' names no run whose config can be read (runs: {runs}): the new "
                          "training needs one. Make the ensemble again from finished runs.")
    return rd, RunDir(runs[0]).load_config(), "ensemble"


def pool_probs(rd: RunDir, cfg: Config, kind: str, classes: list[str],
               pool: Path | None) -> tuple[pd.DataFrame, np.ndarray, str]:
    """The pool's images (id, path) and their probabilities (N x C), and what the pool was, for the record."""
    if pool is None:
        test = load_test(cfg)
        probs = rd.test_probs(classes)
        if test is None or probs is None:
            why = "names no test data" if test is None else f"has no {rd.test_probs_csv.name}"
            make = "`podium predict RUN`" if kind == "run" else "`podium ensemble` from runs predicted on the test set"
            raise PodiumError(f"'{rd.path}' {why}: write its test predictions first ({make}), or pass --pool.")
        have = probs.set_index("id")
        missing = test["id"][~test["id"].isin(have.index)]
        if len(missing) or len(have) != len(test):
            raise PodiumError(f"'{rd.test_probs_csv}' does not cover the test set ({len(have)} rows, {len(test)} test "
                              f"images; not predicted: {fmt_list(missing[:5].tolist())}). Predict it again.")
        return test, have.loc[test["id"], classes].to_numpy(np.float64), "the source's test set"
    if kind != "run":
        raise PodiumError("--pool images must be predicted, which an ensemble folder cannot do: pass a run as SOURCE, "
                          "or predict the pool with each run and ensemble them into a folder used without --pool.")
    data = cfg.data.model_copy(update={"test_csv": pool if pool.is_file() else None,
                                       "test_dir": None if pool.is_file() else pool})
    test = load_test(cfg.model_copy(update={"data": data}))
    if test is None or not len(test):
        raise PodiumError(f"--pool '{pool}' holds no images.")
    return test, predict_pool(rd.path, cfg, test), str(pool)


def predict_pool(run: Path, cfg: Config, pool: pd.DataFrame) -> np.ndarray:
    """The pool's probabilities averaged over the run's finished folds, with its tta.views (no file written)."""
    from podium.data.cache import build_cache
    from podium.engine.predict import load_fold_module, predict_probs
    rd = RunDir(run)
    folds, classes, channels = rd.finished_folds(), rd.classes(), rd.info()["channels"]
    if not folds:
        raise PodiumError(f"Run '{run}' has no finished fold: train it before pseudo-labelling with it.")
    cache = build_cache(list(pool["path"]), cfg.data.image_size, cfg.data.resize, channels, cfg.cache_dir(),
                        center_crop=cfg.data.center_crop)
    task, idx = run_task(run, cfg), np.arange(len(pool))
    return np.mean([predict_probs(load_fold_module(cfg, run, k, len(classes), channels, task), cache.images, idx,
                                  cfg.train.eval_batch_size, cfg.tta.views or "none", cfg.tta.combine)
                    for k in folds], axis=0)


def _out_folder(out: Path, overwrite: bool, protected: dict[str, Path]) -> RunDir:
    """DIR, new or empty; one made by `podium pseudo` is replaced only with --overwrite; any other is refused."""
    check_out(out, overwrite, protected, folder=True)
    folder = RunDir(out)
    if out.exists():
        ours = {folder.pseudo_json, folder.pseudo_csv, folder.config}
        inside = set(out.iterdir()) if out.is_dir() else {out}
        if inside and not (folder.pseudo_json.is_file() and inside <= ours):
            raise PodiumError(f"--out '{out}' exists and holds files `podium pseudo` did not write: podium never "
                              "writes into it. Choose a new --out folder.")
        if inside and not overwrite:
            raise PodiumError(f"--out '{out}' holds earlier pseudo-labels. Pass --overwrite to replace them, or "
                              "choose another --out folder.")
    out.mkdir(parents=True, exist_ok=True)
    return folder


def pseudo(source: Path, out: Path, threshold: str | None = None, top_fraction: float | None = None,
           soft: bool = False, pool: Path | None = None, name: str | None = None,
           overwrite: bool = False) -> PseudoLabels:
    """Choose the pool images to pseudo-label and write DIR (module docstring); returns what was written."""
    source, out = Path(source), Path(out)
    if threshold is not None and top_fraction is not None:
        raise PodiumError("Give --threshold or --top-fraction, not both.")
    rd, cfg, kind = source_config(source)
    require_multiclass(cfg, "podium pseudo")
    classes = rd.classes() if kind == "run" else RunDir(rd.ensemble()["runs"][0]).classes()
    protected = {"the source": source, **data_paths(cfg)}
    if cfg.train.soft_targets is not None:
        protected["train.soft_targets"] = Path(cfg.train.soft_targets)
    folder = _out_folder(out, overwrite, protected)  # refused before any prediction, not after
    images, probs, pool_name = pool_probs(rd, cfg, kind, classes, pool)
    ids = images["id"].astype(str).to_numpy()
    if top_fraction is not None:
        keep, selection = select_top_fraction(probs, ids, top_fraction), {"top_fraction": top_fraction}
    elif threshold is not None or not soft:
        limits = parse_threshold(threshold if threshold is not None else str(DEFAULT_THRESHOLD), classes)
        keep, selection = select_threshold(probs, classes, limits), {"threshold": limits}
    else:
        keep, selection = np.ones(len(ids), dtype=bool), {"all": True}  # --soft alone: every image, as probabilities
    if not keep.any():
        best = float(probs.max(1).max()) if len(probs) else 0.0
        raise PodiumError(f"No pool image reaches the selection {selection} (the highest top probability is "
                          f"{best:.3f}): lower --threshold, or use --top-fraction.")
    labeled, _ = load_train(cfg.model_copy(update={"data": cfg.data.model_copy(update={"pseudo": None})}))
    renamed = bool(set(ids) & set(labeled["id"]))
    table = pd.DataFrame({"id": [COLLISION_PREFIX + i if renamed else i for i in ids[keep]],
                          "source_id": ids[keep],
                          "path": [str(Path(p).resolve()) for p in images["path"].to_numpy()[keep]],
                          "label": np.asarray(classes)[probs[keep].argmax(1)], "soft": int(soft)})
    table[classes] = probs[keep]
    record = {"source": str(source), "kind": kind, "pool": pool_name, "pool_images": len(ids), "kept": int(keep.sum()),
              "soft": soft, "selection": selection, "ids_prefixed": COLLISION_PREFIX if renamed else None,
              "per_class": class_balance(labeled["label"], probs.argmax(1), keep, classes),
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    new = cfg.model_copy(update={"name": name or f"{cfg.name}-pseudo",
                                 "data": cfg.data.model_copy(update={"pseudo": out})})
    folder.write_pseudo_table(table)
    folder.write_pseudo(record)
    folder.write_config(new)
    return PseudoLabels(out=out, config=folder.config, record=record)


def summary(record: dict) -> list[str]:
    """The class balance as text lines: per class, labeled images, pool images predicted as it, kept (share)."""
    lines = [f"{'class':<20} {'labeled':>8} {'predicted':>10} {'kept':>6} {'share':>6}"]
    for c, row in record["per_class"].items():
        lines.append(f"{c[:20]:<20} {row['labeled']:>8} {row['pool_predicted']:>10} {row['kept']:>6} "
                     f"{row['kept_share']:>6.1%}")
    return lines

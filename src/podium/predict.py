"""`podium predict`: every finished fold's best checkpoint on the test set, TTA, fold average, submission.

Checkpoints are read with `torch.load(weights_only=True)`: loading one never runs pickled code.
The submission copies the competition template (`data.sample_submission`): same id order, same columns;
a label column gets the class names as the user wrote them, one column per class gets probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from podium.augment import TTA, to_float
from podium.config import Config, load_config
from podium.errors import PodiumError, fmt_list
from podium.io import atomic_write_csv


@torch.inference_mode()
def predict_probs(module, images: np.ndarray, indices: np.ndarray, batch_size: int, tta: str = "none") -> np.ndarray:
    """Class probabilities (N x C, float64) for images[indices], averaged over the TTA views."""
    if tta not in TTA:
        raise PodiumError(f"Unknown TTA '{tta}'. Choose one of: {', '.join(TTA)}.")
    from podium.augment import eval_pipeline
    from podium.train import make_loader

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = module.to(device).eval()
    net = module.eval_model()
    out = []
    pipeline = eval_pipeline(module.cfg.augment, images.shape[-1])  # the edge channel when the model takes one
    for x, _ in make_loader(images, None, indices, batch_size, seed=None, pipeline=pipeline):
        xf = to_float(x.to(device, non_blocking=True), module.mean, module.std)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            views = [net(view(xf)).float().softmax(1) for view in TTA[tta]]
        out.append(torch.stack(views).mean(0).double().cpu())
    return torch.cat(out).numpy()


def finished_folds(rd: Path) -> list[int]:
    return sorted(int(p.parent.name[4:]) for p in rd.glob("fold*/done.json"))


def load_fold_module(cfg: Config, rd: Path, k: int, n_classes: int, channels: int):
    from podium.train import build_module

    info = json.loads((rd / "run.json").read_text()) if (rd / "run.json").exists() else {}
    stats = (tuple(info["mean"]), tuple(info["std"])) if "mean" in info else None  # as trained (augment.normalize)
    module = build_module(cfg.model_copy(update={"model": cfg.model.model_copy(update={"pretrained": False, "weights": None})}),
                          n_classes, channels, steps_per_epoch=1, stats=stats)
    state = torch.load(rd / f"fold{k}" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    return module


def align_submission(template_path: Path, id_col: str, ids: np.ndarray, probs: np.ndarray,
                     classes: list[str]) -> pd.DataFrame:
    """Fill the competition's template with our predictions, keeping its id order and column names."""
    from podium.data.sources import read_csv

    template = read_csv(template_path, "data.sample_submission")
    if id_col not in template.columns:
        raise PodiumError(f"Sample submission '{template_path}' has no id column '{id_col}' (data.id_col). "
                          f"Its columns: {fmt_list(template.columns)}.")
    ours = pd.Index(ids)
    theirs = pd.Index(template[id_col])
    missing, extra = theirs.difference(ours), ours.difference(theirs)
    if len(missing) or len(extra):
        raise PodiumError(f"Test ids do not match '{template_path}': {len(missing)} id(s) in the template but not in "
                          f"the test set (first: {fmt_list(missing[:5])}); {len(extra)} in the test set but not the "
                          f"template (first: {fmt_list(extra[:5])}). Point data.test_csv at the matching test list.")
    order = pd.Series(np.arange(len(ids)), index=ours).loc[template[id_col]].to_numpy()
    other = [c for c in template.columns if c != id_col]
    sub = template[[id_col]].copy()
    if set(other) == set(classes):  # one probability column per class
        for c in other:
            sub[c] = probs[order, classes.index(c)]
    elif len(other) == 1:
        sub[other[0]] = np.asarray(classes, dtype=object)[probs[order].argmax(1)]
    else:
        raise PodiumError(f"Cannot tell how to fill '{template_path}': besides '{id_col}' it has columns "
                          f"{fmt_list(other)}, which are neither one label column nor the classes.")
    return sub


def predict(run: Path, tta: str = "none", test_csv: Path | None = None, out: Path | None = None,
            overwrite: bool = False, posthoc: bool = True) -> dict:
    """Fold-averaged (and TTA-averaged) test probabilities -> test_probs.csv and the submission. With `posthoc`, the
    correction fitted on the run's OOF (RUN/posthoc.json, `podium posthoc`) is applied to the averaged probabilities."""
    from podium.data.cache import build_cache
    from podium.data.sources import load_test

    run = Path(run)
    if not (run / "config.yaml").exists():
        raise PodiumError(f"'{run}' is not a run folder (no config.yaml). Pass <output_dir>/<name> of a trained run.")
    cfg = load_config(run / "config.yaml")
    if test_csv is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"test_csv": Path(test_csv), "test_dir": None})})
    folds = finished_folds(run)
    if not folds:
        raise PodiumError(f"Run '{run}' has no finished fold yet. Train it first (`podium train`).")
    test = load_test(cfg)
    if test is None:
        raise PodiumError("The run's config names no test data: set data.test_csv or data.test_dir, or pass --test-csv.")
    classes = json.loads((run / "classes.json").read_text())
    info = json.loads((run / "run.json").read_text())
    out = Path(out) if out is not None else run / "submission.csv"
    if out.exists() and run.resolve() not in out.resolve().parents and not overwrite:
        raise PodiumError(f"'{out}' exists. Pass --overwrite to replace it, or choose another --out.")
    adjustment = _posthoc_params(run, cfg, folds) if posthoc else None  # refused before the work, not after
    cache = build_cache(list(test["path"]), cfg.data.image_size, cfg.data.resize, info["channels"], cfg.cache_dir(),
                        center_crop=cfg.data.center_crop)
    idx = np.arange(len(test))
    probs = np.mean([predict_probs(load_fold_module(cfg, run, k, len(classes), info["channels"]), cache.images, idx,
                                   cfg.train.eval_batch_size, tta) for k in folds], axis=0)
    if adjustment is not None:
        from podium.posthoc import apply_posthoc

        probs = apply_posthoc(probs, adjustment)
    table = pd.DataFrame({"id": test["id"]})
    table[classes] = probs
    atomic_write_csv(run / "test_probs.csv", table)
    if cfg.data.sample_submission is not None:
        sub = align_submission(Path(cfg.data.sample_submission), cfg.data.id_col, test["id"].to_numpy(), probs, classes)
    else:
        sub = pd.DataFrame({cfg.data.id_col: test["id"], cfg.data.label_col: np.asarray(classes)[probs.argmax(1)]})
    atomic_write_csv(out, sub)
    return {"submission": out, "test_probs": run / "test_probs.csv", "folds": folds, "tta": tta, "n": len(sub),
            "posthoc": None if adjustment is None else f"{adjustment['method']} (tau {adjustment['tau']:g})"}


def _posthoc_params(run: Path, cfg: Config, folds: list[int]) -> dict | None:
    """RUN/posthoc.json when the run has one; refused when it was fitted on other folds than those predicting."""
    from podium.posthoc import load_posthoc

    params = load_posthoc(run)
    if params is None:
        if cfg.posthoc.method != "none":
            raise PodiumError(f"The run's config sets posthoc.method={cfg.posthoc.method} but '{run}' has no "
                              f"posthoc.json: fit it with `podium posthoc {run}`, or pass --no-posthoc.")
        return None
    if params["folds"] != folds:
        raise PodiumError(f"'{run}/posthoc.json' was fitted on the OOF of folds {params['folds']}, but folds {folds} "
                          f"are finished now: refit it with `podium posthoc {run}`, or pass --no-posthoc.")
    return params

"""`podium export RUN`: the run's folds, TTA views and decision as one ONNX graph plus manifest.json, checked.

The export folder holds model.onnx (podium.ship.graph: uint8 N x H x W x C in, probabilities out) and manifest.json
(podium.ship.manifest: what to do before the graph — decode, crop, resize — and after it — the task's decision).
Before the folder is moved into place, ONNX Runtime runs the graph on real images of the run and its probabilities
are compared with podium's own prediction path (podium.engine.predict, the fold average, podium.posthoc): a
difference above PARITY_TOL in any output refuses the export, naming the output and the image.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from podium.config import Config
from podium.data.cache import build_cache
from podium.data.sources import load_test, load_train
from podium.engine.predict import load_fold_module, predict_probs
from podium.errors import PodiumError, fmt_list
from podium.io import atomic_write_json
from podium.posthoc import apply_posthoc
from podium.run.decisions import posthoc_for, run_task
from podium.run.guard import data_paths
from podium.run.outputs import check_out
from podium.run.rundir import RunDir
from podium.ship.graph import RunGraph, export_onnx
from podium.ship.manifest import INPUT, MANIFEST, MODEL, PARITY_TOL, file_sha256, make_manifest
from podium.tta import check_combine, parse_tta

PARITY_IMAGES = 32  # real images the parity check predicts both ways


@dataclass(frozen=True)
class Exported:
    """What `podium export` wrote."""

    out: Path  # the export folder
    folds: list[int]
    tta: list[str]  # view labels, identity first
    parity_images: int
    max_diff: float  # max |ONNX Runtime - PyTorch| over every probability checked
    seconds: float


def export_run(run: Path, folds: list[int] | None = None, tta: str | list[str] | None = None, how: str | None = None,
               fmt: str = "onnx", out: Path | None = None, overwrite: bool = False, posthoc: bool = True,
               parity_images: int = PARITY_IMAGES) -> Exported:
    """Export `folds` (default every finished one) of `run` with TTA `tta` (default the run's tta.views) into `out`
    (default RUN/onnx_export); refused when ONNX Runtime and PyTorch differ by more than PARITY_TOL."""
    t0 = time.time()
    if fmt != "onnx":
        raise PodiumError(f"--format {fmt}: podium exports onnx only.")
    run = Path(run)
    rd = RunDir(run)
    cfg = rd.load_config()
    folds = _folds(rd, folds)
    names, how = parse_tta(cfg.tta.views if tta is None else tta), check_combine(how or cfg.tta.combine)
    if cfg.augment.edges:
        raise PodiumError(f"Run '{run}' feeds the network an edge channel (augment.edges), computed with OpenCV "
                          "outside the network: `podium export` cannot put it in the graph. Use `podium predict`.")
    classes, channels = rd.classes(), rd.info()["channels"]
    task = run_task(run, cfg)
    _check_thresholds(rd, cfg, folds)
    adjustment = posthoc_for(run, cfg, folds) if posthoc else None
    out = Path(out) if out is not None else rd.export_dir
    _check_out(out, rd, cfg, overwrite)
    modules = [load_fold_module(cfg, run, k, len(classes), channels, task) for k in folds]
    images, ids, source = _parity_images(cfg, channels, parity_images)
    reference = np.mean([predict_probs(m, images, np.arange(len(images)), cfg.train.eval_batch_size, names, how)
                         for m in modules], axis=0)
    if adjustment is not None:
        reference = apply_posthoc(reference, adjustment)
    graph = RunGraph([m.cpu().eval_model().eval() for m in modules], modules[0].mean.cpu(), modules[0].std.cpu(),
                     names, how, task.activation,
                     None if adjustment is None else adjustment["log_prior"], 0.0 if adjustment is None else
                     adjustment["tau"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        exporter = export_onnx(graph, tmp / MODEL, cfg.data.image_size, channels)
        got = _onnx_probs(tmp / MODEL, images)
        max_diff = _check_parity(got, reference, classes, ids)
        manifest = make_manifest(cfg, task, classes, channels, folds, names, how, adjustment, exporter,
                                 {"images": len(images), "source": source, "max_abs_diff": max_diff,
                                  "tolerance": PARITY_TOL},
                                 {p.name: file_sha256(p) for p in sorted(tmp.iterdir())}, torch.__version__)
        atomic_write_json(tmp / MANIFEST, manifest)
        if out.exists():
            shutil.rmtree(out)  # a previous export, checked by _check_out and --overwrite
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Exported(out=out, folds=folds, tta=manifest["tta"]["views"], parity_images=len(images), max_diff=max_diff,
                    seconds=round(time.time() - t0, 1))


def _folds(rd: RunDir, folds: list[int] | None) -> list[int]:
    finished = rd.finished_folds()
    if not finished:
        raise PodiumError(f"Run '{rd.path}' has no finished fold yet. Train it first (`podium train`).")
    if folds is None:
        return finished
    missing = [k for k in folds if k not in finished]
    if missing:
        raise PodiumError(f"--folds {fmt_list(folds)}: fold(s) {fmt_list(missing)} of '{rd.path}' are not finished "
                          f"(finished: {fmt_list(finished)}).")
    return sorted(set(folds))


def _check_thresholds(rd: RunDir, cfg: Config, folds: list[int]) -> None:
    """Multi-label thresholds travel in the manifest: they must be those fitted on the exported folds' OOF."""
    if cfg.data.task != "multilabel":
        return
    fitted = rd.thresholds()
    if fitted is None or fitted.get("folds") != folds:
        was = "not written" if fitted is None else f"fitted on folds {fitted.get('folds')}"
        raise PodiumError(f"'{rd.thresholds_json}' was {was}, not on the exported folds {folds}: run `podium "
                          f"predict {rd.path}` (it refits them on the finished folds) or export --folds matching them.")


def _check_out(out: Path, rd: RunDir, cfg: Config, overwrite: bool) -> None:
    """An export folder replaces only an earlier export (a folder with manifest.json), and only with --overwrite."""
    check_out(out, True, {**data_paths(cfg), "the run folder": rd.path},
              what="--out", allowed=(rd.export_dir,), folder=True)
    if out.exists():
        if not (out / MANIFEST).is_file():
            raise PodiumError(f"--out '{out}' exists and is not a podium export (no {MANIFEST}): podium never "
                              "writes over it. Choose another --out.")
        if not overwrite:
            raise PodiumError(f"'{out}' already holds an export: pass --overwrite to replace it, or choose another "
                              "--out.")


def _parity_images(cfg: Config, channels: int, n: int) -> tuple[np.ndarray, list[str], str]:
    """Up to n decoded images of the run (the test set, else the training set), as podium predict reads them."""
    frame, source = load_test(cfg), "test"
    if frame is None:
        frame, source = load_train(cfg)[0], "train"
    frame = frame.iloc[:max(1, n)]
    cache = build_cache(list(frame["path"]), cfg.data.image_size, cfg.data.resize, channels, cfg.cache_dir(),
                        center_crop=cfg.data.center_crop)
    return np.ascontiguousarray(cache.images), [str(i) for i in frame["id"]], source


def _onnx_probs(model: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT: images})[0].astype(np.float64)


def _check_parity(got: np.ndarray, reference: np.ndarray, outputs: list[str], ids: list[str]) -> float:
    diff = np.abs(got - reference)
    row, col = np.unravel_index(int(diff.argmax()), diff.shape)
    worst = float(diff[row, col])
    if not worst <= PARITY_TOL:  # NaN fails too
        raise PodiumError(f"ONNX Runtime and PyTorch disagree on output '{outputs[col]}' of image '{ids[row]}': "
                          f"{got[row, col]:.6f} vs {reference[row, col]:.6f} (|diff| {worst:.2e} > {PARITY_TOL:g}). "
                          "Nothing was written; report it with the model name (`podium --debug export ...`).")
    return worst

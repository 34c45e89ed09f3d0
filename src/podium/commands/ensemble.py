"""`podium ensemble` and `podium diff`: combine runs (or anyone's CSV files) and see where predictions differ.

Runs that share folds are blended on their out-of-fold predictions first, so the blend's score is a CV
score, not a leaderboard guess: `weighted --optimize` fits non-negative weights summing to 1 on the joined
OOF for the configured metric, then applies them to the runs' test probabilities.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.stats import rankdata

from podium.data.submission import align_submission
from podium.errors import PodiumError, fmt_list
from podium.io import atomic_write_csv, read_csv
from podium.metrics import get_metric
from podium.run.files import OOF
from podium.run.guard import data_paths
from podium.run.marker import MARKER, marker_kind, write_marker
from podium.run.outputs import check_out
from podium.run.rundir import RunDir
from podium.tasks import require_multiclass


def _vote(stack: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Hard voting: each model's top class gets its weight; ties go to the higher mean probability."""
    votes = np.zeros(stack.shape[1:])
    rows = np.arange(stack.shape[1])
    for w, p in zip(weights, stack):
        votes[rows, p.argmax(1)] += w
    tiebreak = np.tensordot(weights, stack, axes=1) * 1e-6
    share = votes + tiebreak
    return share / share.sum(1, keepdims=True)


def _rank(stack: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rank averaging: each class column becomes its rank among the images (scale-free), then weighted."""
    ranks = np.stack([np.apply_along_axis(rankdata, 0, p) / len(p) for p in stack])
    blend = np.tensordot(weights, ranks, axes=1)
    return blend / blend.sum(1, keepdims=True)


# name -> (stack [M, N, C], weights [M]) -> blended probabilities [N, C]
METHODS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mean": lambda stack, w: np.tensordot(w, stack, axes=1),
    "weighted": lambda stack, w: np.tensordot(w, stack, axes=1),
    "vote": _vote,
    "rank": _rank,
}


def fit_weights(stack: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    """Non-negative weights summing to 1 that optimise `metric` on OOF: first the (smooth) log loss with
    SLSQP, then, for a non-smooth metric such as accuracy, a Nelder-Mead polish on the metric itself."""
    m = len(stack)
    m_info = get_metric(metric)
    sign = -1.0 if m_info.higher_is_better else 1.0

    def blend(w):
        w = np.clip(w, 0, None)
        w = w / w.sum() if w.sum() > 0 else np.full(m, 1 / m)
        return w, np.tensordot(w, stack, axes=1)

    def logloss(w):
        _, p = blend(w)
        return -np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-15, 1)))

    start = np.full(m, 1 / m)
    res = minimize(logloss, start, method="SLSQP", bounds=[(0, 1)] * m,
                   constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}])
    best = blend(res.x)[0]
    if metric != "logloss":
        score = lambda w: sign * m_info.fn(y, blend(w)[1])  # noqa: E731
        polish = minimize(score, best, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-6, "maxiter": 400})
        if score(polish.x) < score(best):
            best = blend(polish.x)[0]
        # a local search can end below a single model: the fitted blend never scores worse on OOF than one alone
        for corner in np.eye(m):
            if score(corner) < score(best):
                best = corner
    return best


@dataclass
class RunPredictions:
    name: str
    classes: list[str]
    oof: pd.DataFrame  # id, fold, label, classes...
    test: pd.DataFrame | None  # id, classes...
    folds: pd.DataFrame  # id, fold
    cfg: object
    oof_file: str = OOF  # which OOF: the plain one, or the TTA one matching RUN/test_probs.csv (RUN/predict.json)


def load_run(run: Path) -> RunPredictions:
    run = Path(run)
    rd = RunDir(run)
    for path in (rd.oof_csv, rd.classes_file, rd.folds_csv, rd.config):
        if not path.exists():
            raise PodiumError(f"'{run}' has no {path.name}: pass finished run folders (train every fold first).")

    cfg = rd.load_config()
    require_multiclass(cfg, "podium ensemble")
    oof_file = _oof_matching_test(run)
    classes = rd.classes()
    return RunPredictions(run.name, classes, rd.oof(classes, oof_file), rd.test_probs(classes), rd.folds(), cfg,
                          oof_file)


def _oof_matching_test(run: Path) -> str:
    """The OOF made like test_probs.csv: when the last `podium predict` used TTA and re-predicted the OOF with it
    (RUN/predict.json), that file (over every finished fold), so weights are fitted on what they are applied to."""
    rd = RunDir(run)
    oof = (rd.predict_record() or {}).get("oof")
    oof = oof if isinstance(oof, dict) else {}  # null: the last predict had no TTA
    if isinstance(oof.get("file"), str) and (rd / oof["file"]).exists() and oof.get("folds") == rd.finished_folds():
        return oof["file"]
    return OOF


def _check_compatible(runs: list[RunPredictions]) -> None:
    first = runs[0]
    for r in runs[1:]:
        if sorted(r.classes) != sorted(first.classes):
            raise PodiumError(f"Runs '{first.name}' and '{r.name}' have different classes: "
                              f"{fmt_list(sorted(set(first.classes) ^ set(r.classes)))} differ.")
        a = first.folds.set_index("id")["fold"]
        b = r.folds.set_index("id")["fold"].reindex(a.index)
        if len(r.folds) != len(first.folds) or b.isna().any() or (a != b).any():
            raise PodiumError(f"Runs '{first.name}' and '{r.name}' were trained on different folds, so their OOF "
                              "predictions cannot be blended fairly. Train both from the same split (cv.folds_file).")


def ensemble_folder(out: Path, overwrite: bool, protected: dict[str, Path]) -> Path:
    """Make `out` the (empty, marked) ensemble folder. Refused: a run of `podium train`, a folder podium did not make,
    one inside a run folder or one that is (or lies inside) `protected` (label -> path); an earlier ensemble folder
    unless `overwrite` (then it is replaced)."""
    check_out(out, overwrite, protected, what="--out", folder=True)
    target = out.resolve()
    if target.exists():
        kind = marker_kind(target) or ("ensemble" if RunDir(target).ensemble_json.is_file() else None)
        if not target.is_dir() or (kind is None and any(target.iterdir())):
            raise PodiumError(f"--out '{out}' exists and was not made by `podium ensemble` (no {MARKER} marker): "
                              "podium never writes into it. Choose another --out folder.")
        if kind not in (None, "ensemble") or RunDir(target).config.exists():
            raise PodiumError(f"--out '{out}' is a run made by `podium {kind}`: blending into it would replace its "
                              "OOF and submission. Choose another --out folder.")
        if kind == "ensemble":
            if not overwrite:
                raise PodiumError(f"--out '{out}' holds an earlier ensemble. Pass --overwrite to replace it, or choose "
                                  "another --out folder.")
            shutil.rmtree(target)  # podium's own ensemble folder: replaced whole, so no stale file survives
    write_marker(out, "ensemble")
    return out


@dataclass(frozen=True)
class Blend:
    """A blend of runs: its weights and the OOF scores of each run, their plain mean and the blend
    (OUT/ensemble.json holds the same)."""

    out: Path  # the ensemble folder
    metric: str  # cv.metric of the runs
    method: str  # mean | vote | weighted | rank
    weights: dict[str, float]  # run name -> weight
    oof_scores: dict[str, float]  # run name | 'mean' | 'blend' -> OOF score
    runs: list[str]
    oof_files: dict[str, str]  # run name -> the OOF file blended (oof.csv, or the TTA OOF matching test_probs.csv)
    submission: Path | None  # None when a run has no test_probs.csv yet


@dataclass(frozen=True)
class Combined:
    """Teammates' CSVs combined into one."""

    out: Path
    kind: str  # soft (mean of probabilities) | hard (weighted vote)
    n: int  # rows
    files: list[str]


def ensemble_runs(runs: list[Path], method: str = "mean", optimize: bool = False, weights: list[float] | None = None,
                  out: Path | None = None, overwrite: bool = False) -> Blend:
    """Blend runs on OOF (scored) and on test (written as a submission when every run has test_probs.csv) into
    `out` (default <output_dir>/ensemble-<method>-<runs>, replaced when it exists; an existing --out needs
    `overwrite`)."""
    if method not in METHODS:
        raise PodiumError(f"Unknown --method '{method}'. Choose one of: {', '.join(METHODS)}.")
    if len(runs) < 2:
        raise PodiumError("Give at least two runs to ensemble.")
    preds = [load_run(r) for r in runs]
    _check_compatible(preds)
    classes = preds[0].classes
    metric = preds[0].cfg.cv.metric
    ids = preds[0].oof.sort_values("id")["id"].to_numpy()
    stack = np.stack([p.oof.set_index("id").loc[ids, classes].to_numpy(dtype=np.float64) for p in preds])
    y = pd.Series(preds[0].oof.set_index("id").loc[ids, "label"]).map({c: i for i, c in enumerate(classes)}).to_numpy()
    fn = get_metric(metric).fn
    if weights is not None:
        if len(weights) != len(preds) or min(weights) < 0 or sum(weights) <= 0:
            raise PodiumError(f"--weights needs {len(preds)} non-negative numbers, one per run.")
        w = np.asarray(weights, dtype=float) / sum(weights)
    elif optimize:
        w = fit_weights(stack, y, metric)
    else:
        w = np.full(len(preds), 1 / len(preds))
    scores = {p.name: fn(y, s) for p, s in zip(preds, stack)}
    scores["mean"] = fn(y, METHODS["mean"](stack, np.full(len(preds), 1 / len(preds))))
    blend_oof = METHODS[method](stack, w)
    scores["blend"] = fn(y, blend_oof)
    result = {"metric": metric, "method": method, "weights": dict(zip([p.name for p in preds], w.round(4).tolist())),
              "oof_scores": scores, "runs": [str(r) for r in runs], "oof_files": {p.name: p.oof_file for p in preds}}
    default = Path(preds[0].cfg.output_dir) / f"ensemble-{method}-{'-'.join(p.name for p in preds)}"

    protected = {f"the run '{r}'": Path(r) for r in runs}
    for p in preds:
        protected.update({f"{key} of run '{p.name}'": path for key, path in data_paths(p.cfg).items()})
    out = ensemble_folder(Path(out) if out else default, overwrite or out is None, protected)
    folder = RunDir(out)
    oof = pd.DataFrame({"id": ids, "label": np.asarray(classes)[y]})
    oof[classes] = blend_oof
    folder.write_oof(oof)
    if all(p.test is not None for p in preds):
        test_ids = preds[0].test["id"].to_numpy()
        tstack = np.stack([p.test.set_index("id").loc[test_ids, classes].to_numpy(dtype=np.float64) for p in preds])
        probs = METHODS[method](tstack, w)
        table = pd.DataFrame({"id": test_ids})
        table[classes] = probs
        folder.write_test_probs(table)
        cfg = preds[0].cfg
        if cfg.data.sample_submission is not None:
            sub = align_submission(Path(cfg.data.sample_submission), cfg.data.id_col, test_ids, probs, classes)
        else:
            sub = pd.DataFrame({cfg.data.id_col: test_ids, cfg.data.label_col: np.asarray(classes)[probs.argmax(1)]})
        result["submission"] = str(folder.write_submission(sub))
    folder.write_ensemble(result)
    submission = result.get("submission")
    return Blend(out=Path(out), metric=metric, method=method, weights=result["weights"], oof_scores=scores,
                 runs=result["runs"], oof_files=result["oof_files"],
                 submission=Path(submission) if submission else None)


def _read_predictions(path: Path) -> tuple[pd.DataFrame, str | None, list[str], str]:
    """A submission (id + one label column) or a probability CSV (id + one column per class)."""
    frame = read_csv(Path(path), "prediction file")
    id_col = frame.columns[0]
    others = list(frame.columns[1:])
    if len(others) == 1:
        return frame.rename(columns={id_col: "id"}), others[0], [], id_col
    try:
        frame[others] = frame[others].astype(float)
    except ValueError:
        raise PodiumError(f"'{path}': columns after '{id_col}' must be one label column or one probability column "
                          "per class.") from None
    return frame.rename(columns={id_col: "id"}), None, others, id_col


def ensemble_files(files: list[Path], out: Path, weights: list[float] | None = None,
                   overwrite: bool = False) -> Combined:
    """Combine teammates' CSVs: probability files are averaged (soft), label files are voted (hard)."""
    check_out(out, overwrite, {f"input file '{f}'": Path(f) for f in files})
    loaded = [_read_predictions(f) for f in files]
    ids = loaded[0][0]["id"].to_numpy()
    for (frame, _, _, _), f in zip(loaded, files):
        if set(frame["id"]) != set(ids):
            raise PodiumError(f"'{f}' holds other ids than '{files[0]}' "
                              f"({len(set(frame['id']) ^ set(ids))} differ). Combine predictions of one test set.")
    w = np.asarray(weights if weights else [1.0] * len(files), dtype=float)
    w = w / w.sum()
    if all(lab is None for _, lab, _, _ in loaded):
        classes = loaded[0][2]
        stack = np.stack([fr.set_index("id").loc[ids, classes].to_numpy(dtype=float) for fr, _, _, _ in loaded])
        result = pd.DataFrame({"id": ids})
        result[classes] = np.tensordot(w, stack, axes=1)
        kind = "soft (mean of probabilities)"
    else:
        labels = np.stack([fr.set_index("id").loc[ids, lab].astype(str).to_numpy() if lab else
                           np.asarray(cls, dtype=object)[fr.set_index("id").loc[ids, cls].to_numpy(float).argmax(1)]
                           for fr, lab, cls, _ in loaded])
        names = sorted(set(labels.ravel()))
        counts = np.stack([(labels == n).T @ w for n in names], axis=1)  # [N, classes]
        label_col = next(lab for _, lab, _, _ in loaded if lab)
        result = pd.DataFrame({"id": ids, label_col: np.asarray(names, dtype=object)[counts.argmax(1)]})
        kind = "hard (weighted vote; ties to the first class name)"
    result = result.rename(columns={"id": loaded[0][3]})  # the first file's id column name
    atomic_write_csv(out, result)
    return Combined(out=Path(out), kind=kind, n=len(result), files=[str(f) for f in files])


def diff_submissions(a: Path, b: Path) -> pd.DataFrame:
    """Ids where two submissions disagree, with both labels (probability files compare their top class)."""
    rows = []
    for path in (a, b):
        frame, lab, classes, _ = _read_predictions(path)
        labels = frame[lab].astype(str) if lab else pd.Series(np.asarray(classes)[frame[classes].to_numpy().argmax(1)])
        rows.append(pd.Series(labels.to_numpy(), index=frame["id"].to_numpy()))
    left, right = rows
    if set(left.index) != set(right.index):
        raise PodiumError(f"'{a}' and '{b}' hold different ids ({len(set(left.index) ^ set(right.index))} differ).")
    right = right.loc[left.index]
    mask = left.to_numpy() != right.to_numpy()
    return pd.DataFrame({"id": left.index[mask], "a": left.to_numpy()[mask], "b": right.to_numpy()[mask]})

"""`podium report --compare A B`: two runs (or prediction files) side by side, and every id they disagree on.

A and B are each a run folder or a CSV: a submission (id + label column, or id + one probability column per
class), a run's test_probs.csv or oof.csv. Two runs are compared on their out-of-fold predictions, where the
true labels give scores, per-class F1 deltas and who was right; when both have test_probs.csv their test
predictions are compared too. Files are compared on the ids they share; a file inside a run folder borrows
that run's images and class order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from podium.errors import PodiumError, fmt_list
from podium.io import atomic_write_text
from podium.report import analysis
from podium.report.build import thumb
from podium.report.html import esc, figure, page, table
from podium.report.plots import image_uri
from podium.report.rundata import Run, is_run, load_run
from podium.run.guard import data_paths
from podium.run.outputs import check_out
from podium.run.rundir import RunDir

EXAMPLES = 48  # disagreements shown with their image; the table lists up to LISTED
LISTED = 500


@dataclass
class Side:
    name: str
    preds: pd.DataFrame  # index id; columns: pred (class name), conf (its probability or NaN), truth (or NaN)
    probs: pd.DataFrame | None  # index id; one column per class, when the source has probabilities
    classes: list[str]
    run: Run | None  # source of images, scores and class order
    split: str  # 'train' (OOF) or 'test'


def _frame(ids, classes: list[str], probs: np.ndarray | None, labels=None,
           truth=None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    index = pd.Index(np.asarray(ids, dtype=str), name="id")
    if probs is not None:
        top = probs.argmax(1)
        pred, conf = np.asarray(classes, dtype=object)[top], probs[np.arange(len(top)), top]
    else:
        pred, conf = np.asarray(labels, dtype=str), np.full(len(index), np.nan)
    preds = pd.DataFrame({"pred": pred, "conf": conf, "truth": truth if truth is not None else np.nan}, index=index)
    return preds, (pd.DataFrame(probs, index=index, columns=classes) if probs is not None else None)


def read_side(path: Path | str, split: str = "train") -> Side:
    """A run folder (its OOF, or with split='test' its test_probs.csv) or a predictions CSV."""
    path = Path(path)
    if is_run(path):
        run = load_run(path)
        if split == "test":
            if run.test_probs is None:
                raise PodiumError(f"Run '{path}' has no test predictions ('{RunDir(path).test_probs_csv}' is missing): "
                                  f"run `podium predict {path}` first.")
            t = run.test_probs
            preds, probs = _frame(t["id"], run.classes, t[run.classes].to_numpy(np.float64))
        else:
            preds, probs = _frame(run.oof["id"], run.classes, run.probs, truth=run.oof["label"].to_numpy(str))
        return Side(run.name, preds, probs, run.classes, run, split)
    if not path.is_file():
        raise PodiumError(f"'{path}' is neither a run folder nor a CSV file.")
    run = load_run(path.parent) if is_run(path.parent) and RunDir(path.parent).oof_csv.exists() else None
    frame = pd.read_csv(path, dtype=str)
    id_col = run.cfg.data.id_col if run is not None and run.cfg.data.id_col in frame.columns else frame.columns[0]
    is_oof = {"fold", "label"} <= set(frame.columns)
    other = [c for c in frame.columns if c not in (id_col, "fold") and not (is_oof and c == "label")]
    name = f"{path.parent.name}/{path.name}" if run is not None else path.name
    if len(other) == 1:  # a label column
        classes = run.classes if run is not None else sorted(frame[other[0]].unique())
        preds, probs = _frame(frame[id_col], classes, None, labels=frame[other[0]])
    else:
        try:
            values = frame[other].to_numpy(np.float64)
        except ValueError:
            raise PodiumError(f"'{path}': besides '{id_col}' its columns {fmt_list(other)} are neither one label "
                              "column nor one probability column per class.") from None
        preds, probs = _frame(frame[id_col], other, values, truth=frame["label"].to_numpy(str) if is_oof else None)
        classes = other
    return Side(name, preds, probs, classes, run, "train" if is_oof else "test")


def _scores(side: Side, ids: pd.Index, classes: list[str]) -> dict[str, float]:
    from podium.metrics import METRICS

    p = side.preds.loc[ids]
    y = p["truth"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    if side.probs is not None:
        probs = side.probs.loc[ids].reindex(columns=classes, fill_value=0.0).to_numpy(np.float64)
    else:  # labels only: a one-hot "probability" gives the label metrics; log loss is undefined
        probs = np.eye(len(classes))[p["pred"].map({c: i for i, c in enumerate(classes)}).to_numpy()]
    return {name: (m.fn(y, probs) if side.probs is not None or name != "logloss" else float("nan"))
            for name, m in METRICS.items()}


def _fmt(x: float) -> str:
    return "" if x != x else f"{x:.4f}"


def _delta(a: float, b: float, higher_is_better: bool) -> str:
    """B - A, with a word saying whether B is better (scores where lower is better, like log loss, included)."""
    if a != a or b != b:
        return ""
    d = b - a
    if abs(d) < 5e-5:
        return f"{d:+.4f}"
    return f"{d:+.4f} ({'better' if (d > 0) == higher_is_better else 'worse'})"


def _images(side_a: Side, side_b: Side, ids: list[str]) -> dict[str, np.ndarray]:
    for side in (side_a, side_b):
        if side.run is not None:
            got = side.run.images(ids, side.split)
            if got:
                return {k: thumb(v) for k, v in got.items()}
    return {}


def _disagreement_section(a: Side, b: Side, ids: pd.Index, examples: int) -> tuple[str, int]:
    pa, pb = a.preds.loc[ids], b.preds.loc[ids]
    differ = ids[pa["pred"].to_numpy() != pb["pred"].to_numpy()]
    has_truth = pa["truth"].notna().all()
    if has_truth:  # the instructive ones first: one right, the other wrong; then both wrong
        ta = pa.loc[differ, "pred"] == pa.loc[differ, "truth"]
        tb = pb.loc[differ, "pred"] == pa.loc[differ, "truth"]
        verdict = np.where(ta, f"{a.name} right", np.where(tb, f"{b.name} right", "both wrong"))
        differ = differ[np.argsort(np.where(ta | tb, 0, 1), kind="stable")]
        verdict = pd.Series(verdict, index=ta.index).loc[differ]
    shown = list(differ[:examples])
    pictures = _images(a, b, shown)

    def label(side_rows: pd.DataFrame, i: str) -> str:
        r = side_rows.loc[i]
        return f"{r['pred']}" + ("" if r["conf"] != r["conf"] else f" ({r['conf']:.3f})")

    def shown_label(side: Side, rows: pd.DataFrame, i: str) -> str:
        text = f"{esc(side.name)}: {esc(label(rows, i))}"
        if not has_truth:
            return text
        return f'<span class="{"ok" if rows.loc[i, "pred"] == pa.loc[i, "truth"] else "no"}">{text}</span>'

    tiles = []
    for i in shown:
        if i in pictures:
            head = f"<b>{esc(i)}</b>" + (f"<br>true <b>{esc(pa.loc[i, 'truth'])}</b>" if has_truth else "")
            caption = f"{head}<br>{shown_label(a, pa, i)}<br>{shown_label(b, pb, i)}"
            tiles.append(figure(image_uri(pictures[i]), caption))
    headers = ["id", *(["true"] if has_truth else []), a.name, b.name, *(["who is right"] if has_truth else [])]
    rows = [[i, *([pa.loc[i, "truth"]] if has_truth else []), label(pa, i), label(pb, i),
             *([verdict.loc[i]] if has_truth else [])] for i in differ[:LISTED]]
    more = f'<p class="note">First {LISTED} of {len(differ)} listed.</p>' if len(differ) > LISTED else ""
    note = "" if pictures or not shown else '<p class="note">No images found for these ids.</p>'
    html = (f"<p>{len(differ)} of {len(ids)} ids predicted differently ({len(differ) / max(len(ids), 1):.1%}); "
            f"agreement {1 - len(differ) / max(len(ids), 1):.4f}.</p>"
            f'<div class="grid">{"".join(tiles)}</div>{note}{table(headers, rows, left=len(headers))}{more}')
    return html, len(differ)


def _per_class(a: Side, b: Side, ids: pd.Index, classes: list[str]) -> str:
    pa, pb = a.preds.loc[ids], b.preds.loc[ids]
    index = {c: i for i, c in enumerate(classes)}
    n = len(classes)
    ca, cb = (analysis.distribution(p["pred"].map(index).to_numpy(), n) for p in (pa, pb))
    if pa["truth"].notna().all():
        y = pa["truth"].map(index).to_numpy()
        fa, fb = (analysis.per_class(analysis.confusion(y, p["pred"].map(index).to_numpy(), n), classes)
                  .set_index("class") for p in (pa, pb))
        rows = [[c, _fmt(fa.loc[c, "f1"]), _fmt(fb.loc[c, "f1"]), f"{fb.loc[c, 'f1'] - fa.loc[c, 'f1']:+.4f}",
                 _fmt(fa.loc[c, "recall"]), _fmt(fb.loc[c, "recall"]), str(int(fa.loc[c, "support"]))]
                for c in sorted(classes, key=lambda c: fb.loc[c, "f1"] - fa.loc[c, "f1"])]
        return table(["class", f"F1 {a.name}", f"F1 {b.name}", "Δ F1 (B − A)", f"recall {a.name}",
                      f"recall {b.name}", "support"], rows) + '<p class="note">Largest loss of B first.</p>'
    rows = [[c, str(ca[i]), str(cb[i]), f"{cb[i] - ca[i]:+d}"] for i, c in enumerate(classes)]
    return table(["class", f"predicted by {a.name}", f"predicted by {b.name}", "Δ (B − A)"], rows)


@dataclass(frozen=True)
class Comparison:
    out: Path  # the HTML page
    n: int  # ids both sides predict
    n_differ: int  # of those, predicted differently
    scores: dict[str, dict[str, float]]  # side name -> every score (empty without labels: test predictions)
    a: str  # the sides' names
    b: str


def compare(path_a: Path | str, path_b: Path | str, out: Path | str | None = None, examples: int = EXAMPLES,
            overwrite: bool = False) -> Comparison:
    """Write the comparison page (default: beside A, compare-<A>-vs-<B>.html, replaced; another existing `out` only
    with `overwrite`); returns its path and figures."""
    from podium.metrics import METRICS

    t0 = time.time()
    a, b = read_side(path_a), read_side(path_b)
    base = a.run.path if a.run is not None and is_run(Path(path_a)) else Path(path_a).parent
    default = base / f"compare-{_safe(a.name)}-vs-{_safe(b.name)}.html"
    out = check_out(out if out is not None else default, overwrite, _inputs(path_a, path_b, a, b), allowed=(default,))
    if a.split != b.split:
        raise PodiumError(f"Cannot compare out-of-fold predictions ({a.name if a.split == 'train' else b.name}) with "
                          f"test predictions ({b.name if a.split == 'train' else a.name}): give two runs, two OOF "
                          "files or two test/submission files.")
    ids = a.preds.index.intersection(b.preds.index, sort=False)
    if not len(ids):
        raise PodiumError(f"'{path_a}' and '{path_b}' share no id: are they predictions for the same images?")
    classes = list(dict.fromkeys([*a.classes, *b.classes]))
    sections = []
    only = (len(a.preds) - len(ids), len(b.preds) - len(ids))
    summary = [["A", f"{a.name} ({path_a})"], ["B", f"{b.name} ({path_b})"],
               ["compared", f"{len(ids)} shared ids ({'out-of-fold' if a.split == 'train' else 'test'})"
                + (f"; {only[0]} only in A, {only[1]} only in B" if any(only) else "")]]
    scores = {}
    if a.preds.loc[ids, "truth"].notna().all():
        scores = {s.name: _scores(s, ids, classes) for s in (a, b)}
        rows = [[m, _fmt(scores[a.name][m]), _fmt(scores[b.name][m]),
                 _delta(scores[a.name][m], scores[b.name][m], metric.higher_is_better)]
                for m, metric in METRICS.items()]
        body = table(["metric", a.name, b.name, "Δ (B − A)"], rows)
        for s in (a, b):
            if s.run is not None:
                mm = s.run.metrics
                summary.append([f"{s.name} CV", f"{mm['cv_metric']} {mm['cv']:.4f} ± {mm['cv_fold_std']:.4f} "
                                f"(folds {fmt_list(mm['folds_done'])})"])
        sections.append(("scores", "Scores side by side (on the shared ids)", body))
    sections.append(("per-class", "Per class", _per_class(a, b, ids, classes)))
    html, n_differ = _disagreement_section(a, b, ids, examples)
    sections.append(("disagreements", "Where they disagree", html))
    if a.run is not None and b.run is not None and a.split == "train":
        if a.run.test_probs is not None and b.run.test_probs is not None:
            ta, tb = read_side(a.run.path, "test"), read_side(b.run.path, "test")
            tids = ta.preds.index.intersection(tb.preds.index, sort=False)
            sections.append(("test-disagreements", "Test predictions: where they disagree",
                             _disagreement_section(ta, tb, tids, examples)[0]))
    sections.insert(0, ("summary", "Summary", table(["", ""], summary, left=2)))
    atomic_write_text(out, page(f"podium compare: {a.name} vs {b.name}",
                                f"generated in {time.time() - t0:.1f} s", sections))
    return Comparison(out=out, n=len(ids), n_differ=n_differ, scores=scores, a=a.name, b=b.name)


def _inputs(path_a: Path | str, path_b: Path | str, a: Side, b: Side) -> dict[str, Path]:
    """What the comparison page must never be written over: both inputs, their runs and the runs' data."""
    inputs = {"input A": Path(path_a), "input B": Path(path_b)}
    for side in (a, b):
        if side.run is not None:
            inputs.update({f"run '{side.run.name}'": side.run.path,
                           **{f"{key} of run '{side.run.name}'": p for key, p in data_paths(side.run.cfg).items()}})
    return inputs


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)

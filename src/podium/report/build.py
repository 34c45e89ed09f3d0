"""`podium report RUN`: one self-contained HTML page that shows what the model gets wrong.

Built from the run folder alone (plus the competition's images, when reachable): config and timings,
per-fold and OOF scores, learning curves, class distributions (train, OOF predictions, test predictions),
the OOF confusion matrix (counts and row-normalized), per-class precision/recall/F1 sorted by F1, the most
confused class pairs with examples, a gallery of the highest-loss OOF images, the likeliest mislabels, Grad-CAM
overlays for some of them and a reliability diagram. The galleries sample (`gallery`, `per_pair`, `gradcam`
images): a run with 60,000 OOF images embeds about a hundred pictures, not 60,000.

Only multiclass runs exist today; multi-label and multi-task runs will need their per-label / per-task
sections here when those task kinds land.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np

from podium.errors import PodiumError
from podium.io import atomic_write_text
from podium.report import analysis, plots
from podium.report.html import esc, figure, img, page, table
from podium.report.rundata import Run, load_run
from podium.report.terminal import score_names
from podium.run.guard import data_paths
from podium.run.outputs import check_out
from podium.run.rundir import RunDir

THUMB = 192  # px: larger images are shrunk to this side before embedding (they are shown at 140 px)


def thumb(arr: np.ndarray) -> np.ndarray:
    from podium.data.images import fit_image

    h, w = arr.shape[:2]
    if max(h, w) <= THUMB:
        return arr
    return fit_image(arr, THUMB, "pad")


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def summary_section(run: Run, seconds_hint: str) -> str:
    m, cfg = run.metrics, run.cfg
    rows = [["run", str(run.path)], ["model", f"{cfg.model.name} (pretrained: {cfg.model.pretrained})"],
            ["image size", f"{cfg.data.image_size} px ({cfg.data.resize}, {run.channels} channel(s))"],
            [f"CV {m['cv_metric']} (OOF)", f"{_fmt(m['cv'])} ± {_fmt(m['cv_fold_std'])} (std over folds)"],
            ["folds", f"{len(m['folds_done'])} of {m['n_folds']} done" + ("" if m["complete"] else " (partial)")],
            ["OOF images", str(m["oof"]["n"])], ["classes", str(len(run.classes))], ["report", seconds_hint]]
    return table(["", ""], rows, left=2)


def config_section(run: Run) -> str:
    rows, total = [], 0.0
    for k, fold in sorted(run.folds.items()):
        d = fold.done
        if d is None:
            rows.append([f"fold {k}", "unfinished", "", ""])
            continue
        total += d["seconds"]
        rows.append([f"fold {k}", f"{d['seconds']:.1f}", str(d["epochs_run"]), str(d["best_epoch"])])
    rows.append(["all folds", f"{total:.1f}", "", ""])
    timings = table(["fold", "training wall time (s)", "epochs run", "best epoch"], rows,
                    row_classes=[""] * (len(rows) - 1) + ["total"])
    return (f"<h3>Timings</h3>{timings}<details><summary>{esc(RunDir(run.path).config)} (every key, defaults filled "
            "in)</summary>"
            f"<pre>{esc(run.config_text)}</pre></details>")


def scores_section(run: Run) -> str:
    m = run.metrics
    names = score_names(m)
    headers = ["fold", "n", *[s + (" (cv)" if s == m["cv_metric"] else "") for s in names]]
    rows = [[k, str(v["n"]), *(_fmt(v[s]) for s in names)] for k, v in m["folds"].items()]
    rows.append(["OOF (all folds)", str(m["oof"]["n"]), *(_fmt(m["oof"][s]) for s in names)])
    return (table(headers, rows, row_classes=[""] * (len(rows) - 1) + ["total"])
            + f'<p class="note">cv = OOF {esc(m["cv_metric"])} = {_fmt(m["cv"])}; spread over folds (std) '
              f'{_fmt(m["cv_fold_std"])}. Log loss: lower is better.</p>')


def curves_section(run: Run) -> str:
    curves = {k: f.curves for k, f in run.folds.items() if not f.curves.empty}
    if not curves:
        return '<p class="note">No fold has finished an epoch yet: no learning curves to draw.</p>'
    return img(plots.learning_curves(curves, run.metrics["cv_metric"]), "learning curves per fold")


def distribution_section(run: Run) -> str:
    n = len(run.classes)
    counts = {"train (true labels of OOF rows)": analysis.distribution(run.y, n),
              "OOF predictions": analysis.distribution(run.pred, n)}
    note = ""
    if run.test_probs is not None and set(run.classes) <= set(run.test_probs.columns):
        counts["test predictions"] = analysis.distribution(run.test_probs[run.classes].to_numpy().argmax(1), n)
    else:
        note = '<p class="note">No test predictions yet (RUN/test_probs.csv): `podium predict RUN` adds them.</p>'
    rows = [[c, *(str(int(v[i])) for v in counts.values())] for i, c in enumerate(run.classes)]
    return (img(plots.distributions(counts, run.classes), "class distribution") + note
            + table(["class", *counts], rows))


def confusion_section(cm: np.ndarray, classes: list[str]) -> str:
    counts = img(plots.confusion_matrix(cm, classes, normalized=False), "confusion matrix (counts)")
    return ('<div class="grid">' + counts
            + img(plots.confusion_matrix(analysis.row_normalized(cm), classes, normalized=True),
                  "confusion matrix (row-normalized)") + "</div>"
            + '<p class="note">Rows: true class; columns: predicted class; from the out-of-fold predictions.</p>')


def per_class_section(cm: np.ndarray, classes: list[str]) -> str:
    t = analysis.per_class(cm, classes)
    rows = [[r["class"], _fmt(r["f1"]), _fmt(r["precision"]), _fmt(r["recall"]), str(int(r["support"])),
             str(int(r["predicted"]))] for r in t.to_dict("records")]
    return (table(["class", "F1", "precision", "recall", "support", "predicted"], rows)
            + '<p class="note">Worst F1 first. support: true images of the class; predicted: images predicted '
              "as it.</p>")


def _caption(run: Run, i: int, loss: float | None = None) -> str:
    t, p = run.y[i], run.pred[i]
    ok = "ok" if t == p else "no"
    parts = [f"<b>{esc(run.oof['id'].iloc[i])}</b> (fold {int(run.oof['fold'].iloc[i])})",
             f'true <b>{esc(run.classes[t])}</b> p={run.probs[i, t]:.3f}',
             f'<span class="{ok}">pred <b>{esc(run.classes[p])}</b> p={run.probs[i, p]:.3f}</span>']
    if loss is not None:
        parts.append(f"loss {loss:.3f}")
    return "<br>".join(parts)


def confused_section(run: Run, cm: np.ndarray, per_pair: int) -> str:
    pairs = analysis.confused_pairs(cm, top=10)
    if not pairs:
        return '<p class="note">No mistakes in the OOF predictions.</p>'
    examples = {pair: analysis.pair_examples(run.y, run.probs, pair[0], pair[1], per_pair) for pair in pairs}
    pictures = run.images(run.oof["id"].iloc[np.concatenate(list(examples.values()))])
    out = [table(["true", "predicted as", "images", "share of the true class"],
                 [[run.classes[t], run.classes[p], str(c), f"{c / max(cm[t].sum(), 1):.1%}"] for t, p, c in pairs],
                 left=2)]
    blocks = []
    for (t, p, c), rows in examples.items():
        tiles = [figure(plots.image_uri(thumb(pictures[i])), _caption(run, r))
                 for r in rows if (i := run.oof["id"].iloc[r]) in pictures]
        blocks.append(f'<div><h3>{esc(run.classes[t])} → {esc(run.classes[p])} ({c})</h3>'
                      f'<div class="grid">{"".join(tiles)}</div></div>')
    return "".join(out) + f'<div class="grid pairs">{"".join(blocks)}</div>' + _image_note(run, pictures)


def _image_note(run: Run, pictures: dict) -> str:
    return f'<p class="note">{esc(run.image_note)}</p>' if not pictures and run.image_note else ""


def losses_section(run: Run, rows: np.ndarray) -> str:
    loss = analysis.losses(run.y, run.probs)
    pictures = run.images(run.oof["id"].iloc[rows])
    tiles = [figure(plots.image_uri(thumb(pictures[i])), _caption(run, r, loss[r]))
             for r in rows if (i := run.oof["id"].iloc[r]) in pictures]
    listing = table(["id", "fold", "true", "predicted", "p(true)", "p(pred)", "loss"],
                    [[run.oof["id"].iloc[r], str(int(run.oof["fold"].iloc[r])), run.classes[run.y[r]],
                      run.classes[run.pred[r]], f"{run.probs[r, run.y[r]]:.4f}", f"{run.probs[r, run.pred[r]]:.4f}",
                      f"{loss[r]:.4f}"] for r in rows], left=4)
    return (f'<p class="note">The {len(rows)} OOF images with the highest loss (−log p(true class)), highest '
            f'first: label noise, ambiguous images and blind spots show up here.</p>'
            f'<div class="grid">{"".join(tiles)}</div>{_image_note(run, pictures)}<h3>The same as a list</h3>{listing}')


def suspects_section(run: Run, k: int) -> str:
    """The likeliest mislabels (`podium errors RUN --suspect` ranks the same way): images the fold model that never
    saw them gives most confidently to another class than their given one."""
    order, suspected, confidence = analysis.suspects(run.y, run.probs)
    rows, suspected = order[:k], suspected[:k]
    pictures = run.images(run.oof["id"].iloc[rows])
    tiles = [figure(plots.image_uri(thumb(pictures[i])),
                    f"<b>{esc(i)}</b> (fold {int(run.oof['fold'].iloc[r])})<br>given <b>{esc(run.classes[run.y[r]])}"
                    f"</b> p={run.probs[r, run.y[r]]:.3f}<br><span class=\"no\">suspected <b>{esc(run.classes[c])}</b> "
                    f"p={run.probs[r, c]:.3f}</span>")
             for r, c in zip(rows, suspected) if (i := run.oof["id"].iloc[r]) in pictures]
    return (f'<p class="note">The {len(rows)} OOF images whose fold model (which never trained on them) is most '
            "confident in another class than their given label: likely mislabels. `podium errors RUN --suspect` "
            "writes this list as a CSV whose action column (drop | relabel) a new run reads as data.exclude "
            f'(docs/label-review.md).</p><div class="grid">{"".join(tiles)}</div>{_image_note(run, pictures)}')


def gradcam_section(run: Run, rows: np.ndarray) -> str:
    from podium.engine.predict import load_fold_module
    from podium.report.gradcam import explain

    pictures = run.images(run.oof["id"].iloc[rows])
    rows = np.array([r for r in rows if run.oof["id"].iloc[r] in pictures], dtype=int)
    if not len(rows):
        return f'<p class="note">No images to explain. {esc(run.image_note)}</p>'
    folds = run.oof["fold"].to_numpy()[rows]
    tiles = {}
    for k in np.unique(folds):
        if run.folds.get(int(k)) is None or run.folds[int(k)].done is None:
            continue  # an unfinished fold's OOF rows are not in the report; a finished one's best.ckpt must load
        module = load_fold_module(run.cfg, run.path, int(k), len(run.classes), run.channels)
        mine = rows[folds == k]
        batch = np.stack([pictures[run.oof["id"].iloc[r]] for r in mine])
        try:
            by_pred = explain(module, batch, [int(run.pred[r]) for r in mine])
            by_true = explain(module, batch, [int(run.y[r]) for r in mine])
        except PodiumError as exc:
            return f'<p class="note">{esc(exc)}</p>'
        for r, image, hp, ht in zip(mine, batch, by_pred, by_true):
            tiles[r] = figure(plots.image_uri(thumb(image)), _caption(run, r) + "<br>image · CAM(pred) · CAM(true)",
                              [plots.image_uri(thumb(plots.overlay(image, hp))),
                               plots.image_uri(thumb(plots.overlay(image, ht)))])
    return ('<p class="note">Each image beside its Grad-CAM for the <b>predicted</b> class (middle) and the '
            "<b>true</b> class (right), from the fold model that never trained on it. Red: the regions whose "
            "features raised that class's score most. Heat on the background rather than the object means the "
            "model learned a shortcut.</p>"
            f'<div class="grid">{"".join(tiles[r] for r in rows if r in tiles)}</div>')


def calibration_section(run: Run) -> str:
    bins, ece = analysis.reliability(run.y, run.probs)
    rows = [[f"{r['lo']:.1f}–{r['hi']:.1f}", str(int(r["count"])), _fmt(r["confidence"]) if r["count"] else "",
             _fmt(r["accuracy"]) if r["count"] else ""] for r in bins.to_dict("records")]
    return (img(plots.reliability_diagram(bins, ece), "reliability diagram")
            + f"<p>Expected calibration error (ECE): <b>{_fmt(ece)}</b>. Bars below the diagonal: the model is "
              "over-confident there; above it, under-confident (label smoothing pulls probabilities down).</p>"
            + table(["top-class probability", "images", "mean confidence", "accuracy"], rows))


def build_report(run_path: Path | str, out: Path | str | None = None, gallery: int = 24, per_pair: int = 4,
                 gradcam: int = 8, overwrite: bool = False) -> Path:
    """Write the run's report (default RUN/report.html, replaced; another existing `out` only with `overwrite`)
    and return its path."""
    t0 = time.time()
    run = load_run(run_path)
    default = RunDir(run.path).report_html
    out = check_out(out if out is not None else default, overwrite,
                    {"the run folder": run.path, **data_paths(run.cfg)}, allowed=(default,))
    cm = analysis.confusion(run.y, run.pred, len(run.classes))
    worst = analysis.top_losses(run.y, run.probs, gallery)
    sections = [
        ("config", "Config and timings", config_section(run)),
        ("scores", "Scores per fold and out-of-fold", scores_section(run)),
        ("curves", "Learning curves", curves_section(run)),
        ("distribution", "Class distribution", distribution_section(run)),
        ("confusion", "Confusion matrix (OOF)", confusion_section(cm, run.classes)),
        ("per-class", "Per-class precision, recall, F1", per_class_section(cm, run.classes)),
        ("confused", "Most confused pairs", confused_section(run, cm, per_pair)),
        ("losses", "Highest-loss OOF images", losses_section(run, worst)),
        ("suspects", "Likely mislabels", suspects_section(run, gallery)),
        ("gradcam", "Where the model looks (Grad-CAM)", gradcam_section(run, worst[:gradcam]) if gradcam else
         '<p class="note">Turned off (--gradcam 0).</p>'),
        ("calibration", "Calibration (reliability diagram)", calibration_section(run)),
    ]
    when = datetime.now().strftime("%Y-%m-%d %H:%M")
    summary = summary_section(run, f"generated {when} in {time.time() - t0:.1f} s")
    html = page(f"podium report: {run.name}", f"{run.path} · {when}", [("summary", "Summary", summary), *sections])
    atomic_write_text(out, html)
    return out

"""`podium errors RUN --suspect`: the training images whose given label the run's own OOF predictions doubt most.

Each OOF probability comes from the fold model that never trained on the image, so an image that model gives
confidently to another class is a likely mislabel (S1/S4's "gender and age mislabelled", Cassava's noisy labels).
The list is printed and written as a CSV that `data.exclude` reads as it is (podium.data.exclude): id, given,
suspected, confidence, action (drop, the default, or relabel: the image takes the `suspected` label), fold. The
user edits the action column, then trains a new run with `data.exclude: that.csv`; their train.csv is never
touched. `podium report RUN` shows the same images.

Single-label runs rank images by their likeliest other class. Multi-label runs rank images by the label on which
the OOF disagrees most confidently with the given set (podium.report.analysis.label_suspects); an image's
`suspected` label set is the one its OOF probabilities predict at 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from podium.data.exclude import COLUMNS
from podium.errors import PodiumError
from podium.io import atomic_write_csv
from podium.report.analysis import label_suspects, suspects
from podium.run.guard import data_paths
from podium.run.outputs import check_out
from podium.run.rundir import RunDir

DEFAULT_FRACTION = 0.02  # the top 2%: a 5%-noisy set's worst offenders, few enough to look at one by one


@dataclass(frozen=True)
class SuspectList:
    table: pd.DataFrame  # COLUMNS + fold, most suspicious first
    n: int  # OOF images ranked
    out: Path | None  # the CSV written (None: not written)


def how_many(n: int, top: int | None, fraction: float | None) -> int:
    """--top N, or --fraction F of the n images (at least 1); default the top 2%."""
    if top is not None and fraction is not None:
        raise PodiumError("Give --top N or --fraction F, not both.")
    if top is not None:
        if top < 1:
            raise PodiumError(f"--top must be at least 1 (got {top}).")
        return min(top, n)
    fraction = DEFAULT_FRACTION if fraction is None else fraction
    if not 0.0 < fraction <= 1.0:
        raise PodiumError(f"--fraction must be in (0, 1], a share of the OOF images (got {fraction}).")
    return min(n, max(1, math.ceil(fraction * n)))


def rank(run_path: Path | str, top: int | None = None, fraction: float | None = None) -> SuspectList:
    """The run's most suspicious OOF images (not written)."""
    rd = RunDir(run_path)
    if not rd.is_started():
        raise PodiumError(rd.not_a_run())
    if not rd.oof_csv.exists():
        raise PodiumError(f"Run '{rd.path}' has no {rd.oof_csv.name} yet: train at least one fold first.")
    cfg = rd.load_config()
    outputs = rd.classes()
    oof = rd.oof(outputs)
    probs = oof[outputs].to_numpy(np.float64)
    k = how_many(len(oof), top, fraction)
    if cfg.data.task == "multiclass":
        index = {c: i for i, c in enumerate(outputs)}
        rows, suspected, confidence = suspects(oof["label"].map(index).to_numpy(), probs)
        rows, suspected, confidence = rows[:k], np.asarray(outputs)[suspected[:k]], confidence[:k]
    elif cfg.data.task == "multilabel":
        rows, suspected, confidence = _multilabel(oof["label"], probs, outputs, cfg.data.label_sep, k)
    else:
        raise PodiumError(f"podium errors --suspect ranks single-label (multiclass) and multi-label runs; this run is "
                          f"data.task={cfg.data.task}.")
    table = pd.DataFrame({"id": oof["id"].to_numpy()[rows], "given": oof["label"].to_numpy()[rows],
                          "suspected": suspected, "confidence": np.round(confidence, 4), "action": "drop",
                          "fold": oof["fold"].to_numpy()[rows]})
    return SuspectList(table=table[[*COLUMNS, "fold"]], n=len(oof), out=None)


def _multilabel(given: pd.Series, probs: np.ndarray, outputs: list[str], sep: str, k: int):
    """The k images with the surest disagreement; each one's suspected set is the OOF's own (p > 0.5), which
    differs from the given set at least in that label when the disagreement is over 0.5."""
    label_sets = [set(t.split(sep)) - {""} if isinstance(t, str) else set() for t in given]
    hot = np.array([[c in s for c in outputs] for s in label_sets], dtype=np.float64).reshape(len(given), len(outputs))
    rows, _, confidence = label_suspects(hot, probs)
    rows, confidence = rows[:k], confidence[:k]
    suspected = [sep.join(c for c, p in zip(outputs, probs[r]) if p > 0.5) for r in rows]
    return rows, np.array(suspected, dtype=object), confidence


def write_suspects(run_path: Path | str, top: int | None = None, fraction: float | None = None,
                   out: Path | str | None = None, overwrite: bool = False) -> SuspectList:
    """Rank and write the CSV (default RUN/suspects.csv). An existing file is replaced only with `overwrite`: the
    user edits its action column."""
    rd = RunDir(run_path)
    found = rank(run_path, top, fraction)
    cfg = rd.load_config()
    target = out if out is not None else rd.suspects_csv
    target = check_out(target, overwrite, data_paths(cfg), allowed=(rd.suspects_csv,))
    if Path(target).exists() and not overwrite:
        raise PodiumError(f"'{target}' exists (its action column may hold your edits). Pass --overwrite to replace "
                          "it, or choose another --out.")
    atomic_write_csv(Path(target), found.table)
    return SuspectList(table=found.table, n=found.n, out=Path(target))

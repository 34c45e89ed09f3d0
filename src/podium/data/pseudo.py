"""Pseudo-labels: which unlabeled images a model is sure enough about (`podium pseudo`), and how they join the
training table (`data.pseudo`) without ever entering a validation fold.

Selection is a pure function of the predicted probabilities: `--threshold` keeps every image whose top probability
reaches its predicted class's threshold; `--top-fraction f` keeps, within each predicted class, the ceil(f x n) most
confident images (ties broken by id), so a class the model predicts often cannot crowd the others out.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from podium.data.splits import TRAIN_ONLY
from podium.errors import PodiumError, fmt_list


def parse_threshold(text: str, classes: list[str]) -> dict[str, float]:
    """'0.9' -> every class 0.9; '0.9,cat=0.95,dog=0.8' -> a default and per-class thresholds (class names as in
    classes.json). Each in (0, 1]."""
    default, per_class = None, {}
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        name, _, value = part.rpartition("=") if "=" in part else ("", "", part)
        try:
            number = float(value)
        except ValueError:
            raise PodiumError(f"--threshold '{text}': '{value}' is not a number (e.g. --threshold 0.9 or "
                              "--threshold 0.9,cat=0.95)") from None
        if not 0.0 < number <= 1.0:
            raise PodiumError(f"--threshold '{text}': {number:g} is not a probability in (0, 1]")
        if not name:
            default = number
        elif name not in classes:
            raise PodiumError(f"--threshold '{text}': '{name}' is not a class (classes: {fmt_list(classes, 10)})")
        else:
            per_class[name] = number
    if default is None and set(per_class) != set(classes):
        raise PodiumError(f"--threshold '{text}' gives no default for the classes it does not name: start it with "
                          "one, e.g. --threshold 0.9," + ",".join(f"{c}=..." for c in list(per_class)[:2]))
    return {c: per_class.get(c, default) for c in classes}


def select_threshold(probs: np.ndarray, classes: list[str], thresholds: dict[str, float]) -> np.ndarray:
    """Rows whose top probability is at least their predicted class's threshold (a boolean mask)."""
    limit = np.array([thresholds[c] for c in classes])[probs.argmax(1)]
    return probs.max(1) >= limit


def select_top_fraction(probs: np.ndarray, ids: np.ndarray, fraction: float) -> np.ndarray:
    """Within each predicted class, the ceil(fraction x n) rows of highest top probability, ties by id ascending."""
    if not 0.0 < fraction <= 1.0:
        raise PodiumError(f"--top-fraction {fraction:g} must be in (0, 1] (the share of each predicted class kept)")
    pred, conf = probs.argmax(1), probs.max(1)
    keep = np.zeros(len(probs), dtype=bool)
    order = np.lexsort((np.asarray(ids, dtype=str), -conf))  # by confidence descending, then id
    for c in np.unique(pred):
        rows = order[pred[order] == c]
        keep[rows[:math.ceil(fraction * len(rows))]] = True
    return keep


def class_balance(labeled: pd.Series, pool_pred: np.ndarray, kept: np.ndarray, classes: list[str]) -> dict:
    """Per class: labeled images, pool images predicted as it, and those kept, with each kept class's share."""
    n_kept = max(int(kept.sum()), 1)
    out = {}
    for i, c in enumerate(classes):
        k = int(((pool_pred == i) & kept).sum())
        out[c] = {"labeled": int((labeled == c).sum()), "pool_predicted": int((pool_pred == i).sum()), "kept": k,
                  "kept_share": round(k / n_kept, 4)}
    return out


def join_pseudo(frame: pd.DataFrame, table: pd.DataFrame, classes: list[str], source: str) -> pd.DataFrame:
    """The training table (id, path, label, target, fold) with the pseudo-labelled rows of `table` (podium pseudo's
    pseudo.csv, named `source` in messages) appended at fold TRAIN_ONLY: they train in every fold, validate in none."""
    unknown = sorted(set(table["label"]) - set(classes))
    if unknown:
        raise PodiumError(f"'{source}' labels images with classes this data does not have ({fmt_list(unknown, 5)}): "
                          f"it was made for other data. Make it again with `podium pseudo` from a run on this data.")
    both = sorted(set(table["id"]) & set(frame["id"]))
    if both:
        raise PodiumError(f"'{source}' holds {len(both)} id(s) that are also labeled training images "
                          f"({fmt_list(both, 5)}): an image is either labeled or pseudo-labelled. Make it again with "
                          "`podium pseudo` (it renames colliding pool ids).")
    rows = pd.DataFrame({"id": table["id"].astype(str), "path": table["path"].astype(str),
                         "label": table["label"].astype(str)})
    rows["target"] = rows["label"].map({c: i for i, c in enumerate(classes)}).astype(int)
    rows["fold"] = TRAIN_ONLY
    return pd.concat([frame, rows[[c for c in rows.columns if c in frame.columns]]], ignore_index=True)

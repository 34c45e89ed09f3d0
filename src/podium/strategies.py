"""Fold strategies (`cv.strategy`, `podium list strategies`): how K folds are drawn from the training table.

Each entry builds the (train_idx, val_idx) pairs of the folds from (table, CVConfig); podium.data.splits sorts the
table by id first and persists the result as folds.csv. The table has the columns id and label, `group` when
cv.group_col is set, and for multi-label or multi-task data the `labels` tuples and the `stratify` key that
podium.data.sources adds (the rarest label an image holds / the combination of the tasks' classes).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

from podium.config import CVConfig
from podium.registry import Entry, Registry


def _key(frame: pd.DataFrame) -> pd.Series:
    """What the stratified strategies balance: the class, or for multilabel / multitask data the `stratify` column."""
    return frame["stratify"] if "stratify" in frame.columns else frame["label"]


def _kfold(frame: pd.DataFrame, cv: CVConfig):
    return KFold(cv.n_folds, shuffle=True, random_state=cv.seed).split(frame)


def _stratified(frame: pd.DataFrame, cv: CVConfig):
    return StratifiedKFold(cv.n_folds, shuffle=True, random_state=cv.seed).split(frame, _key(frame))


def _group(frame: pd.DataFrame, cv: CVConfig):
    return GroupKFold(cv.n_folds, shuffle=True, random_state=cv.seed).split(frame, groups=frame["group"])


def _stratified_group(frame: pd.DataFrame, cv: CVConfig):
    splitter = StratifiedGroupKFold(cv.n_folds, shuffle=True, random_state=cv.seed)
    return splitter.split(frame, _key(frame), groups=frame["group"])


def _multilabel(frame: pd.DataFrame, cv: CVConfig):
    """Iterative stratification (Sechidis et al. 2011; iterative-stratification's MultilabelStratifiedKFold): every
    label's positives spread over the folds as evenly as possible, rarest labels first. Reads the `labels` tuples of
    a multi-label table; a single-label table is the special case of one label per image."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    sets = frame["labels"] if "labels" in frame.columns else frame["label"].map(lambda x: (x,))
    names = sorted({x for tup in sets for x in tup})
    index = {c: i for i, c in enumerate(names)}
    hot = np.zeros((len(frame), max(1, len(names))), dtype=int)
    for i, tup in enumerate(sets):
        hot[i, [index[x] for x in tup]] = 1
    return MultilabelStratifiedKFold(n_splits=cv.n_folds, shuffle=True, random_state=cv.seed).split(frame, hot)


# build: (table sorted by id, CVConfig) -> (train_idx, val_idx) per fold
STRATEGIES = Registry("strategies", "cv.strategy", [
    Entry("kfold", "random folds, ignoring the labels", None, _kfold),
    Entry("stratified", "every class in the same proportion in each fold (multilabel / multitask data: the rarest "
                        "label / the combination of the tasks' classes); the default", None, _stratified),
    Entry("group", "the images of one cv.group_col value (person, patient, session) never span two folds", None,
          _group),
    Entry("stratified_group", "group, keeping the class proportions as far as the groups allow", None,
          _stratified_group),
    Entry("multilabel", "iterative stratification: every label's positives spread evenly over the folds, rarest "
                        "first (the default for data.task=multilabel)", None, _multilabel),
], noun="strategy")
GROUPED = ("group", "stratified_group")  # the strategies that read cv.group_col

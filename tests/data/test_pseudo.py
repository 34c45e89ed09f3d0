"""Pseudo-label selection picks exactly the expected images; joined images are train-only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from podium.data.pseudo import (
    class_balance,
    join_pseudo,
    parse_threshold,
    select_threshold,
    select_top_fraction,
)
from podium.data.splits import TRAIN_ONLY
from podium.errors import PodiumError

CLASSES = ["cat", "dog", "owl"]
IDS = np.array(["a", "b", "c", "d", "e", "f", "g"])
PROBS = np.array([
    [0.95, 0.03, 0.02],  # a cat 0.95
    [0.80, 0.10, 0.10],  # b cat 0.80
    [0.10, 0.90, 0.00],  # c dog 0.90
    [0.20, 0.70, 0.10],  # d dog 0.70
    [0.05, 0.05, 0.90],  # e owl 0.90
    [0.30, 0.30, 0.40],  # f owl 0.40
    [0.80, 0.15, 0.05],  # g cat 0.80 (ties with b)
])


def test_threshold_keeps_the_rows_at_or_above_their_predicted_class_threshold():
    kept = IDS[select_threshold(PROBS, CLASSES, parse_threshold("0.9", CLASSES))]
    assert kept.tolist() == ["a", "c", "e"]  # 0.9 itself is kept
    per_class = parse_threshold("0.9,cat=0.8,owl=0.4", CLASSES)
    assert per_class == {"cat": 0.8, "dog": 0.9, "owl": 0.4}
    assert IDS[select_threshold(PROBS, CLASSES, per_class)].tolist() == ["a", "b", "c", "e", "f", "g"]


def test_top_fraction_keeps_the_most_confident_share_of_each_predicted_class_ties_by_id():
    # cat: a 0.95, b 0.80, g 0.80 -> ceil(0.5 x 3) = 2: a, then b (ties broken by id); dog: c; owl: e
    assert IDS[select_top_fraction(PROBS, IDS, 0.5)].tolist() == ["a", "b", "c", "e"]
    assert select_top_fraction(PROBS, IDS, 1.0).all()
    assert IDS[select_top_fraction(PROBS, IDS, 0.01)].tolist() == ["a", "c", "e"]  # at least one per class
    with pytest.raises(PodiumError, match="top-fraction"):
        select_top_fraction(PROBS, IDS, 0.0)


@pytest.mark.parametrize("text, match", [("x", "not a number"), ("1.5", "not a probability"),
                                         ("0.9,bird=0.5", "not a class"), ("cat=0.5", "no default")])
def test_bad_thresholds_are_refused_naming_the_part(text, match):
    with pytest.raises(PodiumError, match=match):
        parse_threshold(text, CLASSES)


def test_class_balance_counts_labeled_predicted_and_kept():
    kept = select_threshold(PROBS, CLASSES, parse_threshold("0.9", CLASSES))
    balance = class_balance(pd.Series(["cat", "cat", "dog"]), PROBS.argmax(1), kept, CLASSES)
    assert balance["cat"] == {"labeled": 2, "pool_predicted": 3, "kept": 1, "kept_share": pytest.approx(1 / 3, 1e-3)}
    assert balance["owl"]["labeled"] == 0 and balance["owl"]["pool_predicted"] == 2


def _frame():
    return pd.DataFrame({"id": ["x1", "x2"], "path": ["/p/x1.png", "/p/x2.png"], "label": ["cat", "owl"],
                         "target": [0, 2], "fold": [0, 1]})


def test_join_appends_pool_images_at_the_train_only_fold():
    table = pd.DataFrame({"id": ["p1"], "path": ["/q/p1.png"], "label": ["dog"], "soft": [0],
                          "cat": [0.1], "dog": [0.8], "owl": [0.1]})
    joined = join_pseudo(_frame(), table, CLASSES, "pseudo.csv")
    assert joined["id"].tolist() == ["x1", "x2", "p1"]
    assert joined["fold"].tolist() == [0, 1, TRAIN_ONLY] and joined["target"].tolist() == [0, 2, 1]
    assert TRAIN_ONLY < 0  # no validation fold k >= 0 ever equals it


def test_join_refuses_an_id_that_is_labeled_and_an_unknown_class():
    table = pd.DataFrame({"id": ["x2"], "path": ["/q/x2.png"], "label": ["dog"], "soft": [0]})
    with pytest.raises(PodiumError, match="also labeled training images .*x2"):
        join_pseudo(_frame(), table, CLASSES, "pseudo.csv")
    with pytest.raises(PodiumError, match="other data"):
        join_pseudo(_frame(), table.assign(id="p9", label="bird"), CLASSES, "pseudo.csv")

"""Ensembles: weight fitting recovers known weights, methods, run compatibility, file voting, diff."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from podium.commands.ensemble import METHODS, diff_submissions, ensemble_files, fit_weights
from podium.errors import PodiumError


def _dirichlet(rng, n, c, alpha=0.7):
    return rng.dirichlet(np.full(c, alpha), size=n)


def test_fit_weights_recovers_the_weights_that_generated_the_labels():
    """Labels drawn from 0.7*A + 0.3*B: a proper scoring rule is optimised at exactly those weights."""
    rng = np.random.default_rng(0)
    a, b = _dirichlet(rng, 40_000, 4), _dirichlet(rng, 40_000, 4)
    truth = 0.7 * a + 0.3 * b
    y = np.array([rng.choice(4, p=p) for p in truth])
    w = fit_weights(np.stack([a, b]), y, "logloss")
    assert w == pytest.approx([0.7, 0.3], abs=0.03)
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0)


def test_fit_weights_for_accuracy_never_loses_to_the_best_single_model():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, size=3000)
    good = np.eye(5)[y] * 0.6 + _dirichlet(rng, 3000, 5) * 0.4  # informative
    noise = _dirichlet(rng, 3000, 5)  # useless
    stack = np.stack([noise, good])
    w = fit_weights(stack, y, "accuracy")
    blend_acc = (np.tensordot(w, stack, axes=1).argmax(1) == y).mean()
    assert blend_acc >= (good.argmax(1) == y).mean() - 1e-9
    assert w[1] > w[0]


def test_vote_and_rank_return_distributions_and_vote_follows_the_majority():
    p = np.array([[[0.9, 0.1], [0.4, 0.6]], [[0.6, 0.4], [0.45, 0.55]], [[0.2, 0.8], [0.9, 0.1]]])
    w = np.full(3, 1 / 3)
    for name, fn in METHODS.items():
        out = fn(p, w)
        assert out.shape == (2, 2) and np.allclose(out.sum(1), 1.0), name
    vote = METHODS["vote"](p, w)
    assert vote.argmax(1).tolist() == [0, 1]  # image 0: 2 of 3 say class 0; image 1: 2 of 3 say class 1


def test_files_soft_and_hard_and_diff(tmp_path):
    ids = ["x", "y", "z"]
    pd.DataFrame({"id": ids, "cat": [0.9, 0.2, 0.5], "dog": [0.1, 0.8, 0.5]}).to_csv(tmp_path / "p1.csv", index=False)
    second = pd.DataFrame({"id": ids[::-1], "cat": [0.1, 0.3, 0.3], "dog": [0.9, 0.7, 0.7]})
    second.to_csv(tmp_path / "p2.csv", index=False)
    res = ensemble_files([tmp_path / "p1.csv", tmp_path / "p2.csv"], tmp_path / "soft.csv")
    soft = pd.read_csv(tmp_path / "soft.csv").set_index("id")
    assert "soft" in res.kind and soft.loc["x", "cat"] == pytest.approx((0.9 + 0.3) / 2)  # aligned by id
    for i, labels in enumerate([["cat", "dog", "dog"], ["cat", "dog", "cat"], ["dog", "dog", "cat"]]):
        pd.DataFrame({"image_id": ids, "label": labels}).to_csv(tmp_path / f"s{i}.csv", index=False)
    ensemble_files([tmp_path / f"s{i}.csv" for i in range(3)], tmp_path / "hard.csv")
    hard = pd.read_csv(tmp_path / "hard.csv")
    assert list(hard.columns) == ["image_id", "label"] and hard["label"].tolist() == ["cat", "dog", "cat"]
    d = diff_submissions(tmp_path / "s0.csv", tmp_path / "s2.csv")
    assert d.to_dict("records") == [{"id": "x", "a": "cat", "b": "dog"}, {"id": "z", "a": "dog", "b": "cat"}]
    pd.DataFrame({"image_id": ["x", "q", "z"], "label": ["cat"] * 3}).to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(PodiumError, match="different ids"):
        diff_submissions(tmp_path / "s0.csv", tmp_path / "other.csv")


def test_ensemble_runs_scores_oof_and_writes_an_aligned_submission(tiny_competition):
    import json

    from podium.commands.ensemble import ensemble_runs
    from podium.commands.predict import predict
    from podium.commands.train import train
    from podium.config import load_config

    runs = tiny_competition.parent / "runs"
    for name, seed in (("a", 1), ("b", 2)):
        train(load_config(tiny_competition, [f"name={name}", f"train.seed={seed}", "train.epochs=2"]))
        predict(runs / name)
    res = ensemble_runs([runs / "a", runs / "b"], method="weighted", optimize=True)
    saved = json.loads((runs / "ensemble-weighted-a-b" / "ensemble.json").read_text())
    oof_a = json.loads((runs / "a" / "metrics.json").read_text())["cv"]
    assert saved["oof_scores"]["a"] == pytest.approx(oof_a)  # the same OOF the run reported
    assert saved["oof_scores"]["blend"] >= max(saved["oof_scores"]["a"], saved["oof_scores"]["b"]) - 1e-9
    sub = pd.read_csv(res.submission, dtype=str)
    template = pd.read_csv(tiny_competition.parent / "sample_submission.csv", dtype=str)
    assert list(sub["id"]) == list(template["id"])
    assert saved["oof_files"] == {"a": "oof.csv", "b": "oof.csv"}
    # after `podium predict --tta`, the blend is fitted on the OOF made with the same TTA as the test probabilities
    tta = predict(runs / "a", tta="hflip")
    saved = ensemble_runs([runs / "a", runs / "b"], method="mean")
    assert saved.oof_files == {"a": "oof_tta-hflip.csv", "b": "oof.csv"}
    assert saved.oof_scores["a"] == pytest.approx(tta.oof.tta["accuracy"])
    # a run on other folds cannot be blended: its OOF rows were predicted by differently trained models
    train(load_config(tiny_competition, ["name=c", "train.epochs=1", "cv.seed=9",
                                         f"cv.folds_file={tiny_competition.parent / 'other_folds.csv'}"]))
    with pytest.raises(PodiumError, match="different folds"):
        ensemble_runs([runs / "a", runs / "c"])

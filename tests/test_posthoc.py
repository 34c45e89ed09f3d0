"""posthoc.py: the adjustment's math, tau fitted on OOF, posthoc.json written by train and applied by predict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from podium.commands.predict import predict
from podium.commands.train import train
from podium.config import load_config
from podium.errors import PodiumError
from podium.metrics import METRICS, score_all
from podium.posthoc import adjust, fit_tau
from tests.conftest import CLASSES


def test_adjustment_divides_by_the_prior_and_renormalises():
    p = np.array([[0.7, 0.2, 0.1]])
    prior = np.array([0.6, 0.3, 0.1])
    ratio = np.array([0.7 / 0.6, 0.2 / 0.3, 0.1 / 0.1])
    np.testing.assert_allclose(adjust(p, np.log(prior), 1.0), [ratio / ratio.sum()])  # Bayes: p x (1/C) / prior
    half = np.array([0.7 / 0.6 ** 0.5, 0.2 / 0.3 ** 0.5, 0.1 / 0.1 ** 0.5])
    np.testing.assert_allclose(adjust(p, np.log(prior), 0.5), [half / half.sum()])
    np.testing.assert_allclose(adjust(p, np.log(prior), 0.0), p)
    assert adjust(p, np.log(prior), 1.0).argmax() == 0 and adjust(p, np.log(prior), 2.0).argmax() == 2


def _long_tail_oof(seed: int = 0):
    """OOF of a model that learnt p(y|x) under a 16:3:1 training prior on top of a balanced-classes posterior q."""
    rng = np.random.default_rng(seed)
    counts = np.array([800, 150, 50])
    y = np.repeat(np.arange(3), counts)
    scores = 1.2 * np.eye(3)[y] + rng.normal(size=(len(y), 3))
    q = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    p = q * counts / counts.sum()
    return p / p.sum(1, keepdims=True), y, np.log(counts / counts.sum())


def test_fitted_tau_undoes_the_training_prior_for_balanced_accuracy():
    p, y, log_prior = _long_tail_oof()
    tau, scores = fit_tau(p, y, log_prior, "balanced_accuracy", tau_max=2.0)
    assert list(scores)[:3] == [0.0, 0.05, 0.1] and list(scores)[-1] == 2.0
    assert 0.7 <= tau <= 1.3  # the prior was multiplied in once: tau ~ 1 removes it
    assert scores[tau] == max(scores.values()) and scores[tau] > scores[0.0] + 0.05
    acc_tau, _ = fit_tau(p, y, log_prior, "accuracy", tau_max=2.0)
    assert acc_tau < tau  # plain accuracy on a skewed validation set wants the prior kept
    ll_tau, ll = fit_tau(p, y, log_prior, "logloss", tau_max=2.0)  # lower is better: the minimum is picked
    assert ll[ll_tau] == min(ll.values())


def test_train_fits_posthoc_and_predict_applies_it(tiny_competition):
    cfg = load_config(tiny_competition, ["train.epochs=2", "posthoc.method=prior"])
    metrics = train(cfg)
    run = tiny_competition.parent / "runs" / "tiny"
    params = json.loads((run / "posthoc.json").read_text())
    assert params["method"] == "prior" and params["tau"] == 1.0 and params["folds"] == [0, 1, 2]
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    y = oof["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    probs = oof[CLASSES].to_numpy()
    counts = np.bincount(y, minlength=3)
    assert params["class_counts"] == counts.tolist()
    after = score_all(y, adjust(probs, np.log(counts / counts.sum()), 1.0))
    assert metrics["posthoc"]["oof_before"] == pytest.approx(score_all(y, probs))
    assert metrics["posthoc"]["oof_after"] == pytest.approx(after)
    assert json.loads((run / "metrics.json").read_text())["posthoc"]["oof_after"] == pytest.approx(after)

    raw = pd.read_csv(predict(run, posthoc=False).test_probs)[CLASSES].to_numpy()
    res = predict(run)
    assert res.posthoc == "prior (tau 1)"
    fixed = pd.read_csv(res.test_probs)[CLASSES].to_numpy()
    np.testing.assert_allclose(fixed, adjust(raw, np.log(counts / counts.sum()), 1.0), atol=1e-6)

    from podium.cli import app

    out = CliRunner().invoke(app, ["posthoc", str(run), "--method", "logit_adjust", "--tau", "0.5"])
    assert out.exit_code == 0 and "post-hoc logit_adjust (tau 0.5): OOF accuracy" in out.output
    assert json.loads((run / "metrics.json").read_text())["posthoc"]["tau"] == 0.5  # the run's scores follow
    half = pd.read_csv(predict(run).test_probs)[CLASSES].to_numpy()
    np.testing.assert_allclose(half, adjust(raw, np.log(counts / counts.sum()), 0.5), atol=1e-6)

    stale = {**json.loads((run / "posthoc.json").read_text()), "folds": [0]}
    (run / "posthoc.json").write_text(json.dumps(stale))
    with pytest.raises(PodiumError, match=r"fitted on the OOF of folds \[0\].*podium posthoc"):
        predict(run)
    (run / "posthoc.json").unlink()
    with pytest.raises(PodiumError, match="posthoc.method=prior but .* has no posthoc.json"):
        predict(run)
    predict(run, posthoc=False)


def test_every_method_is_listed():
    from podium.cli import app
    from podium.posthoc import POSTHOC

    out = CliRunner().invoke(app, ["list", "posthoc"]).output
    methods = ["none", "logit_adjust", "prior"]
    assert out.splitlines()[0] == "posthoc.method:" and list(POSTHOC) == methods
    assert [line.split()[0] for line in out.splitlines()[1:]] == list(methods)
    assert METRICS["balanced_accuracy"].higher_is_better

"""Predict: fold averaging, TTA, submission aligned with a shuffled template, refusals."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from podium.commands.predict import oof_with_tta, predict
from podium.commands.train import train
from podium.config import load_config, save_config
from podium.data.submission import align_submission
from podium.errors import PodiumError
from podium.metrics import score_all
from tests.conftest import CLASSES, podium_cmd


@pytest.fixture
def trained(tiny_competition):
    train(load_config(tiny_competition))
    return tiny_competition.parent / "runs" / "tiny"


def test_submission_follows_template_order_and_class_names(trained, tiny_competition):
    root = tiny_competition.parent
    res = predict(trained, tta="hflip")
    sub = pd.read_csv(res.submission, dtype=str)
    template = pd.read_csv(root / "sample_submission.csv", dtype=str)
    assert list(sub.columns) == list(template.columns)
    assert list(sub["id"]) == list(template["id"])  # the template's (shuffled) order, not the test CSV's
    assert set(sub["label"]) <= set(CLASSES)
    truth = pd.read_csv(root / "test_labels.csv", dtype=str).set_index("id")["label"]
    assert (sub.set_index("id")["label"] == truth.loc[sub["id"]]).mean() > 0.6
    probs = pd.read_csv(trained / "test_probs.csv", dtype={"id": str})
    assert list(probs.columns) == ["id", *CLASSES]
    np.testing.assert_allclose(probs[CLASSES].sum(1), 1.0, atol=1e-6)
    # the submitted label is the arg-max of the averaged probabilities
    top = probs.set_index("id")[CLASSES].idxmax(axis=1)
    assert (sub.set_index("id")["label"] == top.loc[sub["id"]]).all()


def test_tta_changes_probabilities_but_not_alignment(trained):
    plain = predict(trained, tta="none")
    p0 = pd.read_csv(plain.test_probs)[CLASSES].to_numpy()
    predict(trained, tta="hflip,vflip")
    p1 = pd.read_csv(plain.test_probs)[CLASSES].to_numpy()
    assert p0.shape == p1.shape and not np.allclose(p0, p1)


def test_mismatched_test_ids_are_refused_with_examples(trained, tiny_competition):
    root = tiny_competition.parent
    test = pd.read_csv(root / "test.csv", dtype=str)
    test.iloc[:-1].to_csv(root / "short_test.csv", index=False)
    with pytest.raises(PodiumError, match=r"1 id\(s\) in the template but not in the test set \(first: "
                       + test["id"].iloc[-1]):
        predict(trained, test_csv=root / "short_test.csv")


def test_probability_template_gets_one_column_per_class(tmp_path):
    template = pd.DataFrame({"id": ["b", "a"], "bag": 0.0, "Ankle boot": 0.0, "T-shirt/top": 0.0})
    template.to_csv(tmp_path / "t.csv", index=False)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])  # rows for ids a, b in CLASSES order
    sub = align_submission(tmp_path / "t.csv", "id", np.array(["a", "b"]), probs, CLASSES)
    assert list(sub.columns) == ["id", "bag", "Ankle boot", "T-shirt/top"]
    assert sub.iloc[0].tolist() == ["b", 0.6, 0.1, 0.3]


def test_cli_predict_refuses_to_overwrite_user_file(trained, tmp_path):
    mine = tmp_path / "mine.csv"
    mine.write_text("precious\n")
    out = subprocess.run(podium_cmd("predict", str(trained), "--out", str(mine)), capture_output=True, text=True)
    assert out.returncode == 2 and "--overwrite" in out.stderr and "Traceback" not in out.stderr
    assert mine.read_text() == "precious\n"


def test_cli_predict_with_tta_reports_and_stores_the_oof_score_without_and_with_it(trained):
    out = subprocess.run(podium_cmd("predict", str(trained), "--tta", "hflip,vflip"), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "OOF without and with TTA hflip+vflip" in out.stdout and "no TTA" in out.stdout and "gain" in out.stdout
    record = json.loads((trained / "predict.json").read_text())
    assert record["tta"] == "hflip+vflip" and record["views"] == ["identity", "hflip", "vflip"]
    oof = record["oof"]
    assert oof["file"] == "oof_tta-hflip+vflip.csv" and oof["n"] == 48 and oof["images_predicted"] == 3 * 48
    with_tta = pd.read_csv(trained / oof["file"], dtype={"id": str})
    plain = pd.read_csv(trained / "oof.csv", dtype={"id": str})
    assert list(with_tta.columns) == list(plain.columns) and list(with_tta["id"]) == list(plain["id"])
    assert (with_tta["fold"] == plain["fold"]).all() and not np.allclose(with_tta[CLASSES], plain[CLASSES])
    y = plain["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    assert oof["tta"]["accuracy"] == pytest.approx(score_all(y, with_tta[CLASSES].to_numpy())["accuracy"])
    saved = json.loads((trained / "metrics.json").read_text())
    assert oof["plain"] == pytest.approx({k: saved["oof"][k] for k in oof["plain"]})  # metrics.json is untouched
    assert f"{oof['plain']['accuracy']:.4f}" in out.stdout and f"{oof['tta']['accuracy']:.4f}" in out.stdout


def test_identity_only_oof_reproduces_the_training_oof_and_config_sets_the_default(trained):
    """Each fold's rows are re-predicted by that fold's model: with no extra view, the numbers are the run's own."""
    res = oof_with_tta(trained, ["identity"], how="mean_logits")
    again = pd.read_csv(trained / res.file, dtype={"id": str})
    plain = pd.read_csv(trained / "oof.csv", dtype={"id": str})
    np.testing.assert_allclose(again[CLASSES].to_numpy(), plain[CLASSES].to_numpy(), atol=1e-6)
    assert res.tta == pytest.approx(res.plain)
    # without --tta, predict uses the run's tta.* settings
    cfg = load_config(trained / "config.yaml", ["tta.views=hflip", "tta.combine=mean_logits"])
    save_config(cfg, trained / "config.yaml")
    res = predict(trained, oof=False)
    assert res.tta == "hflip" and res.combine == "mean_logits" and res.oof is None
    assert predict(trained, tta="none").views == ["identity"]

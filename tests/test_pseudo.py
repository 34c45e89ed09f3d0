"""`podium pseudo` end to end: exactly the confident test images, a config `podium train` takes as is, and pool images
that train in every fold but never reach a validation fold, the OOF or the CV; the user's files untouched."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from podium.cli import app
from podium.commands.predict import predict
from podium.commands.pseudo import pseudo
from podium.commands.train import train
from podium.config import load_config
from podium.errors import PodiumError
from tests.conftest import CLASSES


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The tiny competition, a 3-fold run on it and its test predictions."""
    from tests.conftest import write_tiny_competition

    config = write_tiny_competition(tmp_path_factory.mktemp("pseudo") / "comp")
    train(load_config(config, ["train.epochs=2"]))
    run = config.parent / "runs" / "tiny"
    predict(run)
    return config, run


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.csv"))}


def test_threshold_keeps_exactly_the_confident_test_images(source, tmp_path):
    config, run = source
    probs = pd.read_csv(run / "test_probs.csv", dtype={"id": str})
    cut = float(np.median(probs[CLASSES].max(axis=1)))
    res = pseudo(run, tmp_path / "hard", threshold=str(cut))
    table = pd.read_csv(tmp_path / "hard" / "pseudo.csv", dtype={"id": str})
    want = probs.loc[probs[CLASSES].max(axis=1) >= cut]
    assert sorted(table["id"]) == sorted(want["id"]) and res.record["kept"] == len(want)
    assert (table.set_index("id").loc[want["id"], "label"].to_numpy() ==
            np.asarray(CLASSES)[want[CLASSES].to_numpy().argmax(1)]).all()
    assert (table["soft"] == 0).all() and all(p.startswith("/") for p in table["path"])
    record = json.loads((tmp_path / "hard" / "pseudo.json").read_text())
    assert record["source"] == str(run) and record["selection"]["threshold"] == {c: cut for c in CLASSES}
    assert sum(v["kept"] for v in record["per_class"].values()) == len(want)
    assert sum(v["labeled"] for v in record["per_class"].values()) == 48
    written = load_config(res.config)
    assert written.data.pseudo == tmp_path / "hard" and written.name == "tiny-pseudo"
    assert written.data.train_csv == load_config(config).data.train_csv  # the labeled images as before


def test_pool_images_train_in_every_fold_and_are_never_validated(source, tmp_path):
    config, run = source
    before = _digest(config.parent)
    res = pseudo(run, tmp_path / "soft", soft=True, top_fraction=0.5)
    pool = pd.read_csv(tmp_path / "soft" / "pseudo.csv", dtype={"id": str})
    counts = pd.read_csv(run / "test_probs.csv")[CLASSES].to_numpy().argmax(1)
    assert len(pool) == sum(-(-n // 2) for n in np.bincount(counts)) and (pool["soft"] == 1).all()  # ceil(n/2) each
    train(load_config(res.config, ["train.epochs=1"]))
    new = run.parent / "tiny-pseudo"
    folds = pd.read_csv(new / "folds.csv", dtype={"id": str}).set_index("id")["fold"]
    assert (folds.loc[pool["id"]] == -1).all() and (folds.drop(pool["id"]) >= 0).all()  # TRAIN_ONLY, in the run
    source_folds = pd.read_csv(run / "folds.csv", dtype={"id": str}).set_index("id")["fold"]
    pd.testing.assert_series_equal(folds.drop(pool["id"]).sort_index(), source_folds.sort_index())
    oof = pd.read_csv(new / "oof.csv", dtype={"id": str})
    assert sorted(oof["id"]) == sorted(source_folds.index)  # the OOF: the labeled images, each once
    for k in range(3):
        fold_oof = pd.read_csv(new / f"fold{k}" / "oof.csv", dtype={"id": str})
        assert not set(fold_oof["id"]) & set(pool["id"]) and (folds.loc[fold_oof["id"]] == k).all()
    metrics = json.loads((new / "metrics.json").read_text())
    assert metrics["oof"]["n"] == 48 and metrics["n_folds"] == 3
    kept = json.loads((new / "pseudo.json").read_text())
    assert kept["images"] == kept["soft_images"] == len(pool) and kept["source"] == str(run)
    assert _digest(config.parent) == before  # train.csv, test.csv, folds.csv, ...: never written


def test_out_is_never_an_existing_folder_of_other_files_and_is_replaced_only_with_overwrite(source, tmp_path):
    _, run = source
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(PodiumError, match="did not write"):
        pseudo(run, busy)
    pseudo(run, tmp_path / "again", threshold="0.34")  # the 2-epoch source is barely above chance (1/3)
    with pytest.raises(PodiumError, match="--overwrite"):
        pseudo(run, tmp_path / "again", threshold="0.34")
    pseudo(run, tmp_path / "again", threshold="0.34", overwrite=True)
    with pytest.raises(PodiumError, match="not both"):
        pseudo(run, tmp_path / "x", threshold="0.9", top_fraction=0.5)


def test_cli_prints_the_class_balance(source, tmp_path):
    _, run = source
    result = CliRunner().invoke(app, ["pseudo", str(run), "--out", str(tmp_path / "cli"), "--threshold", "0.34"])
    assert result.exit_code == 0, result.output
    assert "labeled" in result.output and all(c in result.output for c in CLASSES)
    assert "podium train" in result.output

"""`podium tune` end to end with the embedded storage (nothing to start): trials are ordinary runs on the persisted
folds, the confirm stage trains the best on every fold, best.yaml trains as is, a rerun resumes, the pruner prunes."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest
import yaml

from podium.commands.tune import show, study_report, tune
from podium.config import load_config
from podium.tune.study import StudyDir


def _setup(config, space: dict, epochs: int = 1, train: dict | None = None, **tune_keys):
    raw = yaml.safe_load(config.read_text())
    raw["cv"]["n_folds"] = 2
    raw["train"].update(epochs=epochs, **(train or {}))
    raw["tune"] = {"space": space, "folds": [0], **tune_keys}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_embedded_study_confirm_best_yaml_and_resume(tiny_competition):
    config = _setup(tiny_competition, {"train.lr": {"loguniform": [1e-3, 1e-2]}, "train.batch_size": [8, 16]},
                    confirm=1, pruner="none")
    before = _digest(config)
    summary = tune(config, trials=2)
    sd = StudyDir.of(tiny_competition.parent / "runs", "tiny")
    assert sd.journal.exists()  # Optuna's journal file in the output folder: nothing had to run
    trials = summary["trials"]
    assert sorted(t["trial"] for t in trials) == [0, 1] and {t["state"] for t in trials} == {"complete"}
    user_folds = pd.read_csv(tiny_competition.parent / "folds.csv", dtype={"id": str})
    for t in trials:  # an ordinary run on the user's persisted folds, with the trial's values
        run = sd.path / f"trial-{t['trial']}"
        assert (run / "fold0" / "done.json").exists()
        pd.testing.assert_frame_equal(pd.read_csv(run / "folds.csv", dtype={"id": str}), user_folds)
        cfg = load_config(run / "config.yaml")
        assert cfg.train.lr == t["params"]["train.lr"] and cfg.train.batch_size == t["params"]["train.batch_size"]
        assert cfg.data.cache_dir == tiny_competition.parent / "cache"  # the user's decode cache, shared
        assert json.loads((run / "metrics.json").read_text())["cv"] == pytest.approx(t["value"])
    best_trial = max(trials, key=lambda t: t["value"])
    [winner] = summary["confirmed"]
    assert winner["trial"] == best_trial["trial"]
    metrics = json.loads((sd.path / f"trial-{winner['trial']}" / "metrics.json").read_text())
    assert metrics["complete"] and winner["cv"] == pytest.approx(metrics["cv"])  # every fold, OOF CV
    assert winner["cv_fold_std"] == pytest.approx(metrics["cv_fold_std"])
    loser = next(t for t in trials if t["trial"] != winner["trial"])
    assert not (sd.path / f"trial-{loser['trial']}" / "fold1").exists()  # only the finalist is trained further
    best = load_config(sd.best_yaml)  # ready for `podium train`: the user's output_dir, a new name, the values
    assert best.output_dir == tiny_competition.parent / "runs" and best.name == "tiny-tiny-best"
    assert (best.train.lr, best.train.batch_size) == (winner["params"]["train.lr"],
                                                     winner["params"]["train.batch_size"])
    assert best.tune.space == {}
    assert _digest(config) == before  # the user's config is never modified
    finished = _digest(sd.path / f"trial-{winner['trial']}" / "metrics.json")

    again = tune(config, trials=2)  # the same command: the study is complete, nothing runs again
    assert len(again["trials"]) == 2 and _digest(sd.path / f"trial-{winner['trial']}" / "metrics.json") == finished
    more = tune(config, trials=3)  # a larger budget continues the study
    assert sorted(t["trial"] for t in more["trials"]) == [0, 1, 2]
    assert show(str(sd.path))["trials"] == more["trials"]

    page = study_report(sd.path)
    text = page.read_text()
    assert text.count("data:image/png;base64,") >= 2 and "Optimisation history" in text
    assert "Parallel coordinates" in text and f"trial-{winner['trial']}" in text


def test_the_pruner_stops_a_trial_below_the_others(tiny_competition):
    """Two earlier trials scored 1.0 at every epoch; a learning rate of ~1e-8 cannot learn, so the median pruner
    stops the new trial after its second epoch (a no-op pruner would train all 4)."""
    import optuna

    config = _setup(tiny_competition, {"train.lr": {"loguniform": [1e-8, 2e-8]}}, epochs=4, confirm=0,
                    pruner="median", train={"min_lr": 1e-12})
    sd = StudyDir.of(tiny_competition.parent / "runs", "tiny")
    sd.path.mkdir(parents=True)
    from podium.tune.study import load_study, open_storage

    study = load_study("tiny", open_storage(None, sd), direction="maximize")
    dist = optuna.distributions.FloatDistribution(1e-8, 2e-8, log=True)
    for _ in range(2):
        study.add_trial(optuna.create_trial(params={"train.lr": 1.5e-8}, distributions={"train.lr": dist}, value=1.0,
                                            intermediate_values={e: 1.0 for e in range(4)}))
    summary = tune(config, trials=3)
    [new] = [t for t in summary["trials"] if t["trial"] == 2]
    assert new["state"] == "pruned" and new["epochs"] == 2
    curves = pd.read_csv(sd.path / "trial-2" / "fold0" / "metrics.csv")
    assert list(curves["epoch"]) == [0, 1]  # training stopped there
    assert not (sd.path / "trial-2" / "fold0" / "done.json").exists()


def test_each_trial_is_an_mlflow_run(tiny_competition):
    from mlflow import MlflowClient

    config = _setup(tiny_competition, {"train.lr": [3e-3]}, confirm=0, pruner="none")
    raw = yaml.safe_load(config.read_text())
    raw["track"] = {"mlflow": True}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    tune(config, trials=1)
    # the study folder's own MLflow store (the user set no track.mlflow_uri), artifacts beside it
    study = tiny_competition.parent / "runs" / "tune-tiny"
    client = MlflowClient(f"sqlite:///{study.resolve()}/mlflow.db")
    experiment = client.get_experiment_by_name("podium-tune-tiny")
    runs = client.search_runs([experiment.experiment_id])
    names = {r.info.run_name for r in runs}
    assert "trial-0" in names
    parent = next(r for r in runs if r.info.run_name == "trial-0")
    assert parent.data.params["train.lr"] == "0.003"
    assert experiment.artifact_location.startswith(study.resolve().as_uri())


def test_a_killed_worker_loses_only_its_trial_which_is_retried(tiny_competition):
    """Embedded storage, one machine: the journal has no heartbeat, so a RUNNING trial whose process on this machine
    is gone is failed and put back with its parameters by the next worker."""
    import signal
    import subprocess
    import time

    from tests.conftest import podium_cmd

    config = _setup(tiny_competition, {"train.lr": {"loguniform": [1e-3, 1e-2]}}, epochs=30, confirm=0,
                    pruner="none")
    worker = subprocess.Popen(podium_cmd("tune", str(config), "--trials", "1"), cwd=config.parent,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    curves = tiny_competition.parent / "runs" / "tune-tiny" / "trial-0" / "fold0" / "metrics.csv"
    deadline = time.time() + 120
    while not curves.exists() and time.time() < deadline and worker.poll() is None:
        time.sleep(0.5)
    assert curves.exists()  # trial 0 is training
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    raw = yaml.safe_load(config.read_text())
    raw["train"]["epochs"] = 1  # the search keys are unchanged: the same study
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    summary = tune(config, trials=1)
    states = {t["trial"]: t["state"] for t in summary["trials"]}
    assert states == {0: "fail", 1: "complete"}
    [retry] = [t for t in summary["trials"] if t["trial"] == 1]
    [dead] = [t for t in summary["trials"] if t["trial"] == 0]
    assert retry["retry_of"] == 0 and retry["params"] == dead["params"]

"""tune.space: every key and value checked against the config schema and registries before any trial runs."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from podium.config import load_config
from podium.errors import PodiumError
from podium.tune.space import base_tree, check_space, dimensions, trial_config
from tests.conftest import podium_cmd


def _with_space(config, space: dict, **tune):
    raw = yaml.safe_load(config.read_text())
    raw["tune"] = {"space": space, **tune}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))  # the space's order is the order written
    return config


@pytest.mark.parametrize("space, named", [
    ({"train.lrr": [0.1]}, ["train.lrr", "train.lr"]),  # misspelt: named, with the closest key
    ({"train.batch_size": [8, 0]}, ["tune.space.train.batch_size", "0"]),  # the schema refuses 0
    ({"train.loss": ["focal", "nope"]}, ["tune.space.train.loss", "nope"]),  # the registry refuses it
    ({"augment.preset": ["light", "hevy"]}, ["tune.space.augment.preset", "hevy"]),
    ({"cv.n_folds": [3, 5]}, ["tune.space.cv.n_folds", "same persisted folds"]),  # folds must stay the same
    ({"data.train_csv": ["a.csv"]}, ["tune.space.data.train_csv"]),
    ({"train.epochs": {"int": [1, 2.5]}}, ["tune.space.train.epochs", "whole-number"]),
    ({"train.lr": {"loguniform": [0, 1e-3]}}, ["tune.space.train.lr", "lo > 0"]),
    ({"train.lr": {"normal": [0, 1]}}, ["tune.space.train.lr", "loguniform"]),
    ({"train.loss_args": [{"gamma": 2}]}, ["tune.space.train.loss_args", "single values"]),
])
def test_bad_space_is_refused_naming_the_key(tiny_competition, space, named):
    with pytest.raises(PodiumError) as err:
        check_space(load_config(_with_space(tiny_competition, space)))
    for text in named:
        assert text in str(err.value)


def test_both_ends_of_a_range_are_checked_in_the_users_config(tiny_competition):
    raw = yaml.safe_load(tiny_competition.read_text())
    raw["train"]["warmup_epochs"] = 1
    tiny_competition.write_text(yaml.safe_dump(raw))
    # 1e-5 passes; 0.01 is above the user's train.lr=3e-3, which the schema refuses for a warm-up start
    with pytest.raises(PodiumError, match=r"tune.space.train.warmup_lr: the value 0.01 is refused"):
        check_space(load_config(_with_space(tiny_competition, {"train.warmup_lr": {"uniform": [1e-5, 0.01]}})))


def test_folds_outside_the_split_and_empty_space(tiny_competition):
    with pytest.raises(PodiumError, match=r"tune.folds \[3\]"):
        check_space(load_config(_with_space(tiny_competition, {"train.lr": [0.01]}, folds=[3])))
    with pytest.raises(PodiumError, match="tune.space is empty"):
        check_space(load_config(_with_space(tiny_competition, {})))


def test_good_space_gives_dimensions_and_trial_configs(tiny_competition):
    cfg = load_config(_with_space(tiny_competition, {"train.lr": {"loguniform": [1e-4, 1e-2]},
                                                     "train.batch_size": [8, 16], "train.epochs": {"int": [1, 3]}}))
    dims = check_space(cfg)
    assert [(d.key, d.kind) for d in dims] == [("train.lr", "loguniform"), ("train.batch_size", "categorical"),
                                               ("train.epochs", "int")]
    trial = trial_config(base_tree(cfg), {"train.lr": 5e-4, "train.batch_size": 16, "name": "trial-3"})
    assert (trial.train.lr, trial.train.batch_size, trial.name) == (5e-4, 16, "trial-3")
    assert trial.train.epochs == cfg.train.epochs and trial.cv == cfg.cv  # the rest is the user's
    assert dimensions(cfg.tune)[2].extremes() == [1, 3]


def test_the_cli_refuses_before_any_trial(tiny_competition):
    config = _with_space(tiny_competition, {"train.batchsize": [8, 16]})
    before = config.read_text()
    res = subprocess.run(podium_cmd("tune", str(config), "--trials", "2"), capture_output=True, text=True,
                         cwd=config.parent)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "train.batchsize" in res.stderr and "train.batch_size" in res.stderr
    assert not (config.parent / "runs").exists()  # nothing written: no study, no trial
    assert config.read_text() == before

"""Trained tiny runs shared by the shipping tests (trained once per session: 2 folds, 2 epochs, podium_cnn)."""

from __future__ import annotations

from pathlib import Path

import pytest

from podium.commands.train import train
from podium.config import load_config
from tests.conftest import write_tiny_competition
from tests.task_data import write_multilabel, write_multitask


def _trained(config: Path, *overrides: str) -> Path:
    cfg = load_config(config, ["cv.n_folds=2", "train.epochs=2", *overrides])
    train(cfg)
    return Path(cfg.output_dir) / cfg.name


@pytest.fixture(scope="session")
def multiclass_run(tmp_path_factory) -> Path:
    """3 classes, 17 test images (batch 17 in one call), tta hflip recorded in the config."""
    root = tmp_path_factory.mktemp("mc") / "comp"
    return _trained(write_tiny_competition(root, n_train=36, n_test=17), "tta.views=hflip")


@pytest.fixture(scope="session")
def multilabel_run(tmp_path_factory) -> Path:
    return _trained(write_multilabel(tmp_path_factory.mktemp("ml") / "comp", n_train=32))


@pytest.fixture(scope="session")
def multitask_run(tmp_path_factory) -> Path:
    return _trained(write_multitask(tmp_path_factory.mktemp("mt") / "comp", n_people=8))

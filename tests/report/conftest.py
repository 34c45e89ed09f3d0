"""Two tiny runs on the same folds (A: 4 epochs, B: 2 epochs and another seed), both with test predictions.

Trained once per test session (~3 s on 2 cores); tests that write into a run copy what they change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_tiny_competition


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    from podium.commands.predict import predict
    from podium.commands.train import train
    from podium.config import load_config

    config = write_tiny_competition(tmp_path_factory.mktemp("report") / "comp")
    runs = []
    for overrides in ([], ["name=tiny-b", "train.epochs=2", "train.seed=7"]):
        cfg = load_config(config, overrides)
        train(cfg)
        run = Path(cfg.output_dir) / cfg.name
        predict(run)
        runs.append(run)
    return runs[0], runs[1]

"""The CLI's contract: one message, exit code 2, no traceback, brackets in messages kept."""

from __future__ import annotations

import subprocess

from podium.config import load_config
from podium.data.splits import make_folds_file
from tests.conftest import podium_cmd


def test_error_message_keeps_brackets_and_exits_2(tiny_competition):
    make_folds_file(load_config(tiny_competition))  # 3 folds
    out = subprocess.run(podium_cmd("train", str(tiny_competition), "cv.n_folds=2"), capture_output=True, text=True)
    assert out.returncode == 2
    assert "has folds [0, 1, 2] but cv.n_folds=2" in " ".join(out.stderr.split())
    assert "Traceback" not in out.stderr


def test_debug_flag_shows_the_traceback(tiny_competition):
    out = subprocess.run(podium_cmd("--debug", "config", "show", str(tiny_competition), "train.epoch=3"),
                         capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" in out.stderr and "train.epochs" in out.stderr

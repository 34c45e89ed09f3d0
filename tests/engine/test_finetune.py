"""train.finetune_size: the last epochs at the larger size (the network sees it), best epoch and OOF there, predict
at that size, and a resume on either side of the switch gives the uninterrupted numbers."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest

import podium.engine.fold as fold_module
from podium.commands.train import train
from podium.config import load_config
from podium.engine.module import Classifier
from podium.errors import PodiumError
from tests.conftest import CLASSES

ARGS = ["train.epochs=3", "train.finetune_size=24", "train.finetune_epochs=1"]  # data.image_size is 16


def test_the_last_epochs_train_and_predict_at_the_larger_size(tiny_competition, monkeypatch):
    from podium.commands.predict import predict

    seen: dict[int, set] = {}
    real = Classifier.training_step

    def spy(self, batch, batch_idx):
        seen.setdefault(self.current_epoch, set()).add(tuple(batch[0].shape))
        return real(self, batch, batch_idx)

    monkeypatch.setattr(Classifier, "training_step", spy)
    cfg = load_config(tiny_competition, [*ARGS, "name=ft"])
    train(cfg, folds=[0])
    sides = {e: {s for shape in shapes for s in shape if s in (16, 24)} for e, shapes in seen.items()}
    assert sides == {0: {16}, 1: {16}, 2: {24}}  # the switch happens at epochs - finetune_epochs
    run = Path(cfg.output_dir) / cfg.name
    curves = pd.read_csv(run / "fold0" / "metrics.csv")
    assert curves["image_size"].tolist() == [16, 16, 24]
    done = json.loads((run / "fold0" / "done.json").read_text())
    assert done["best_epoch"] == 2 and done["epochs_run"] == 3  # best chosen among the epochs at the final size
    assert json.loads((run / "fold0" / "finetune.json").read_text())["from_epoch"] == 2
    assert json.loads((run / "run.json").read_text())["image_size"] == 24
    cache = Path(cfg.cache_dir())
    assert any(p.name.startswith("48x24-") for p in cache.iterdir())  # the training images' own cache at 24 px
    predict(run)
    assert any(p.name.startswith("12x24-") for p in cache.iterdir())  # the test set predicted at 24 px
    assert not any(p.name.startswith("12x16-") for p in cache.iterdir())


class Crash(pl.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("machine died")


@pytest.mark.parametrize("epoch", [1, 2], ids=["before-the-switch", "after-the-switch"])
def test_resume_on_either_side_of_the_switch_matches_uninterrupted(tiny_competition, monkeypatch, epoch):
    args = [*ARGS, "train.workers=0"]
    train(load_config(tiny_competition, [*args, "name=ref"]), folds=[0])
    real = fold_module.make_trainer

    def crashing(*a, **kw):
        trainer = real(*a, **kw)
        trainer.callbacks.append(Crash(epoch))
        return trainer

    monkeypatch.setattr(fold_module, "make_trainer", crashing)
    with pytest.raises(RuntimeError, match="machine died"):
        train(load_config(tiny_competition, [*args, "name=cut"]), folds=[0])
    runs = tiny_competition.parent / "runs"
    assert (runs / "cut" / "fold0" / "finetune.json").exists() == (epoch == 2)
    monkeypatch.undo()
    train(load_config(tiny_competition, [*args, "name=cut"]), folds=[0], resume=True)
    ref, cut = (pd.read_csv(runs / n / "fold0" / "oof.csv") for n in ("ref", "cut"))
    np.testing.assert_allclose(cut[CLASSES].to_numpy(), ref[CLASSES].to_numpy(), atol=1e-6)
    ref_curves, cut_curves = (pd.read_csv(runs / n / "fold0" / "metrics.csv") for n in ("ref", "cut"))
    assert cut_curves["image_size"].tolist() == [16, 16, 24]
    np.testing.assert_allclose(cut_curves["train_loss"], ref_curves["train_loss"], atol=1e-6)


def test_finetune_epochs_must_leave_epochs_at_the_first_size(tiny_competition):
    with pytest.raises(PodiumError, match="finetune_epochs=3 must be below train.epochs=3"):
        load_config(tiny_competition, ["train.epochs=3", "train.finetune_size=24", "train.finetune_epochs=3"])


def test_a_network_of_one_input_size_is_refused_before_any_image_is_read(tiny_competition):
    from podium.engine.fold import check_device

    cfg = load_config(tiny_competition, [*ARGS, "model.name=vit_tiny_patch16_224", "data.image_size=224",
                                         "train.finetune_size=288"])
    with pytest.raises(PodiumError, match="one input size only"):
        check_device(cfg)
    check_device(load_config(tiny_competition, ARGS))  # podium_cnn takes any size

"""MovableCheckpoint: a fold's best-checkpoint state survives its run folder moving (pulled onto another machine)."""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from podium.engine.callbacks import MovableCheckpoint


def test_best_score_survives_a_moved_folder_and_the_state_key_is_lightnings(tmp_path):
    old, new = tmp_path / "machine-a" / "fold0", tmp_path / "machine-b" / "fold0"
    settings = dict(monitor="val_metric", mode="max", save_top_k=1, filename="best")
    saved = ModelCheckpoint(dirpath=old, **settings)
    saved.best_model_score, saved.best_model_path = torch.tensor(0.9), str(old / "best.ckpt")
    saved.best_k_models = {str(old / "best.ckpt"): torch.tensor(0.9)}
    state = saved.state_dict()

    moved = MovableCheckpoint(dirpath=new, **settings)
    assert moved.state_key == saved.state_key  # a last.ckpt written by either restores into the other
    moved.load_state_dict(state)
    assert float(moved.best_model_score) == float(torch.tensor(0.9))  # Lightning's own forgets it when moved
    assert moved.best_model_path == str(new / "best.ckpt")
    assert list(moved.best_k_models) == [str(new / "best.ckpt")]
    plain = ModelCheckpoint(dirpath=new, **settings)
    plain.load_state_dict(state)
    assert plain.best_model_score is None  # the bug MovableCheckpoint exists for

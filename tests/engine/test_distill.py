"""OOF distillation end to end on the tiny competition: alpha 0 is the plain run, soft targets reach the loss, and a
teacher on other folds or classes is refused naming the difference."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from podium.commands.train import train
from podium.config import load_config
from podium.errors import PodiumError
from tests.conftest import CLASSES

EPOCHS = ["train.epochs=2"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """The tiny competition and a plain 3-fold run on it (the teacher)."""
    from tests.conftest import write_tiny_competition

    config = write_tiny_competition(tmp_path_factory.mktemp("distill") / "comp")
    train(load_config(config, EPOCHS))
    return config, config.parent / "runs" / "tiny"


def _student(config, name, *more):
    return load_config(config, [*EPOCHS, f"name={name}", *more])


def test_alpha_zero_reproduces_the_plain_run_exactly(teacher):
    config, run = teacher
    train(_student(config, "alpha0", f"train.soft_targets={run}", "train.soft_alpha=0"))
    student = run.parent / "alpha0"
    assert json.loads((student / "metrics.json").read_text()) == json.loads((run / "metrics.json").read_text())
    pd.testing.assert_frame_equal(pd.read_csv(student / "oof.csv"), pd.read_csv(run / "oof.csv"))


def test_soft_targets_reach_the_loss_and_no_soft_target_image_is_validated(teacher):
    """A teacher whose OOF is one fixed distribution, alpha 1: the student learns that distribution instead of the
    labels (an implementation that ignored the soft targets would train the plain run)."""
    config, run = teacher
    fixed = run.parent / "fixed-teacher"
    shutil.copytree(run, fixed)
    oof = pd.read_csv(fixed / "oof.csv", dtype={"id": str})
    oof[CLASSES] = [0.6, 0.3, 0.1]
    oof.to_csv(fixed / "oof.csv", index=False)
    train(_student(config, "alpha1", f"train.soft_targets={fixed}", "train.soft_alpha=1"), folds=[0])
    student = run.parent / "alpha1"
    losses = pd.read_csv(student / "fold0" / "metrics.csv")["train_loss"]
    plain = pd.read_csv(run / "fold0" / "metrics.csv")["train_loss"]
    # cross-entropy against (0.6, 0.3, 0.1) is at least its entropy, 0.898; the labels' loss falls below it
    assert losses.iloc[-1] > 0.898 > plain.iloc[-1]
    ours = pd.read_csv(student / "fold0" / "oof.csv")[CLASSES].to_numpy()
    assert not np.allclose(ours, pd.read_csv(run / "fold0" / "oof.csv")[CLASSES].to_numpy(), atol=1e-3)
    # the OOF and the folds are the labeled images' own: every validated id is in the split, in its fold
    folds = pd.read_csv(student / "folds.csv", dtype={"id": str}).set_index("id")["fold"]
    fold0 = pd.read_csv(student / "fold0" / "oof.csv", dtype={"id": str})
    assert (folds.loc[fold0["id"]] == 0).all() and (folds >= 0).all()


def test_a_teacher_on_other_folds_is_refused_naming_the_ids(teacher):
    config, run = teacher
    moved = run.parent / "moved-teacher"
    shutil.copytree(run, moved)
    folds = pd.read_csv(moved / "folds.csv", dtype={"id": str})
    folds.loc[folds["id"] == "004", "fold"] = (folds.loc[folds["id"] == "004", "fold"] + 1) % 3
    folds.to_csv(moved / "folds.csv", index=False)
    with pytest.raises(PodiumError, match=r"other folds than this config \(1 id\(s\) differ: 004\)"):
        train(_student(config, "moved", f"train.soft_targets={moved}"))
    assert not (run.parent / "moved").exists()  # refused before the run folder is made


def test_a_teacher_on_other_classes_is_refused_naming_them(teacher):
    config, run = teacher
    other = run.parent / "other-classes"
    shutil.copytree(run, other)
    (other / "classes.json").write_text(json.dumps([*CLASSES[:2], "sandal"]))
    with pytest.raises(PodiumError, match="other classes.*differ: bag, sandal"):
        train(_student(config, "other", f"train.soft_targets={other}"))


def test_an_ensemble_folder_teaches_with_its_blended_oof(teacher):
    from podium.commands.ensemble import ensemble_runs

    config, run = teacher
    twin = run.parent / "twin"
    shutil.copytree(run, twin)
    blend = ensemble_runs([run, twin], out=run.parent.parent / "blend")
    train(_student(config, "from-blend", f"train.soft_targets={blend.out}", "train.epochs=1"), folds=[0])
    assert (run.parent / "from-blend" / "fold0" / "done.json").is_file()
    shutil.rmtree(twin / "fold2")
    (twin / "oof.csv").unlink()
    with pytest.raises(PodiumError, match="no oof.csv"):
        train(_student(config, "no-oof", f"train.soft_targets={twin}"))


def test_multilabel_students_learn_the_teachers_label_probabilities(tmp_path):
    """Multi-label: each label's target is alpha x the teacher's OOF probability + (1 - alpha) x its 0/1; a teacher
    that says 0.5 for every label, at alpha 1, keeps the student's BCE at log 2 or above (the labels' falls below)."""
    from tests.task_data import LABELS, write_multilabel

    config = write_multilabel(tmp_path / "ml")
    train(load_config(config, ["train.epochs=3"]))
    run = config.parent / "runs" / "tiny-ml"
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    oof[LABELS] = 0.5
    oof.to_csv(run / "oof.csv", index=False)
    train(load_config(config, ["train.epochs=3", "name=half", f"train.soft_targets={run}", "train.soft_alpha=1"]),
          folds=[0])
    half = pd.read_csv(config.parent / "runs" / "half" / "fold0" / "metrics.csv")["train_loss"]
    plain = pd.read_csv(run / "fold0" / "metrics.csv")["train_loss"]
    assert half.iloc[-1] >= np.log(2) - 1e-4 > plain.iloc[-1]

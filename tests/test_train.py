"""End to end on a tiny competition: run folder, OOF coverage, refusal, resume after SIGKILL, reproducibility."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import psutil
import pytest
import torch

from podium.commands.train import train
from podium.config import load_config
from podium.errors import PodiumError
from podium.metrics import score_all
from tests.conftest import CLASSES, podium_cmd


def test_run_folder_oof_and_metrics(tiny_competition):
    cfg = load_config(tiny_competition)
    metrics = train(cfg)
    rd = tiny_competition.parent / "runs" / "tiny"
    for name in ["config.yaml", "folds.csv", "classes.json", "oof.csv", "metrics.json", "run.json"]:
        assert (rd / name).is_file(), name
    for k in range(3):
        for name in ["best.ckpt", "last.ckpt", "metrics.csv", "done.json"]:
            assert (rd / f"fold{k}" / name).is_file(), (k, name)
        epochs = pd.read_csv(rd / f"fold{k}" / "metrics.csv")
        assert list(epochs["epoch"]) == [0, 1, 2, 3] and {"val_accuracy", "train_loss", "lr"} <= set(epochs.columns)
        # checkpoints hold only plain data: loading never needs pickled code
        torch.load(rd / f"fold{k}" / "best.ckpt", weights_only=True, map_location="cpu")
    assert json.loads((rd / "classes.json").read_text()) == CLASSES
    oof = pd.read_csv(rd / "oof.csv", dtype={"id": str})
    train_ids = pd.read_csv(tiny_competition.parent / "train.csv", dtype=str)["id"]
    assert sorted(oof["id"]) == sorted(train_ids) and oof["id"].is_unique  # every train id exactly once
    assert list(oof.columns) == ["id", "fold", "label", *CLASSES]
    folds = pd.read_csv(rd / "folds.csv", dtype={"id": str}).set_index("id")["fold"]
    assert (oof.set_index("id")["fold"] == folds.loc[oof["id"]]).all()  # each row predicted by the model
                                                                        # that never saw it
    np.testing.assert_allclose(oof[CLASSES].sum(1), 1.0, atol=1e-6)
    y = oof["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    expect = score_all(y, oof[CLASSES].to_numpy())
    saved = json.loads((rd / "metrics.json").read_text())
    assert saved["complete"] and saved["cv_metric"] == "accuracy"
    for name, value in expect.items():
        assert saved["oof"][name] == pytest.approx(value)
    assert saved["cv"] == pytest.approx(expect["accuracy"]) == metrics["cv"]
    assert saved["cv"] > 0.6  # three easy patterns: a model that learns nothing scores ~0.33


def test_finished_run_is_not_overwritten(tiny_competition):
    cfg = load_config(tiny_competition, ["train.epochs=1"])
    train(cfg)
    best = tiny_competition.parent / "runs" / "tiny" / "fold0" / "best.ckpt"
    before = (best.stat().st_mtime_ns, best.read_bytes())
    with pytest.raises(PodiumError, match="--resume"):
        train(cfg)
    with pytest.raises(PodiumError, match=r"different config \(it differs in train\.epochs\)"):
        train(load_config(tiny_competition, ["train.epochs=2"]))
    assert (best.stat().st_mtime_ns, best.read_bytes()) == before
    train(cfg, folds=[0], overwrite=True)  # explicit --overwrite retrains just that fold
    assert best.read_bytes() != before[1] or best.stat().st_mtime_ns != before[0]
    assert train(cfg, resume=True)["complete"]  # nothing left to do: finished folds are skipped


def test_resume_accepts_other_speed_settings_and_runs_from_before_a_key(tiny_competition):
    """--resume refuses a config that trains differently, not one that only trains faster (train.workers,
    train.compile), nor a config.yaml written before a key existed (it holds that key's default)."""
    cfg = load_config(tiny_competition, ["train.epochs=1", "train.workers=0"])
    train(cfg, folds=[0])
    saved = tiny_competition.parent / "runs" / "tiny" / "config.yaml"
    old = saved.read_text().replace("  workers: 0\n", "")  # as written before train.workers existed
    assert old != saved.read_text()
    saved.write_text(old)
    result = train(load_config(tiny_competition, ["train.epochs=1", "train.workers=1"]), folds=[1], resume=True)
    assert result["folds_done"] == [0, 1]
    assert "workers: 1" in saved.read_text()  # the config it goes on with
    with pytest.raises(PodiumError, match=r"differs in train\.lr"):
        train(load_config(tiny_competition, ["train.epochs=1", "train.lr=0.5"]), folds=[2], resume=True)


def test_folds_merge_from_separate_invocations(tiny_competition):
    """Two machines train disjoint folds into one folder; the result equals training them all at once."""
    cfg = load_config(tiny_competition, ["train.epochs=1"])
    first = train(cfg, folds=[0])
    assert not first["complete"] and first["folds_done"] == [0]
    merged = train(cfg, folds=[1, 2])
    assert merged["complete"] and merged["folds_done"] == [0, 1, 2]
    other = load_config(tiny_competition, ["train.epochs=1", "name=all"])
    whole = train(other)
    assert whole["cv"] == pytest.approx(merged["cv"], abs=1e-9)  # same seed, same folds -> same numbers on CPU


AUGMENTED = ["augment.preset=documents", "augment.dropout=0.3", "augment.mixup_alpha=0.4", "augment.cutmix_alpha=1.0"]


# augmented: both augmentation stages (batch ops: vflip, rot90; seeded per-image albumentations) and mixing;
# the reference trains in process (train.workers=0), the killed and resumed run with train.workers as given
@pytest.mark.parametrize("augment, workers", [([], "auto"), (AUGMENTED, "auto"), (AUGMENTED, "2")],
                         ids=["plain", "augmented", "augmented-2-workers"])
def test_resume_after_sigkill_matches_uninterrupted(tiny_competition, augment, workers):
    args = ["train.epochs=4", "cv.n_folds=3", "train.batch_size=4", *augment]
    reference = train(load_config(tiny_competition, [*args, "name=ref", "train.workers=0"]))
    args.append(f"train.workers={workers}")
    cmd = podium_cmd("train", str(tiny_competition), *args, "name=killed", "--folds", "0")
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    metrics_csv = tiny_competition.parent / "runs" / "killed" / "fold0" / "metrics.csv"
    last = metrics_csv.parent / "last.ckpt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and torch.load(last, weights_only=True, map_location="cpu")["epoch"] >= 1:
            break  # epoch 1 done and checkpointed (written in a thread, after metrics.csv): now inside epoch 2
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    # what --resume continues from: a checkpoint of an epoch before the last (else the test would restart the fold)
    assert 1 <= torch.load(last, weights_only=True, map_location="cpu")["epoch"] < 3
    children = psutil.Process(proc.pid).children(recursive=True)
    if workers == "2":
        assert len(children) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not psutil.wait_procs(children, timeout=30)[1], "worker processes outlived the killed training"
    assert not (metrics_csv.parent / "done.json").exists()
    with pytest.raises(PodiumError, match="--resume"):  # a started fold is not silently restarted
        train(load_config(tiny_competition, [*args, "name=killed"]))
    resumed = train(load_config(tiny_competition, [*args, "name=killed"]), resume=True)
    assert resumed["complete"]
    for name in ["accuracy", "logloss", "f1_macro"]:
        assert resumed["oof"][name] == pytest.approx(reference["oof"][name], abs=1e-6)
    ref_oof = pd.read_csv(tiny_competition.parent / "runs" / "ref" / "oof.csv")
    got_oof = pd.read_csv(tiny_competition.parent / "runs" / "killed" / "oof.csv")
    np.testing.assert_allclose(got_oof[CLASSES].to_numpy(), ref_oof[CLASSES].to_numpy(), atol=1e-6)


def test_worker_processes_give_the_metrics_of_in_process_augmentation(tiny_competition):
    args = ["train.epochs=2", "cv.n_folds=2", "train.batch_size=4", "augment.preset=heavy", "augment.edges=true"]
    runs = {w: train(load_config(tiny_competition, [*args, f"train.workers={w}", f"name=w{w}"])) for w in (0, 2)}
    assert runs[0]["oof"] == runs[2]["oof"]
    oof = {w: pd.read_csv(tiny_competition.parent / "runs" / f"w{w}" / "oof.csv") for w in (0, 2)}
    np.testing.assert_array_equal(oof[0][CLASSES].to_numpy(), oof[2][CLASSES].to_numpy())
    curves = {w: pd.read_csv(tiny_competition.parent / "runs" / f"w{w}" / "fold1" / "metrics.csv") for w in (0, 2)}
    np.testing.assert_array_equal(curves[0]["train_loss"].to_numpy(), curves[2]["train_loss"].to_numpy())


def test_ctrl_c_with_workers_stops_every_process(tiny_competition):
    args = ["train.epochs=50", "cv.n_folds=2", "train.batch_size=4", "augment.preset=heavy", "train.workers=2",
            "name=stopped"]
    cmd = podium_cmd("train", str(tiny_competition), *args, "--folds", "0")
    # its own process group, as a terminal's foreground job: Ctrl-C sends SIGINT to the whole group
    log = tiny_competition.parent / "stderr.txt"
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    fold0 = tiny_competition.parent / "runs" / "stopped" / "fold0"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (fold0 / "last.ckpt").exists():
        time.sleep(0.05)
    assert proc.poll() is None and (fold0 / "last.ckpt").exists(), log.read_text()
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers) == 2
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]  # a clean stop, in every process
    assert not psutil.wait_procs(workers, timeout=30)[1], "worker processes outlived Ctrl-C"
    assert not (fold0 / "done.json").exists()
    with pytest.raises(PodiumError, match="--resume"):  # left as a started fold, for --resume to continue
        train(load_config(tiny_competition, args), folds=[0])


@pytest.mark.parametrize("overrides", [
    ["train.ema=true", "train.ema_decay=0.9"],
    ["train.accumulate=2", "train.grad_clip=1.0"],
    ["train.layer_decay=0.7"],
    ["model.freeze=backbone_until", "model.freeze_epochs=1"],
    ["train.patience=1", "train.epochs=6"],
    ["train.loss=ldam", "model.head=cosine", "train.sampler=repeat_factor", "train.loss_args.drw_epoch=1"],
    ["train.loss=focal", "train.loss_args.alpha=effective_number", "model.head=arcface", "train.sampler=sqrt"],
])
def test_training_options_run_and_produce_a_full_run(tiny_competition, overrides):
    metrics = train(load_config(tiny_competition, ["train.epochs=2", "cv.n_folds=2", *overrides]))
    assert metrics["complete"] and 0.0 <= metrics["cv"] <= 1.0


def test_frozen_backbone_keeps_its_initial_weights(tiny_competition):
    from podium.engine.module import seed_everything
    from podium.models import backbone_parameters, classifier_parameters, create_model

    cfg = load_config(tiny_competition, ["model.freeze=backbone", "cv.n_folds=2"])
    train(cfg, folds=[0])
    seed_everything(cfg.train.seed + 0)  # the init train_fold draws for fold 0
    init = create_model(cfg.model, len(CLASSES), 1)
    state = torch.load(tiny_competition.parent / "runs" / "tiny" / "fold0" / "best.ckpt",
                       weights_only=True)["state_dict"]
    trained = create_model(cfg.model, len(CLASSES), 1)
    trained.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    for a, b in zip(backbone_parameters(init), backbone_parameters(trained)):
        torch.testing.assert_close(a, b)  # frozen: not one step taken
    for a, b in zip(init.state_dict().items(), trained.state_dict().items()):
        if "running_mean" in a[0]:
            torch.testing.assert_close(a[1], b[1])  # frozen BatchNorm statistics too
    assert any(not torch.equal(a, b) for a, b in zip(classifier_parameters(init), classifier_parameters(trained)))


def test_fold_training_rows_alone_feed_the_sampler_and_the_loss(tiny_competition, monkeypatch):
    import podium.engine.fold
    import podium.losses

    seen = {}
    make_sampler, make_loss = podium.engine.fold.create_sampler, podium.losses.create_loss

    def record_sampler(name, labels, *args):
        seen["sampler"] = (name, labels)
        return make_sampler(name, labels, *args)

    def record_loss(name, args, ctx):
        seen["counts"] = ctx.class_counts
        return make_loss(name, args, ctx)

    monkeypatch.setattr(podium.engine.fold, "create_sampler", record_sampler)
    monkeypatch.setattr(podium.losses, "create_loss", record_loss)
    train(load_config(tiny_competition, ["train.epochs=1", "train.sampler=class_balanced", "train.loss=weighted_ce"]),
          folds=[1])
    rows = pd.read_csv(tiny_competition.parent / "train.csv", dtype=str)
    folds = pd.read_csv(tiny_competition.parent / "folds.csv", dtype={"id": str}).set_index("id")["fold"]
    targets = rows["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    training = targets[folds.loc[rows["id"]].to_numpy() != 1]
    assert seen["sampler"][0] == "class_balanced" and seen["sampler"][1].tolist() == training.tolist()
    assert seen["counts"].tolist() == np.bincount(training, minlength=3).tolist()


def test_classifier_retraining_keeps_each_folds_backbone(tiny_competition):
    from podium.engine.build import fold_weights

    train(load_config(tiny_competition))
    first = tiny_competition.parent / "runs" / "tiny"
    crt = load_config(tiny_competition, ["name=crt", "train.stage=classifier", f"train.init_from={first}"])
    assert crt.train.resolved_sampler() == "class_balanced"
    metrics = train(crt)
    assert metrics["complete"] and metrics["cv"] > 0.6
    for k in range(3):
        before, after = fold_weights(first, k), fold_weights(tiny_competition.parent / "runs" / "crt", k)
        assert before.keys() == after.keys()
        for key in before:
            if key.startswith("classifier."):
                assert not torch.equal(before[key], after[key]), key  # retrained (from a fresh start)
            else:
                torch.testing.assert_close(before[key], after[key], msg=key)  # fold k's backbone and BN statistics


def test_classifier_retraining_refuses_a_mismatched_start(tiny_competition):
    train(load_config(tiny_competition, ["train.epochs=1"]), folds=[0])
    first = tiny_competition.parent / "runs" / "tiny"

    def crt(*extra):
        return load_config(tiny_competition, ["train.stage=classifier", f"train.init_from={first}", *extra])

    with pytest.raises(PodiumError, match="this run's own folder .* name=tiny-crt"):
        train(crt())
    with pytest.raises(PodiumError, match=r"has no finished fold 1, 2"):
        train(crt("name=c1"))
    with pytest.raises(PodiumError, match=r"do not fit this config's model \(model.name=podium_cnn, model.head=cosine"):
        train(crt("name=c2", "model.head=cosine"), folds=[0])
    folds = pd.read_csv(first / "folds.csv", dtype={"id": str})
    folds.loc[0, "fold"] = (folds.loc[0, "fold"] + 1) % 3
    folds.to_csv(first / "folds.csv", index=False)
    with pytest.raises(PodiumError,
                       match=rf"used other folds than this config \(1 id\(s\) differ, first: {folds.loc[0, 'id']}"):
        train(crt("name=c3"), folds=[0])
    assert not (tiny_competition.parent / "runs" / "c3").exists()


def test_a_timm_model_with_a_tag_trains_from_its_cached_weights(tiny_competition, hub_cache):
    """As a user runs it offline: HF_HUB_OFFLINE=1, HF_HUB_CACHE holding the weights (tests/hub_cache.py)."""
    from tests.hub_cache import REVISION, known_state, write_hub_weights

    tag = "test_efficientnet.r160_in1k"  # ImageNet's statistics: neither podium's 0.5 nor the data's
    state = known_state("test_efficientnet")
    path = write_hub_weights(hub_cache, "timm/" + tag, state)
    proc = subprocess.run(podium_cmd("train", str(tiny_competition), f"model.name={tag}", "model.pretrained=true",
                                     "model.freeze=backbone", "train.epochs=1", "--folds", "0"),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    rd = tiny_competition.parent / "runs" / "tiny"
    info = json.loads((rd / "run.json").read_text())  # grayscale: the weights' statistics averaged
    assert info["mean"] == pytest.approx([np.mean([0.485, 0.456, 0.406])])
    assert info["std"] == pytest.approx([np.mean([0.229, 0.224, 0.225])])
    assert info["weights"] == {"name": tag, "source": "hub", "input_size": 160, "interpolation": "bicubic",
                               "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "file": str(path),
                               "revision": REVISION}
    ckpt = torch.load(rd / "fold0" / "best.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    net = {k.removeprefix("model."): v for k, v in ckpt.items() if k.startswith("model.")}
    assert net.keys() == state.keys()
    for key, value in state.items():  # the frozen backbone is the cached weights, exactly
        if key.startswith("classifier."):
            assert net[key].shape[0] == len(CLASSES)
        elif key == "conv_stem.weight":
            assert torch.equal(net[key], value.sum(1, keepdim=True))  # grayscale images: timm's adaptation
        else:
            assert torch.equal(net[key], value), key


def test_offline_without_cached_weights_stops_before_reading_any_image(tiny_competition, hub_cache):
    cfg = load_config(tiny_competition, ["model.name=test_resnet.r160_in1k", "model.pretrained=true"])
    with pytest.raises(PodiumError) as err:
        train(cfg)
    text = str(err.value)
    assert "'test_resnet.r160_in1k'" in text and str(hub_cache) in text
    assert "podium weights fetch test_resnet.r160_in1k" in text
    assert not (tiny_competition.parent / "cache").exists() and not (tiny_competition.parent / "runs" / "tiny").exists()

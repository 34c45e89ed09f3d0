"""engine/distributed.py and multi-device training: the ranks' loaders share each epoch out in equal numbers of
batches, their validation outputs gather back into the whole validation set once, and a real 2-process DDP run on
CPU (gloo; Lightning's `ddp` launcher re-running the CLI) writes an OOF with every validation image once, scores
that match it, one writer, and resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from podium.config import Config
from podium.engine.distributed import check_ranks, dedupe_gathered, trainer_settings
from podium.engine.loader import make_loader
from podium.errors import PodiumError
from podium.samplers import create_sampler
from tests.conftest import write_tiny_competition

# ------------------------------------------------------------------ the ranks' loaders, in one process


def _images(n: int) -> np.ndarray:
    images = np.zeros((n, 4, 4, 1), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n)  # each image says which row it is
    return images


@pytest.mark.parametrize("n", [25, 26])
def test_validation_shards_gather_back_to_each_image_once_in_order(n):
    images, targets = _images(n + 5), np.arange(n + 5) % 3
    rows = np.arange(5, n + 5)  # a fold's validation rows
    per_rank = [list(make_loader(images, targets, rows, 4, None, positions=True, rank=r, world=2)) for r in range(2)]
    assert len(per_rank[0]) == len(per_rank[1])  # DDP pairs the ranks' batches up: never one rank short
    # what all_gather returns, flattened: every rank's items, padding included
    gathered = {key: np.concatenate([b[i].numpy() for batches in per_rank for b in batches])
                for i, key in enumerate(("x", "y", "i"))}
    assert len(gathered["i"]) == n + n % 2
    x, y = dedupe_gathered(gathered["i"], gathered["x"], gathered["y"])
    np.testing.assert_array_equal(x[:, 0, 0, 0], rows)  # the whole validation set, in order, each image once
    np.testing.assert_array_equal(y, targets[rows])
    with pytest.raises(RuntimeError):
        dedupe_gathered(np.array([0, 2, 2]), np.zeros(3))  # a gap: an image no rank predicted


def test_training_shards_draw_one_epoch_between_them():
    images, targets = _images(30), np.arange(30) % 3
    rows = np.arange(30)

    def epoch(rank: int, world: int) -> list[int]:
        sampler = create_sampler("class_balanced", targets, seed=4, repeat_threshold=0.1)
        loader = make_loader(images, targets, rows, 4, None, sampler=sampler, rank=rank, world=world)
        loader.sampler.set_epoch(3)
        return [int(v) for x, _ in loader for v in x[:, 0, 0, 0]]

    whole, shards = epoch(0, 1), [epoch(r, 3) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    assert sorted(sum(shards, [])) == sorted(whole)


def test_ddp_past_one_process_and_podiums_own_sharding_always():
    one, many = Config(), Config.model_validate({"train": {"devices": 4, "nodes": 2}})
    assert trainer_settings(one) == {"num_nodes": 1, "use_distributed_sampler": False}
    assert trainer_settings(many) == {"num_nodes": 2, "use_distributed_sampler": False, "strategy": "ddp"}


def test_a_launch_where_lightning_and_podium_disagree_on_the_rank_is_refused():
    from types import SimpleNamespace

    check_ranks(SimpleNamespace(global_rank=1, world_size=2), 1, 2)
    with pytest.raises(PodiumError, match="torchrun"):
        check_ranks(SimpleNamespace(global_rank=1, world_size=2), 0, 2)  # two processes would both write


# ------------------------------------------------------------------ a real 2-process run

# Installed in every process of the CLI through PYTHONPATH: logs each file the process creates, writes, renames or
# removes under the run folder, with the LOCAL_RANK it had then ('-': the first process, before it launched the
# others), and SIGKILLs the whole run when fold1/last.ckpt is about to be replaced for the KILL-th time.
SPY = textwrap.dedent('''
    import os, signal, sys
    RUN, LOG, KILL = (os.environ.get(k) for k in ("SPY_RUN", "SPY_LOG", "SPY_KILL"))
    if RUN and LOG:
        fd = os.open(f"{LOG}.{os.getpid()}", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        replaced = [0]
        def spy(event, args):
            if event == "open" and isinstance(args[0], (str, bytes)):
                mode, flags = args[1] or "", args[2] or 0
                if not (set(str(mode)) & set("wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
                    return
            elif event not in ("os.rename", "os.replace", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
                return
            path = os.path.abspath(os.fsdecode(args[1] if event in ("os.rename", "os.replace") else args[0]))
            if not path.startswith(RUN):
                return
            os.write(fd, f"{os.environ.get('LOCAL_RANK', '-')} {event} {path}\\n".encode())
            if KILL and event in ("os.rename", "os.replace") and path.endswith(os.path.join("fold1", "last.ckpt")):
                replaced[0] += 1
                if replaced[0] == int(KILL):
                    os.killpg(os.getpgid(0), signal.SIGKILL)
        sys.addaudithook(spy)
''')


def _train(comp, spy_dir, *args: str, kill: int | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPY_RUN": str(comp / "runs"), "SPY_LOG": str(spy_dir / "log"),
           "PYTHONPATH": os.pathsep.join([str(spy_dir), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if kill:
        env["SPY_KILL"] = str(kill)
    # `python -m podium`: Lightning's launcher re-runs this command line for rank 1 (a `-c` script it cannot)
    return subprocess.run([sys.executable, "-m", "podium", "train", str(comp / "config.yaml"), *args],
                          capture_output=True, text=True, env=env, timeout=240, start_new_session=True)


def _spied(spy_dir) -> pd.DataFrame:
    rows = [line.split(" ", 2) for f in spy_dir.glob("log.*") for line in f.read_text().splitlines()]
    return pd.DataFrame(rows, columns=["rank", "event", "path"])


def _logloss(frame: pd.DataFrame, classes: list[str]) -> float:
    p = frame[classes].to_numpy()[np.arange(len(frame)), frame["label"].map(classes.index).to_numpy()]
    return float(-np.mean(np.log(np.clip(p, 1e-15, 1.0))))


def test_two_processes_validate_each_image_once_write_from_rank_0_and_resume(tmp_path):
    comp = tmp_path / "comp"
    write_tiny_competition(comp, n_train=51)  # 2 folds of 26 and 25 images: rank 0 gets one more, or a repeat
    spy_dir = tmp_path / "spy"
    spy_dir.mkdir()
    (spy_dir / "sitecustomize.py").write_text(SPY)
    # batch 4 on each of 2 processes: the same 8 images per optimizer step as batch 8 on one
    common = ["cv.n_folds=2", "train.epochs=6", "train.accelerator=cpu", "train.eval_batch_size=4"]
    ddp = [*common, "train.devices=2", "train.batch_size=4"]

    # killed (SIGKILL, every process) as fold 1's second checkpoint is published: fold 0 done, fold 1 mid-way
    killed = _train(comp, spy_dir, *ddp, kill=2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = comp / "runs" / "tiny"
    assert (run / "fold0" / "done.json").exists() and not (run / "fold1" / "done.json").exists()
    assert 1 <= len(pd.read_csv(run / "fold1" / "metrics.csv")) < 6  # its first checkpoint was published

    resumed = _train(comp, spy_dir, *ddp, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "fold 0:" not in resumed.stderr and "fold 1:" in resumed.stderr  # fold 0 skipped, fold 1 continued

    classes = json.loads((run / "classes.json").read_text())
    folds = pd.read_csv(run / "folds.csv", dtype={"id": str})
    oof = pd.read_csv(run / "oof.csv", dtype={"id": str})
    assert sorted(oof["id"]) == sorted(folds["id"])  # every training image exactly once: no padded repeat
    metrics = json.loads((run / "metrics.json").read_text())
    for k in (0, 1):
        fold_oof = pd.read_csv(run / f"fold{k}" / "oof.csv", dtype={"id": str})
        assert sorted(fold_oof["id"]) == sorted(folds.loc[folds["fold"] == k, "id"])
        curves = pd.read_csv(run / f"fold{k}" / "metrics.csv")
        assert curves["epoch"].tolist() == list(range(6))  # the resumed fold replayed no epoch, skipped none
        # the validation scores the checkpoint chose by were the whole fold's: the OOF predicted again agrees
        best = curves.loc[curves["epoch"] == json.loads((run / f"fold{k}" / "done.json").read_text())["best_epoch"]]
        assert best["val_logloss"].item() == pytest.approx(_logloss(fold_oof, classes), rel=1e-5)
        assert best["val_accuracy"].item() == pytest.approx(metrics["folds"][f"fold{k}"]["accuracy"], abs=1e-12)
        assert metrics["folds"][f"fold{k}"]["n"] == len(fold_oof)

    spied = _spied(spy_dir)
    assert set(spied["rank"]) <= {"-", "0"}, spied[~spied["rank"].isin(["-", "0"])].head().to_string()
    assert spied["path"].str.endswith("oof.csv").any()  # the spy saw rank 0's writes
    locks = spied[spied["path"].str.contains(f"{os.sep}locks{os.sep}fold")]
    assert set(locks.loc[locks["event"] == "open", "rank"]) == {"-"}  # taken before rank 1 existed, by the writer
    assert not list((run / "locks").glob("*.lock"))  # the resumed run released them (and took over the killed one's)

    one = _train(comp, spy_dir, *common, "train.devices=1", "train.batch_size=8", "name=one")
    assert one.returncode == 0, one.stderr[-3000:]
    cv_one = json.loads((comp / "runs" / "one" / "metrics.json").read_text())["cv"]
    assert abs(metrics["cv"] - cv_one) <= 0.15  # not equal: other batches, other augmentation draws

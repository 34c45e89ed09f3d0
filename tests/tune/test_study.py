"""Many workers on one study in a real PostgreSQL (started by the tests): --trials is the total across workers, and
the trial of a worker killed mid-trial is failed by the heartbeat and retried with the same parameters."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import yaml

from podium.tune.study import HEARTBEAT_ENV, StudyDir, load_study, open_storage
from tests.conftest import podium_cmd


def _config(config, epochs: int = 1):
    raw = yaml.safe_load(config.read_text())
    raw["cv"]["n_folds"] = 2
    raw["train"]["epochs"] = epochs
    raw["tune"] = {"space": {"train.lr": {"loguniform": [1e-3, 1e-2]}}, "folds": [0], "confirm": 0, "pruner": "none"}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config


def _study(url: str, name: str, where):
    return load_study(name, open_storage(url, StudyDir(where)))


def _worker(config, url: str, study: str, trials: int, **env) -> subprocess.Popen:
    return subprocess.Popen(podium_cmd("tune", str(config), "--trials", str(trials), "--storage", url, "--study",
                                       study), cwd=config.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, **env})


def test_two_workers_finish_exactly_the_budget(tiny_competition, postgres_url):
    # trials of 8 epochs: long enough that the second worker (seconds of imports) joins before the first is done
    config = _config(tiny_competition, epochs=8)
    workers = [_worker(config, postgres_url, "shared", 4) for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = _study(postgres_url, "shared", tiny_competition.parent)
    states = sorted(t.state.name for t in study.trials if not t.user_attrs.get("podium:surplus"))
    assert states == ["COMPLETE"] * 4  # exactly --trials, finished, across both workers
    hosts_pids = {tuple(t.user_attrs["podium:worker"].values()) for t in study.trials}
    assert len(hosts_pids) == 2  # both workers trained trials
    runs = sorted(p.name for p in (tiny_competition.parent / "runs" / "tune-shared").glob("trial-*"))
    assert len(runs) == len(study.trials)


def test_a_killed_workers_trial_is_retried(tiny_competition, postgres_url):
    config = _config(tiny_competition, epochs=30)  # long enough to be killed mid-trial
    env = {HEARTBEAT_ENV: "1,3"}
    worker = _worker(config, postgres_url, "killed", 2, **env)
    run = tiny_competition.parent / "runs" / "tune-killed" / "trial-0" / "fold0" / "metrics.csv"
    deadline = time.time() + 120
    while not run.exists() and time.time() < deadline and worker.poll() is None:
        time.sleep(0.5)
    assert run.exists(), worker.communicate()[0]  # trial 0 is training
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    study = _study(postgres_url, "killed", tiny_competition.parent)
    [dead] = study.trials
    assert dead.state.name == "RUNNING"
    # as if it had run on another machine: only the heartbeat can tell it is dead (not this machine's pid check)
    study._storage.set_trial_user_attr(dead._trial_id, "podium:worker", {"host": "elsewhere", "pid": 1})
    time.sleep(4)  # past the grace period
    raw = yaml.safe_load(config.read_text())
    raw["train"]["epochs"] = 1
    config.write_text(yaml.safe_dump(raw, sort_keys=False))  # the search keys are unchanged: same study
    again = _worker(config, postgres_url, "killed", 2, **env)
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out
    trials = _study(postgres_url, "killed", tiny_competition.parent).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    retry = trials[1]
    assert retry.system_attrs["failed_trial"] == 0 and retry.params == dead.params  # same values, tried again


def test_the_budget_counts_every_worker_and_replaces_failures(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from podium.tune.study import SURPLUS, budget_left, within_budget

    study = optuna.create_study(storage=open_storage(None, StudyDir(tmp_path / "tune-s")))
    first, second = study.ask(), study.ask()  # two workers' running trials count
    assert budget_left(study, 3) and not budget_left(study, 2)
    late = study.ask()  # asked at the same moment as `second` for the last of 2 places
    assert within_budget(study, second.number, 2) and not within_budget(study, late.number, 2)
    late.set_user_attr(SURPLUS, True)
    study.tell(late, state=TrialState.PRUNED)
    study.tell(first, 0.5)
    study.tell(second, state=TrialState.FAIL)
    assert budget_left(study, 2)  # the failure and the surplus trial spend nothing: one more place
    assert within_budget(study, study.ask().number, 2)


def test_a_dead_local_workers_trial_is_failed_and_put_back(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from podium.tune.study import WORKER, fail_dead_trials, worker_id

    study = optuna.create_study(storage=open_storage(None, StudyDir(tmp_path / "tune-s")))
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead, alive = study.ask(), study.ask()
    dead.suggest_float("train.lr", 1e-4, 1e-2, log=True)
    dead.set_user_attr(WORKER, {**worker_id(), "pid": gone.pid})
    alive.set_user_attr(WORKER, worker_id())  # this process: alive
    assert fail_dead_trials(study) == [dead.number]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    retry = trials[2]
    assert retry.params == trials[0].params and retry.system_attrs["failed_trial"] == dead.number
    assert WORKER not in retry.user_attrs  # not mistaken for the dead worker's trial once picked up
    assert fail_dead_trials(study) == []  # once only

"""The Optuna study behind `podium tune`: its folder, its storage, the shared trial budget and dead workers.

<output_dir>/tune-<study>/ (StudyDir) holds the trials' run folders (trial-<n>/, ordinary podium runs), the embedded
storage (Optuna's journal file: appends under a file lock, so several processes of one machine share it; SQLite
would fail with "database is locked", optuna #820), study.json, confirm.json, best.yaml and report.html. With
`--storage postgresql://...` the study lives in PostgreSQL and any number of machines work on it; each keeps the
run folders of the trials it trained.

Optuna is imported inside the functions: it is heavy, and `podium --help` must not load it.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podium.errors import PodiumError
from podium.io import atomic_write_text, process_alive
from podium.run.files import REPORT

HEARTBEAT_S = 20  # a RUNNING trial whose worker has not written a heartbeat for GRACE_S is failed and retried
GRACE_S = 60
HEARTBEAT_ENV = "PODIUM_TUNE_HEARTBEAT"  # "interval,grace" in seconds, e.g. "1,3" (tests; slow shared databases)
SURPLUS = "podium:surplus"  # user attr of a trial asked for after the budget was spent by a concurrent worker
WORKER = "podium:worker"  # user attr: {host, pid} of the process running the trial
CONFIRM = "podium:confirm:"  # study user attr prefix: one record per confirmed finalist


@dataclass(frozen=True)
class StudyDir:
    """<output_dir>/tune-<study>/: every path of a study folder, in one place."""

    path: Path

    @classmethod
    def of(cls, output_dir: Path | str, study: str) -> "StudyDir":
        return cls(Path(output_dir) / f"tune-{study}")

    @property
    def journal(self) -> Path:
        return self.path / "study.journal"

    @property
    def info(self) -> Path:
        return self.path / "study.json"

    @property
    def best_yaml(self) -> Path:
        return self.path / "best.yaml"

    @property
    def confirm_json(self) -> Path:
        return self.path / "confirm.json"

    @property
    def report(self) -> Path:
        return self.path / REPORT  # the same name as a run's page: `podium report` writes both

    def trial_name(self, number: int) -> str:
        return f"trial-{number}"

    def read_info(self) -> dict:
        try:
            return json.loads(self.info.read_text())
        except (OSError, ValueError):
            raise PodiumError(f"'{self.path}' is not a podium tune study folder (no readable {self.info.name}). "
                              "Give the folder <output_dir>/tune-<study> that `podium tune` made.") from None

    def write_info(self, info: dict) -> None:
        atomic_write_text(self.info, json.dumps(info, indent=1) + "\n")


def require_optuna() -> None:
    """A clear error when Optuna is not installed (it comes with the `tune` extra)."""
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        raise PodiumError("podium tune needs Optuna: pip install 'podium[tune]' (or pip install optuna).")


def check_study_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", "..") or len(name) > 200:
        raise PodiumError(f"--study '{name}' must be a short folder-safe name (its trials go to tune-<study>/).")
    return name


def redact(url: str) -> str:
    """The storage URL without its password, for files and messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def open_storage(url: str | None, sd: StudyDir):
    """Optuna's storage: the journal file in the study folder (None), or an RDB URL (postgresql://, mysql://) with
    a heartbeat, so the trial of a worker that died is failed and put back to be retried (max 3 times)."""
    import optuna
    from optuna.storages import RDBStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

    if url is None:
        sd.path.mkdir(parents=True, exist_ok=True)
        lock = JournalFileOpenLock(str(sd.journal) + ".lock")
        return JournalStorage(JournalFileBackend(str(sd.journal), lock_obj=lock))
    if not url.startswith(("postgresql", "mysql", "sqlite")):
        raise PodiumError(f"--storage {redact(url)}: give a database URL (postgresql://user:password@host/db); "
                          "leave it out for the embedded storage in the output folder.")
    interval, grace = (int(v) for v in os.environ.get(HEARTBEAT_ENV, f"{HEARTBEAT_S},{GRACE_S}").split(","))
    error: Exception | None = None
    for attempt in range(4):  # workers started together race to create the tables: the loser finds them next time
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat: stable since 2.8
                return RDBStorage(sqlalchemy_url(url), heartbeat_interval=interval, grace_period=grace,
                                  heartbeat_stale_trial_callback=retry)
        except ImportError as exc:
            error = exc
            break
        except Exception as exc:  # server down, wrong password, a concurrent CREATE TABLE
            error = exc
            time.sleep(1.0 + attempt)
    raise PodiumError(f"--storage {redact(url)}: cannot open the study database ({type(error).__name__}: "
                      f"{str(error).splitlines()[0][:300]}). Check the URL, that the server runs and that "
                      "psycopg is installed (pip install 'psycopg[binary]').") from None


def sqlalchemy_url(url: str) -> str:
    """postgresql://... names SQLAlchemy's psycopg2 driver; podium installs psycopg 3, so it is named explicitly when
    psycopg2 is absent (a URL naming its driver, postgresql+...://, is kept)."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None:
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def make_sampler(name: str, seed: int):
    import optuna

    if name == "cmaes":
        try:
            import cmaes  # noqa: F401  (optuna's CmaEsSampler needs it)
        except ImportError:
            raise PodiumError("tune.sampler=cmaes needs the cmaes package: pip install cmaes (or use tpe)") from None
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(name: str):
    import optuna

    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "median":  # a trial below the median of earlier trials at the same epoch stops (after 2 epochs)
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def load_study(name: str, storage, sampler=None, pruner=None, direction: str | None = None):
    """The study `name` in `storage`: created (with `direction`) when missing and `direction` is given."""
    import optuna

    if direction is not None:
        return optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                   direction=direction, load_if_exists=True)
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        raise PodiumError(f"No study '{name}' in this storage: run `podium tune CONFIG --study {name}` first.") \
            from None


def counted(trial) -> bool:
    """Whether a trial spends the budget: finished, pruned, running or waiting; not a failure (it is retried or
    replaced) and not a surplus trial."""
    from optuna.trial import TrialState

    return trial.state != TrialState.FAIL and not trial.user_attrs.get(SURPLUS)


def budget_left(study, n_trials: int) -> bool:
    """Whether a worker should ask for another trial: fewer than --trials counted, or a failed trial waits for its
    retry (--trials is the total across all workers)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    waiting = any(t.state == TrialState.WAITING for t in trials)
    return waiting or sum(counted(t) for t in trials) < n_trials


def within_budget(study, number: int, n_trials: int) -> bool:
    """Whether trial `number` is one of the first --trials counted ones. Trial numbers are handed out atomically by
    the storage, so when two workers ask at the same moment for the last place, exactly one of them gets it."""
    earlier = [t for t in study.get_trials(deepcopy=False) if t.number < number and counted(t)]
    return len(earlier) < n_trials


def worker_id() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def fail_dead_trials(study) -> list[int]:
    """RUNNING trials whose worker is gone, failed and put back as WAITING with the same parameters (retry), so the
    next worker retries them: a worker of this machine whose process no longer runs (SIGKILL, power cut: the journal
    has no heartbeat, and this is noticed at once), and, with PostgreSQL, any trial without a heartbeat for the grace
    period (Optuna's fail_stale_trials, which a worker only runs when it asks for a trial: a worker waiting for the
    others' trials must run it too)."""
    import optuna
    from optuna.trial import TrialState

    me, failed = worker_id(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who = trial.user_attrs.get(WORKER) or {}
        if who.get("host") != me["host"] or not isinstance(who.get("pid"), int) or process_alive(who["pid"]):
            continue
        try:
            if not study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker failed it first
            continue
        retry(study, study._storage.get_trial(trial._trial_id))
        failed.append(trial.number)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # nothing without a heartbeat (the journal)
    return failed


MAX_RETRY = 3


def retry(study, trial) -> None:
    """Put a dead worker's trial back as WAITING with the same parameters (at most MAX_RETRY times), as Optuna's
    RetryHeartbeatStaleTrialCallback does, but without the dead worker's WORKER record: the retry must not look like
    a trial of a dead process between being picked up and being stamped by its new worker."""
    import optuna

    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > MAX_RETRY:
        return
    study.add_trial(optuna.create_trial(
        state=optuna.trial.TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={k: v for k, v in trial.user_attrs.items() if k != WORKER},
        system_attrs={**trial.system_attrs, "failed_trial": history[0], "retry_history": history}))

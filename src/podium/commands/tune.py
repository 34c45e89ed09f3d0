"""`podium tune`: an Optuna search over `tune.space`, each trial an ordinary podium run on the persisted folds.

Each trial trains tune.folds of <output_dir>/tune-<study>/trial-<n>/ (same folds.csv, same decode cache as the
user's runs: every score is comparable and no validation image is trained on), reporting each epoch's validation
score to the pruner. Workers (processes on this machine sharing the journal file, or on many machines sharing
PostgreSQL) ask the study for trials until --trials are spent in total; then the best tune.confirm trials are
trained on every fold (their trial run resumed) and ranked by OOF CV +- fold std; best.yaml holds the winner.
A killed worker loses its current trial only: it is failed and retried (same parameters) by the next worker.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml
from rich.console import Console

from podium.commands.train import train
from podium.config import Config, load_config
from podium.engine.build import metric_mode
from podium.engine.callbacks import EpochReport
from podium.errors import PodiumError
from podium.io import atomic_write_text, process_alive
from podium.report.study import importances, leaderboard, rank_confirmed, study_page
from podium.tune import study as st
from podium.tune.space import base_tree, check_space, suggest, trial_config
from podium.tune.study import StudyDir, worker_id

POLL_S = 5.0  # how often a worker with nothing left to run checks whether the others have finished
MAX_FAILURES = 3  # consecutive failed trials in one worker before it stops with the last error


def _note(text: str) -> None:
    Console(stderr=True).print(text, highlight=False, markup=False)


def trial_base(user: Config, sd: StudyDir) -> dict:
    """The user's keys plus what every trial shares: the study folder as output_dir, the user's decode cache (its
    default lies in output_dir, which trials change), and an MLflow experiment of the study's own: in the user's
    track.mlflow_uri, else in the study folder's own store (tune-<study>/mlflow.db, artifacts beside it)."""
    tree = base_tree(user)
    tree["output_dir"] = str(sd.path)
    tree.setdefault("data", {})["cache_dir"] = str(user.cache_dir())
    tree.setdefault("track", {})["experiment"] = f"{user.track.experiment}-tune-{sd.path.name[len('tune-'):]}"
    return tree


def _pruning(trial, folds: list[int], epochs: int, metric: str):
    """fold_callbacks for train(): fold k's epoch e is step (position of k in tune.folds) x epochs + e, so the
    pruner compares every trial at the same fold and epoch (pruning across folds, optuna #4373)."""
    import optuna

    position = {k: i for i, k in enumerate(folds)}

    def for_fold(k: int):
        def report(epoch: int, value: float) -> None:
            trial.report(value, position[k] * epochs + epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"fold {k} epoch {epoch}: {metric} {value:.4f}")
        return [EpochReport(report)]

    return for_fold


def _objective(study, base: dict, sd: StudyDir, dims, folds: list[int], n_trials: int):
    import optuna

    def objective(trial) -> float:
        trial.set_user_attr(st.WORKER, worker_id())
        if not st.within_budget(study, trial.number, n_trials):  # a concurrent worker took the last place first
            trial.set_user_attr(st.SURPLUS, True)
            raise optuna.TrialPruned("surplus: --trials already reached by other workers")
        values = suggest(trial, dims)
        cfg = trial_config(base, {**values, "name": sd.trial_name(trial.number)}, source=f"trial {trial.number}")
        trial.set_user_attr("podium:run", str(sd.path / cfg.name))
        _note(f"trial {trial.number}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        started = time.time()
        try:
            metrics = train(cfg, folds=folds, fold_callbacks=_pruning(trial, folds, cfg.train.epochs, cfg.cv.metric))
        except PodiumError as exc:
            trial.set_user_attr("podium:error", str(exc)[:2000])
            raise
        finally:
            trial.set_user_attr("podium:seconds", round(time.time() - started, 1))
        return float(metrics["cv"])

    return objective


def _check_same_search(study, user: Config) -> None:
    """Every worker of a study must search the same space on the same folds: the first one records them."""
    mine = {"space": user.tune.space, "folds": user.tune.folds, "metric": user.cv.metric}
    recorded = study.user_attrs.get("podium:search")
    if recorded is None:
        study.set_user_attr("podium:search", mine)
    elif recorded != mine:
        differ = [k for k in mine if mine[k] != recorded.get(k)]
        raise PodiumError(f"Study '{study.study_name}' was started with another tune {', '.join(differ)} "
                          f"({recorded}). Use the same config, or --study NEW for a new study.")


def tune(config: Path | str, overrides: list[str] = (), trials: int = 20, timeout: float | None = None,
         storage: str | None = None, study_name: str | None = None) -> dict:
    """Run (or continue) the study until --trials trials are spent across all workers or --timeout seconds pass,
    then the confirm stage. The user's config file and runs are only read. Returns the summary of `show`."""
    st.require_optuna()
    import optuna

    if trials < 1:
        raise PodiumError("--trials must be at least 1 (the total across every worker of the study).")
    user = load_config(config, list(overrides))  # unchecked: base_tree keeps what the user set, and only that
    dims = check_space(user)
    name = st.check_study_name(study_name or user.name)
    sd = StudyDir.of(user.output_dir, name)
    base = trial_base(user, sd)
    direction = "maximize" if metric_mode(user.cv.metric, user.data) == "max" else "minimize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # podium prints its own line per trial
    study = st.load_study(name, st.open_storage(storage, sd), st.make_sampler(user.tune.sampler, user.tune.seed),
                       st.make_pruner(user.tune.pruner), direction)
    _check_same_search(study, user)
    sd.path.mkdir(parents=True, exist_ok=True)
    sd.write_info({"study": name, "storage": st.redact(storage) if storage else None, "direction": direction,
                   "metric": user.cv.metric, "config": str(config), "overrides": list(overrides)})
    objective = _objective(study, base, sd, dims, user.tune.folds, trials)
    started, failures, waited, outcomes = time.time(), 0, False, []
    while True:
        st.fail_dead_trials(study)
        out_of_time = timeout is not None and time.time() - started >= timeout
        if out_of_time:
            _note(f"--timeout {timeout:g} s reached: no new trial")
            break
        if st.budget_left(study, trials):
            study.optimize(objective, n_trials=1, catch=(PodiumError,), callbacks=[lambda s, t: outcomes.append(t)])
            last = outcomes[-1]
            failures = failures + 1 if last.state == optuna.trial.TrialState.FAIL else 0
            if failures >= MAX_FAILURES:
                raise PodiumError(f"{failures} trials in a row failed; the last one said:\n"
                                  f"{last.user_attrs.get('podium:error', '(see above)')}")
            continue
        if not _running(study):
            break
        if not waited:
            _note("every trial is handed out; waiting for the other workers' trials to finish")
            waited = True
        time.sleep(POLL_S)
    if not _running(study):
        confirm(study, user, base, sd)
    else:
        _note("other workers are still running trials: the last one to finish runs the confirm stage")
    return show_study(study, sd)


def _running(study) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)))


def finalists(study, n: int) -> list:
    """The best `n` finished trials (one per parameter set: a retried trial does not count twice)."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if not t.user_attrs.get(st.SURPLUS)]
    done.sort(key=lambda t: t.value, reverse=study.direction.name == "MAXIMIZE")
    picked, seen = [], set()
    for t in done:
        key = repr(sorted(t.params.items()))
        if key not in seen:
            seen.add(key)
            picked.append(t)
    return picked[:n]


def _claimed_elsewhere(record: dict | None) -> bool:
    """A finalist another live worker is training (a claim by a dead process of this machine is taken over)."""
    if not record or record.get("state") != "running":
        return False
    me = worker_id()
    if record.get("host") != me["host"]:
        return True
    return record.get("pid") != me["pid"] and process_alive(int(record.get("pid", -1)))


def confirm(study, user: Config, base: dict, sd: StudyDir) -> list[dict]:
    """Train the best tune.confirm trials on every fold (resuming their trial runs: the searched folds are kept),
    record each one's OOF CV +- fold std in the study, rank them, and write confirm.json and best.yaml."""
    for t in finalists(study, user.tune.confirm):
        key = f"{st.CONFIRM}{t.number}"
        record = study.user_attrs.get(key)
        if (record and record.get("state") == "done") or _claimed_elsewhere(record):
            continue
        study.set_user_attr(key, {"state": "running", **worker_id()})
        cfg = trial_config(base, {**t.params, "name": sd.trial_name(t.number)}, source=f"trial {t.number}")
        _note(f"confirm: trial {t.number} on every fold ({cfg.cv.n_folds})")
        metrics = train(cfg, folds=None, resume=True)
        study.set_user_attr(key, {"state": "done", "trial": t.number, "params": t.params, "cv": metrics["cv"],
                                  "cv_fold_std": metrics["cv_fold_std"], "search_value": t.value,
                                  "folds": {k: v["cv"] for k, v in metrics["folds"].items()},
                                  "run": str(sd.path / cfg.name), **worker_id()})
    ranking = rank_confirmed(study)
    wanted = len(finalists(study, user.tune.confirm))
    if ranking and len(ranking) == wanted:
        atomic_write_text(sd.confirm_json, json.dumps(ranking, indent=1) + "\n")
        write_best(user, base, sd, ranking[0], study.study_name)
    return ranking


def write_best(user: Config, base: dict, sd: StudyDir, winner: dict, study: str) -> Path:
    """best.yaml: the user's config with the winner's values, named <name>-<study>-best, in the user's output_dir,
    ready for `podium train` (its tune section left out)."""
    tree = base_tree(user)
    tree.pop("tune", None)
    cfg = trial_config(tree, {**winner["params"], "name": f"{user.name}-{study}-best"})
    head = (f"# podium tune, study '{study}': trial {winner['trial']}, OOF {user.cv.metric} {winner['cv']:.4f} "
            f"+- {winner['cv_fold_std']:.4f} (fold std) on every fold; its run: {winner['run']}\n"
            f"# train it: podium train {sd.best_yaml}\n")
    tree = {k: v for k, v in cfg.model_dump(mode="json").items() if k != "tune"}  # the search belongs to the study
    atomic_write_text(sd.best_yaml, head + yaml.safe_dump(tree, sort_keys=False))
    return sd.best_yaml


def show_study(study, sd: StudyDir | None) -> dict:
    """The leaderboard, the confirmed ranking, importances and best.yaml's path (when written)."""
    best = str(sd.best_yaml) if sd is not None and sd.best_yaml.exists() else None
    return {"study": study.study_name, "direction": study.direction.name.lower(), "trials": leaderboard(study),
            "confirmed": rank_confirmed(study), "importances": importances(study), "best_yaml": best,
            "folder": str(sd.path) if sd else None}


def _open(target: str | Path, storage: str | None, output_dir: Path):
    """The study folder and the study of `target` (a tune-<study> folder, or a name under output_dir)."""
    st.require_optuna()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = Path(target)
    sd = StudyDir(path) if StudyDir(path).info.exists() else StudyDir.of(output_dir, target)
    info = sd.read_info() if sd.info.exists() else {}
    if storage is None and info.get("storage"):
        raise PodiumError(f"Study '{info['study']}' lives in {info['storage']}: add --storage URL.")
    if storage is None and not sd.journal.exists():
        raise PodiumError(f"No study at '{sd.path}': give the folder <output_dir>/tune-<study> (or the study's name "
                          "with --output-dir), or --storage URL for a study in a database.")
    name = info.get("study", sd.path.name[len("tune-"):] if sd.path.name.startswith("tune-") else target)
    return sd, st.load_study(name, st.open_storage(storage, sd))


def show(target: str, storage: str | None = None, output_dir: Path = Path("runs")) -> dict:
    """`podium tune --show STUDY`: STUDY is a study folder (tune-<study>/) or a study name under output_dir; with
    --storage, the study in that database."""
    sd, study = _open(target, storage, output_dir)
    return show_study(study, sd if sd.path.exists() else None)


def study_report(target: Path, out: Path | None = None, storage: str | None = None) -> Path:
    """`podium report tune-<study>/`: the study's HTML page."""
    sd, study = _open(target, storage, Path("runs"))
    return study_page(study, sd, out)

"""Experiment tracking: the loggers each fold trains with, and what a finished run logs.

Always: fold<k>/metrics.csv (one row per epoch) and fold<k>/tensorboard/ (`tensorboard --logdir runs`).

MLflow (`track.mlflow: true`), store `track.mlflow_uri`, default `sqlite:///<output_dir>/mlflow.db` with
artifacts under <output_dir>/mlartifacts/ (a server URI such as http://host:5000 works the same way).
One podium run = one MLflow parent run named after it (in experiment `track.experiment`), holding the
config as params (dotted keys: `train.lr`), the OOF and CV scores and per-fold scores as metrics
(`oof_accuracy`, `cv`, `cv_fold_std`, `fold0_accuracy`, ...) and config.yaml, metrics.json, oof.csv and
report.html as artifacts. Each fold is a child run (`<name>/fold<k>`) with the per-epoch curves under the
same names as metrics.csv (`train_loss_epoch`, `val_accuracy`, `val_logloss`, ...), so MLflow's chart
view overlays folds. The ids live in <run>/mlflow.json and fold<k>/mlflow.json: `--resume` continues the
same runs. Look at them with `mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`.

W&B (`track.wandb: true`) runs offline: each fold is a run in group <name> of project `track.experiment`
under <output_dir>/wandb/, plus one `summary` run with the scores and the files as an artifact; upload
later with `wandb sync <output_dir>/wandb/offline-run-*`.
"""

from __future__ import annotations

from pathlib import Path

from podium.config import Config
from podium.errors import PodiumError
from podium.run.folddir import FoldDir
from podium.run.rundir import RunDir
from podium.run.writer import is_writer


def flat_params(cfg: Config) -> dict[str, str]:
    """The config as dotted key -> text (MLflow params, W&B config)."""
    out: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = str(value)

    walk(cfg.model_dump(mode="json"), "")
    return out


def score_metrics(metrics: dict) -> dict[str, float]:
    """metrics.json as flat numbers: oof_<score>, cv, cv_fold_std, fold<k>_<score>."""
    out = {f"oof_{k}": float(v) for k, v in metrics["oof"].items() if k not in ("n", "cv")}
    out.update(cv=float(metrics["cv"]), cv_fold_std=float(metrics["cv_fold_std"]))
    for fold, scores in metrics["folds"].items():
        out.update({f"{fold}_{k}": float(v) for k, v in scores.items() if k not in ("n", "cv")})
    return out


# ------------------------------------------------------------------------------------------------ MLflow


def mlflow_uri(cfg: Config) -> str:
    return cfg.track.mlflow_uri or f"sqlite:///{(Path(cfg.output_dir) / 'mlflow.db').resolve()}"


def _client(cfg: Config):
    import logging

    try:
        from mlflow import MlflowClient
    except ModuleNotFoundError:
        raise PodiumError("track.mlflow=true needs MLflow: pip install 'podium[track]' (or mlflow).") from None
    for name in ("mlflow", "alembic"):  # no INFO lines about creating the database's tables
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=mlflow_uri(cfg))


def _experiment_id(cfg: Config, client) -> str:
    found = client.get_experiment_by_name(cfg.track.experiment)
    if found is not None and found.lifecycle_stage != "deleted":
        return found.experiment_id
    local = cfg.track.mlflow_uri is None  # the embedded default keeps artifacts beside the database
    where = (Path(cfg.output_dir) / "mlartifacts").resolve().as_uri() if local else None
    return client.create_experiment(cfg.track.experiment, artifact_location=where)


def mlflow_parent(cfg: Config, run_dir: Path) -> str:
    """The podium run's MLflow run id: created (with the config as params) the first time, then reused."""
    client, uri = _client(cfg), mlflow_uri(cfg)
    rd = RunDir(run_dir)
    run_id = rd.tracking_id(uri)
    if run_id is None:
        run = client.create_run(_experiment_id(cfg, client), run_name=cfg.name,
                                tags={"podium.run_dir": str(run_dir.resolve())})
        run_id = run.info.run_id
        params = flat_params(cfg)
        from mlflow.entities import Param

        client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in params.items()])
        rd.write_tracking_id(uri, run_id)
    return run_id


def mlflow_log_run(cfg: Config, run_dir: Path, metrics: dict) -> None:
    from mlflow.entities import Metric

    client = _client(cfg)
    run_id = mlflow_parent(cfg, run_dir)
    rd = RunDir(run_dir)
    stamp = int(rd.metrics_json.stat().st_mtime * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, stamp, 0) for k, v in score_metrics(metrics).items()])
    for path in rd.artifacts():
        client.log_artifact(run_id, str(path))
    client.set_tag(run_id, "podium.complete", str(metrics["complete"]).lower())
    if metrics["complete"]:
        client.set_terminated(run_id, "FINISHED")


# ------------------------------------------------------------------------------------------------- W&B


def _wandb():
    try:
        import wandb
    except ModuleNotFoundError:
        raise PodiumError("track.wandb=true needs Weights & Biases: pip install 'podium[track]' (or wandb).") from None
    return wandb


def _wandb_settings(wandb):
    return wandb.Settings(silent=True, console="off", x_disable_stats=True, disable_git=True, save_code=False)


def wandb_log_run(cfg: Config, run_dir: Path, metrics: dict) -> None:
    wandb = _wandb()
    run = wandb.init(project=cfg.track.experiment, group=cfg.name, job_type="summary", name=f"{cfg.name}-summary",
                     dir=str(Path(cfg.output_dir).resolve()), mode="offline", config=flat_params(cfg),
                     settings=_wandb_settings(wandb), reinit="create_new")
    try:
        run.summary.update(score_metrics(metrics))
        artifact = wandb.Artifact(f"{cfg.name}-files".replace("/", "_"), type="podium-run")
        for path in RunDir(run_dir).artifacts():
            artifact.add_file(str(path))
        run.log_artifact(artifact)
    finally:
        run.finish()


def fold_loggers(cfg: Config, fold_dir: Path, fold: int) -> list:
    """Lightning loggers for one fold."""
    from lightning.pytorch.loggers import TensorBoardLogger

    board = FoldDir(fold_dir).tensorboard
    loggers = [TensorBoardLogger(board.parent, name=board.name, version="")]  # writes on rank 0 only
    if not is_writer():  # another rank of a multi-device run: the trackers' runs are rank 0's
        return loggers
    if cfg.track.mlflow:
        loggers.append(_mlflow_fold_logger(cfg, fold_dir, fold))
    if cfg.track.wandb:
        loggers.append(_wandb_fold_logger(cfg, fold))
    return loggers


def _mlflow_fold_logger(cfg: Config, fold_dir: Path, fold: int):
    from lightning.pytorch.loggers import MLFlowLogger

    parent, uri = mlflow_parent(cfg, fold_dir.parent), mlflow_uri(cfg)
    files = FoldDir(fold_dir)
    logger = MLFlowLogger(experiment_name=cfg.track.experiment, run_name=f"{cfg.name}/fold{fold}", tracking_uri=uri,
                          tags={"mlflow.parentRunId": parent, "podium.fold": str(fold)},
                          run_id=files.tracking_id(uri))
    fold_dir.mkdir(parents=True, exist_ok=True)
    files.write_tracking_id(uri, logger.run_id)  # logger.run_id creates the run
    return logger


def _wandb_fold_logger(cfg: Config, fold: int):
    from lightning.pytorch.loggers import WandbLogger

    wandb = _wandb()

    class FoldLogger(WandbLogger):
        """Finishes its W&B run when the fold's fit ends, so the next fold gets a run of its own."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self._wandb_init.pop("anonymous", None)  # deprecated in wandb: passing it only prints a warning

        def finalize(self, status: str) -> None:
            super().finalize(status)
            if self._experiment is not None:
                self._experiment.finish(exit_code=0 if status == "success" else 1)

    save_dir = Path(cfg.output_dir).resolve()
    save_dir.mkdir(parents=True, exist_ok=True)
    return FoldLogger(name=f"{cfg.name}-fold{fold}", project=cfg.track.experiment, group=cfg.name, job_type="fold",
                      save_dir=str(save_dir), offline=True, config={**flat_params(cfg), "fold": fold},
                      settings=_wandb_settings(wandb), reinit="create_new")

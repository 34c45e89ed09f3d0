"""The names of a run folder's files, in one place, and how to get each one back when it is damaged.

Only podium.run spells these names; every other module reaches a run's files through RunDir (and FoldDir), and
tests/run/test_owner.py fails naming the line that spells one elsewhere. A message or help text meaning "this file
of any run" writes it as RUN/<name> or fold<k>/<name>.
"""

from __future__ import annotations

from pathlib import Path

# what a run was made from, written when `podium train` starts
CONFIG = "config.yaml"
CLASSES = "classes.json"  # the network's outputs in order: classes | labels | task:class
INFO = "run.json"  # the model's input as trained: channels, n_train, mean, std, weights (what the network started from)
DATA = "data.json"  # the data it was trained on: fingerprints of the table and the image files
FOLDS = "folds.csv"  # (id, fold) of every training image
# every finished fold merged
OOF = "oof.csv"
METRICS = "metrics.json"
# decisions fitted on the OOF, read by predict
THRESHOLDS = "thresholds.json"
POSTHOC = "posthoc.json"
# later commands' files
TEST_PROBS = "test_probs.csv"
SUBMISSION = "submission.csv"  # `podium predict`'s default --out
PREDICT = "predict.json"  # the last `podium predict`: views, OOF with and without TTA, seconds, files
TTA_OOF = "oof_tta-"  # oof_tta-<views>[-<combine>].csv: the OOF predicted again with TTA
REPORT = "report.html"  # `podium report`'s default --out
SUSPECTS = "suspects.csv"  # `podium errors RUN --suspect`'s default --out: likely mislabels, ready for data.exclude
MLFLOW = "mlflow.json"  # the MLflow run ids (in the run folder and in each fold<k>/)
ENSEMBLE = "ensemble.json"  # an ensemble folder's record (`podium ensemble`)
PSEUDO = "pseudo.json"  # a pseudo folder's record (`podium pseudo`); also in each run trained with data.pseudo
PSEUDO_TABLE = "pseudo.csv"  # a pseudo folder's images: id, path, label, soft, one probability column per class
EXPORT = "onnx_export"  # `podium export`'s default --out: model.onnx + manifest.json (podium.ship)
PACKAGE = "submission_package"  # `podium package`'s default --out (and its .zip beside it)
# fold<k>/
DONE = "done.json"  # the fold's finished marker: best epoch, epochs run, seconds
CURVES = "metrics.csv"  # one row per epoch
FINETUNE = "finetune.json"  # train.finetune_size: the epoch its larger-size epochs started from
BEST = "best.ckpt"
LAST = "last.ckpt"  # Lightning's name for save_last (ModelCheckpoint.CHECKPOINT_NAME_LAST)
TENSORBOARD = "tensorboard"

RUN_FILES = (CONFIG, CLASSES, INFO, DATA, FOLDS, OOF, METRICS, THRESHOLDS, POSTHOC, TEST_PROBS, SUBMISSION, PREDICT,
             TTA_OOF, REPORT, SUSPECTS, MLFLOW, ENSEMBLE, PSEUDO, PSEUDO_TABLE, EXPORT, PACKAGE, DONE, CURVES,
             FINETUNE, BEST, LAST, TENSORBOARD)

_MERGED = (OOF, METRICS)  # rebuilt from the finished folds by `podium train --resume`
_STARTED = (CONFIG, FOLDS, CLASSES, INFO)


def tta_oof_name(views: list[str], how: str) -> str:
    """oof_tta-<views>.csv (-<how> added when the views were not combined by averaging probabilities)."""
    from podium.tta import tta_key

    return f"{TTA_OOF}{tta_key(views)}{'' if how == 'mean_probs' else '-' + how}.csv"


def fix(run: Path, name: str) -> str:
    """How to get a good RUN/`name` back (`name` may lie in a fold: fold<k>/done.json)."""
    config = run / CONFIG
    base = name.rsplit("/", 1)[-1]
    if base == MLFLOW:
        return "delete it: the next `podium train` then starts a new MLflow run"
    if base == DATA:
        return (f"write it again with `podium train {config} --resume` (it records the data found now), or delete "
                "it: a run without it shows no data version")
    if name in _MERGED:
        return f"rebuild it from the finished folds with `podium train {config} --resume`"
    if name.startswith("fold") and "/" in name:
        k = name[4:name.index("/")]
        return f"retrain that fold: `podium train {config} --folds {k} --overwrite`"
    if name in (TEST_PROBS, PREDICT) or name.startswith(TTA_OOF):
        return f"write it again with `podium predict {run}`"
    if name == EXPORT:
        return f"write it again with `podium export {run} --overwrite`"
    if name == PACKAGE:
        return f"write it again with `podium package {run} --overwrite`"
    if name == POSTHOC:
        return f"fit it again with `podium posthoc {run}`"
    if name in (PSEUDO, PSEUDO_TABLE):
        return "write the folder again with `podium pseudo SOURCE --out DIR`, then retrain the run"
    if name == THRESHOLDS:
        return f"fit it again with `podium train {config} --resume`"
    if name in _STARTED:
        return "restore it from a backup, or retrain the run (`podium train CONFIG --overwrite`, or a new name=...)"
    return "restore it from a backup, or retrain the run"

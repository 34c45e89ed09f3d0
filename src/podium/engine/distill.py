"""What a training image learns besides its label: pseudo-labelled pool images (`data.pseudo`, made by `podium
pseudo`) and a teacher run's out-of-fold probabilities (`train.soft_targets`, OOF distillation).

Neither ever reaches validation. Pool images join the table at fold TRAIN_ONLY (podium.data.pseudo), so fold k's
validation images, the OOF and the CV score are the labeled images of the persisted split, as in the source run.
A teacher's OOF probability for an image comes from the teacher's fold model that never saw it, and the student
must use the very same folds (refused otherwise, naming the ids that moved); the soft targets only ever enter the
training loss, validation images keep their labels for scoring. Second order, and said in docs/pseudo-labels.md:
the teacher's model for fold j trained on fold k's images, so a fold-k training image's soft target carries a
little of what fold k's labels taught it (as pseudo-labels from a model trained on every fold do): the held-out
benchmark, not the CV, is what measures the gain.

Targets (podium.losses.SoftLayout): labeled images and hard pseudo-labels: alpha q + (1 - alpha) label with alpha =
train.soft_alpha when train.soft_targets is set, else 0 (q: the teacher's OOF, or the pseudo source's probability
for a pool image); soft pseudo-labels (`podium pseudo --soft`): alpha 1, q the source's probabilities. With every
alpha 0 nothing is packed: the run trains exactly as without these settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from podium.config import Config
from podium.data.pseudo import join_pseudo
from podium.data.splits import TRAIN_ONLY
from podium.errors import PodiumError, fmt_list
from podium.losses import SoftLayout
from podium.run.rundir import RunDir


@dataclass(frozen=True)
class SoftTargets:
    """Per training-table row: alpha (the soft share of its target) and q (N x C probabilities)."""

    alpha: np.ndarray  # N float
    probs: np.ndarray  # N x C float

    def layout(self, targets: np.ndarray) -> SoftLayout:
        hard = np.asarray(targets)
        return SoftLayout(hard_cols=1 if hard.ndim == 1 else hard.shape[1], index=hard.ndim == 1,
                          uniform=bool((self.alpha == self.alpha[0]).all()))

    def packed(self, targets: np.ndarray) -> np.ndarray:
        return self.layout(targets).pack(targets, self.alpha, self.probs)


def add_pseudo(cfg: Config, frame: pd.DataFrame, classes: list[str]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The training table with data.pseudo's images appended at fold TRAIN_ONLY, and their table (pseudo.csv);
    without data.pseudo, `frame` and None."""
    if cfg.data.pseudo is None:
        return frame, None
    if cfg.data.task != "multiclass":
        raise PodiumError(f"data.pseudo adds images with one class each: data.task={cfg.data.task} is not supported "
                          "(remove data.pseudo).")
    folder = RunDir(cfg.data.pseudo)
    if not folder.pseudo_csv.is_file():
        raise PodiumError(f"data.pseudo: '{cfg.data.pseudo}' holds no {folder.pseudo_csv.name}: point it at a folder "
                          "made by `podium pseudo SOURCE --out DIR`.")
    table = folder.pseudo_table(classes)
    return join_pseudo(frame, table, classes, str(folder.pseudo_csv)), table


def pseudo_record(cfg: Config, table: pd.DataFrame | None) -> dict | None:
    """What RUN/pseudo.json keeps: the pseudo folder's record and what this run took from it."""
    if table is None:
        return None
    record = RunDir(cfg.data.pseudo).pseudo() or {}
    return {**record, "folder": str(cfg.data.pseudo), "images": len(table), "soft_images": int(table["soft"].sum()),
            "fold": TRAIN_ONLY}


def teacher_oof(cfg: Config, frame: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """train.soft_targets' OOF probabilities for each labeled row of `frame` (fold >= 0), in `classes` order; refused
    when the teacher's classes, folds or OOF do not match the student's, naming the difference. The teacher is a run,
    or an ensemble folder (its blended OOF; the folds and classes of its runs, which `podium ensemble` checked)."""
    teacher = Path(cfg.train.soft_targets)
    rd = RunDir(teacher)
    blend = None if rd.config.is_file() else rd.ensemble()  # an ensemble folder: its runs share one split
    runs = blend.get("runs") if isinstance(blend, dict) else None
    split = RunDir(runs[0]) if isinstance(runs, list) and runs else rd  # whose folds.csv and classes.json
    if not split.config.is_file() or not split.folds_csv.is_file() or not split.classes_file.is_file():
        raise PodiumError(f"train.soft_targets: '{teacher}' is not a trained run folder or a `podium ensemble` folder "
                          f"of runs (no {rd.config.name}, {rd.folds_csv.name} or {rd.classes_file.name}).")
    if teacher.resolve() == (Path(cfg.output_dir) / cfg.name).resolve():
        raise PodiumError(f"train.soft_targets is this run's own folder '{teacher}': distil into a new name=...")
    theirs = split.classes()
    if sorted(theirs) != sorted(classes):
        differ = fmt_list(sorted(set(theirs) ^ set(classes)))
        raise PodiumError(f"train.soft_targets: '{teacher}' was trained on other classes: {fmt_list(theirs, 10)}; "
                          f"this data has {fmt_list(classes, 10)} (differ: {differ}). Distil from a run on the same "
                          "classes.")
    labeled = frame[frame["fold"] >= 0]
    moved = fold_differences(split.folds().set_index("id")["fold"], labeled.set_index("id")["fold"])
    if moved:
        raise PodiumError(f"train.soft_targets: '{teacher}' used other folds than this config ({len(moved)} id(s) "
                          f"differ: {fmt_list(moved[:5])}): its OOF for an image could come from a model that saw "
                          "the image's validation fold here. Use the same data, cv settings and folds file as that "
                          "run.")
    if not rd.oof_csv.is_file():
        raise PodiumError(f"train.soft_targets: '{teacher}' has no {rd.oof_csv.name}: train all its folds first.")
    oof = rd.read_csv(rd.oof_csv.name, ["id", *theirs], text=("id",)).set_index("id")  # an ensemble's has no fold
    missing = labeled["id"][~labeled["id"].isin(oof.index)]
    if len(missing):
        folds = sorted(int(k) for k in labeled.loc[missing.index, "fold"].unique())
        raise PodiumError(f"train.soft_targets: '{teacher}' has no OOF for fold(s) {fmt_list(folds)} "
                          f"({len(missing)} images, first: {fmt_list(missing[:5].tolist())}). Train those folds of "
                          "it first.")
    return oof.loc[labeled["id"], classes].to_numpy(np.float32)


def fold_differences(theirs: pd.Series, ours: pd.Series) -> list[str]:
    """The ids (index) in one split but not the other, or in another fold: the split differs when any is listed."""
    differ = ours.index.symmetric_difference(theirs.index).tolist()
    common = ours.index.intersection(theirs.index)
    differ += common[ours.loc[common].to_numpy() != theirs.loc[common].to_numpy()].tolist()
    return [str(i) for i in differ]


def soft_targets(cfg: Config, frame: pd.DataFrame, classes: list[str],
                 pseudo: pd.DataFrame | None) -> SoftTargets | None:
    """Every row's alpha and q (module docstring); None when every alpha is 0 (nothing to learn but the labels)."""
    alpha = np.zeros(len(frame), dtype=np.float32)
    probs = np.zeros((len(frame), len(classes)), dtype=np.float32)
    labeled = (frame["fold"] >= 0).to_numpy()
    if cfg.train.soft_targets is not None:
        probs[labeled] = teacher_oof(cfg, frame, classes)
        alpha[:] = cfg.train.soft_alpha
    if pseudo is not None:
        rows = pseudo.set_index("id").loc[frame.loc[~labeled, "id"]]
        probs[~labeled] = rows[classes].to_numpy(np.float32)
        alpha[~labeled] = np.where(rows["soft"].to_numpy() == 1, 1.0, alpha[~labeled])
    return None if not alpha.any() else SoftTargets(alpha, probs)

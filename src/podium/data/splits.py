"""Persisted K-fold splits: `folds.csv` (id, fold) is written once and every later command reuses it.

Folds are drawn by the strategy `cv.strategy` names (podium.strategies). Rows are sorted by id before splitting, so
the same data, strategy and seed give the same file whatever the order of the CSV. A folds file that no longer
matches the data (ids added or removed) is refused, never silently rewritten: runs trained on different folds
cannot be compared or ensembled.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from podium.config import Config, CVConfig
from podium.data.exclude import dropped_ids
from podium.errors import PodiumError, fmt_list
from podium.io import atomic_write_csv
from podium.strategies import GROUPED, STRATEGIES

# The fold of an image that trains in every fold and is validated in none: the pool images of data.pseudo (podium
# pseudo). Only a run's own folds.csv holds it (RUN/folds.csv); the user's folds file never does, and no fold k >= 0
# ever equals it, so these images never reach a validation fold, the OOF or the CV score.
TRAIN_ONLY = -1


def assign_folds(frame: pd.DataFrame, cv: CVConfig) -> pd.DataFrame:
    """A (id, fold) table sorted by id, for `frame` (columns id, label, [group])."""
    ordered = frame.sort_values("id", kind="stable").reset_index(drop=True)
    split = STRATEGIES.get(cv.strategy).build
    if cv.strategy in GROUPED:
        n_groups = ordered["group"].nunique()
        if n_groups < cv.n_folds:
            raise PodiumError(f"cv.group_col '{cv.group_col}' has {n_groups} groups: "
                              f"fewer than cv.n_folds={cv.n_folds}.")
    if len(ordered) < cv.n_folds:
        raise PodiumError(f"{len(ordered)} images cannot make cv.n_folds={cv.n_folds} folds.")
    fold = np.full(len(ordered), -1, dtype=int)
    with warnings.catch_warnings():  # sklearn warns when a class has fewer members than folds; we report it below
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, val_idx) in enumerate(split(ordered, cv)):
            fold[val_idx] = k
    return pd.DataFrame({"id": ordered["id"].to_numpy(), "fold": fold})


def folds_path(cfg: Config) -> Path:
    """cv.folds_file, else folds.csv next to the training data (folds_subset<N>.csv for data.subset)."""
    if cfg.cv.folds_file is not None:
        return Path(cfg.cv.folds_file)
    base = Path(cfg.data.train_csv).parent if cfg.data.train_csv else Path(cfg.data.train_dir).parent
    return base / (f"folds_subset{cfg.data.subset}.csv" if cfg.data.subset else "folds.csv")


REMAKE = "Remake it with `podium split CONFIG --overwrite`."


def read_folds(path: Path) -> pd.DataFrame:
    """The (id, fold) table of a folds file: every id once, every fold a non-negative integer, or a PodiumError
    naming the file, the rows and how to remake it."""
    try:
        # every cell as text: ids like 'NA', 'null' or '007' stay what they are (train.csv is read the same way)
        folds = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PodiumError(f"Folds file '{path}' is not a readable CSV ({type(exc).__name__}: {exc}). "
                          f"{REMAKE}") from None
    if list(folds.columns[:2]) != ["id", "fold"]:
        raise PodiumError(f"Folds file '{path}' must have the columns id,fold (it has {fmt_list(folds.columns, 5)}). "
                          f"{REMAKE}")
    text = folds["fold"].str.strip()
    bad = ~text.str.fullmatch(r"\d{1,9}")
    if bad.any():
        rows = [f"line {i + 2} ({v!r})" for i, v in zip(np.flatnonzero(bad), folds["fold"][bad])]
        raise PodiumError(f"Folds file '{path}' has folds that are not non-negative integers: {fmt_list(rows, 5)}. "
                          f"{REMAKE}")
    folds["fold"] = text.astype(np.int64)
    twice = folds["id"].duplicated(keep=False)
    if twice.any():
        ids = [f"'{i}' (lines {', '.join(str(k + 2) for k in np.flatnonzero(folds['id'] == i))})"
               for i in folds.loc[twice, "id"].unique()[:5]]
        n = folds.loc[twice, "id"].nunique()
        raise PodiumError(f"Folds file '{path}' lists {n} id(s) more than once: {fmt_list(ids, 5)}"
                          f"{f' (+{n - 5} more)' if n > 5 else ''}. An image must be in exactly one fold. {REMAKE}")
    return folds


def _folds_hint(path: Path) -> str:
    return (f"set cv.folds_file=/a/writable/folder/{path.name} (a data folder may be read-only, like Kaggle's "
            "/kaggle/input)")


def _id_diff(have: pd.Series, want: pd.Series) -> tuple[list, list]:
    a, b = set(have), set(want)
    return sorted(b - a), sorted(a - b)


def make_folds_file(cfg: Config, overwrite: bool = False) -> tuple[Path, pd.DataFrame, str]:
    """Write the folds file; an existing identical file is kept, a different one is refused unless overwrite."""
    from podium.data.sources import load_train

    frame, _ = load_train(cfg, exclude=False)  # data.exclude never moves an image to another fold
    folds = assign_folds(frame, cfg.cv)
    path = folds_path(cfg)
    existed = path.exists()
    if existed:
        old = read_folds(path)
        if old.equals(folds):
            return path, folds, "up to date"
        if not overwrite:
            added, removed = _id_diff(old["id"], folds["id"])
            why = (f"its ids differ from the data ({len(added)} new, {len(removed)} gone)" if added or removed
                   else "it was made with other settings (strategy, n_folds or seed)")
            raise PodiumError(f"Folds file '{path}' exists and {why}. "
                              "Runs trained on it would no longer be comparable. "
                              "Pass --overwrite to replace it, or set cv.folds_file to a new path.")
    atomic_write_csv(path, folds, hint=_folds_hint(path))
    return path, folds, "replaced" if existed else "wrote"


def load_folds(cfg: Config, frame: pd.DataFrame, create: bool = True) -> np.ndarray:
    """The fold of each row of `frame`, from the persisted file (made first when missing and `create`)."""
    path = folds_path(cfg)
    if not path.exists():
        if not create:
            raise PodiumError(f"No folds file at '{path}'. Run `podium split CONFIG` first.")
        whole = frame
        if cfg.data.exclude is not None:  # drawn on the whole table, as `podium split` draws them
            from podium.data.sources import load_train

            whole = load_train(cfg, exclude=False)[0]
        atomic_write_csv(path, assign_folds(whole, cfg.cv), hint=_folds_hint(path))
    folds = read_folds(path)
    added, removed = _id_diff(folds["id"], frame["id"])
    if cfg.data.exclude is not None:  # the images data.exclude drops leave their folds; the others keep theirs
        gone = dropped_ids(cfg.data.exclude)
        removed = [i for i in removed if i not in gone]
    if added or removed:
        parts = []
        if added:
            parts.append(f"{len(added)} id(s) in the data but not in the file ({fmt_list(added, 5)})")
        if removed:
            parts.append(f"{len(removed)} id(s) in the file but not in the data ({fmt_list(removed, 5)})")
        raise PodiumError(f"Folds file '{path}' does not match the training data: {'; '.join(parts)}. "
                          "Run `podium split CONFIG --overwrite` to remake it (earlier runs then use other folds).")
    n = folds["fold"].nunique()
    if n != cfg.cv.n_folds or folds["fold"].min() != 0 or folds["fold"].max() != n - 1:
        raise PodiumError(f"Folds file '{path}' has folds {sorted(int(f) for f in folds['fold'].unique())} "
                          f"but cv.n_folds={cfg.cv.n_folds}. "
                          f"Set cv.n_folds={n}, or remake it with `podium split CONFIG --overwrite`.")
    return frame["id"].map(dict(zip(folds["id"], folds["fold"]))).to_numpy(dtype=int)

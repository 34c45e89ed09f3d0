"""Data sources: a CSV + image folder, or a folder per class; each becomes one table.

The table has columns `id`, `path` (absolute, or None when the file is missing), `label` (class name as the
user wrote it; None for test data; multilabel/multitask: the labels joined by data.label_sep, with the tuples in
`labels`, see podium.tasks), `group` (when cv.group_col is set) and `row` (the CSV line, 1-based,
header = line 1, so a message can point at it). Problems a user must fix are collected as `Problem`s: the
strict loaders raise them all at once; `podium data check` reports them with everything else it finds.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from podium.config import Config, DataConfig
from podium.data.exclude import apply_exclude, read_exclude
from podium.data.images import IMAGE_EXTENSIONS
from podium.errors import PodiumError, Problem, fmt_list, short_repr, short_text
from podium.io import read_csv


@dataclass
class Table:
    frame: pd.DataFrame  # id, path, label, [group], row
    source: str  # what it was read from, for messages
    problems: list[Problem] = field(default_factory=list)


def _need_columns(frame: pd.DataFrame, cols: list[str], path: Path, key_of: dict[str, str]) -> None:
    for col in cols:
        if col not in frame.columns:
            seps = [s for s in (";", "\t", "|") if frame.shape[1] == 1 and s in frame.columns[0]]
            hint = f" It seems to be separated by {seps[0]!r}: podium reads comma-separated files." if seps else ""
            raise PodiumError(
                f"'{path}' has no column '{col}' (set by {key_of[col]}). Its columns are: "
                f"{fmt_list(frame.columns)}. Set {key_of[col]} to one of them.{hint}"
            )


def index_folder(folder: Path) -> dict[str, list[Path]]:
    """Map each image file's name without extension (relative to `folder`, posix) to its paths, in path order.
    Like `sorted(folder.rglob("*"))`, symlinked folders are not entered; symlinked files count. Walked with
    os.scandir on strings: pathlib's rglob + sort took 1.4 s on 70,000 files, this a fraction of it."""
    found: list[tuple[tuple[str, ...], str]] = []  # (parts relative to folder, path)
    stack: list[tuple[str, tuple[str, ...]]] = [(str(folder), ())]
    while stack:
        where, parts = stack.pop()
        with os.scandir(where) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, (*parts, entry.name)))
                    continue
                stem, ext = os.path.splitext(entry.name)
                if stem and ext.lower() in IMAGE_EXTENSIONS and entry.is_file():
                    found.append(((*parts, entry.name), entry.path))
    found.sort()
    out: dict[str, list[Path]] = {}
    for parts, path in found:
        key = "/".join((*parts[:-1], os.path.splitext(parts[-1])[0]))
        out.setdefault(key, []).append(Path(path))
    return out


class _Resolver:
    """`Path.resolve()` for many files in few folders: each folder is resolved once and a file is followed only
    when it is a symlink (70,000 files: 2.3 s with Path.resolve)."""

    def __init__(self):
        self.folders: dict[str, str] = {}

    def __call__(self, path: Path) -> Path:
        head, name = os.path.split(str(path))
        if name in ("", ".", "..") or os.path.islink(path):
            return path.resolve()
        if head not in self.folders:
            self.folders[head] = os.path.realpath(head)
        return Path(self.folders[head], name)


def _need_dir(path: Path | None, key: str) -> Path:
    if path is None:
        raise PodiumError(f"{key} is not set in the config: it must name the folder holding the images.")
    path = Path(path)
    if not path.is_dir():
        raise PodiumError(f"Image folder '{path}' (from {key}) does not exist. Check {key} in the config.")
    return path


MAX_NAME_BYTES = 255  # the longest file name (one path part) Linux, macOS and Windows file systems allow


def _inside(path: Path, root: Path) -> bool:
    """Whether `path` lies in folder `root` (both resolved: symlinks followed, '..' gone)."""
    return path == root or root in path.parents


def outside_problem(where: str, shown: str, resolved: Path, folder: Path, folder_key: str) -> Problem:
    return Problem(
        "outside-image-dir", where,
        f"image '{shown}' is '{resolved}', outside the image folder {folder} ({folder_key}): fix the row (or the "
        "symlink), or set data.allow_outside_image_dir=true if images are meant to live elsewhere")


def _bad_name(name: str, col: str) -> str | None:
    """Why `name` (an id or path_col value) cannot name a file, or None."""
    if "\0" in name:
        return f"column '{col}' holds a NUL character ({short_repr(name, 80)}), which no file name can"
    longest = max((len(part.encode("utf-8", "surrogateescape")) for part in name.replace("\\", "/").split("/")),
                  default=0)
    if longest > MAX_NAME_BYTES:
        return (f"column '{col}' holds a name of {longest} bytes ({short_repr(name, 80)}); file systems allow "
                f"{MAX_NAME_BYTES}")
    return None


def _find_image(ident: str, rel, data: DataConfig, folder: Path, index: dict | None, where: str,
                problems: list) -> Path | None:
    """The image file of one row (image_dir/<path_col>, or the file named <id>.<any image ext>), or None after
    adding the problem that stops it being found."""
    if data.path_col:
        if not (isinstance(rel, str) and rel.strip()):
            problems.append(Problem("missing-file", where, f"column '{data.path_col}' is empty"))
            return None
        if (why := _bad_name(rel, data.path_col)) is not None:
            problems.append(Problem("bad-name", where, why + ": fix the row"))
            return None
        p = folder / rel
        if not p.is_file():
            problems.append(Problem("missing-file", where, f"image '{short_text(rel)}' not found in {folder}"))
            return None
        return p
    if (why := _bad_name(str(ident), data.id_col)) is not None:
        problems.append(Problem("bad-name", where,
                                why + ": fix the row, or set data.path_col to a column of file names"))
        return None
    found = index.get(str(ident), [])
    if not found and ident and (folder / str(ident)).is_file():  # the id is itself the file name
        found = [folder / str(ident)]
    if not found:
        problems.append(Problem("missing-file", where, f"no image named '{short_text(ident)}.<ext>' in {folder}"))
    elif len(found) > 1:
        problems.append(Problem("ambiguous-file", where,
                                f"id '{ident}' matches several files ({fmt_list(q.name for q in found)}); "
                                "set data.path_col to a column holding each file's name"))
    return found[0] if len(found) == 1 else None


def _resolve_paths(frame: pd.DataFrame, data: DataConfig, folder: Path, folder_key: str, csv: Path,
                   problems: list) -> list:
    """Each row's image path, resolved; None (and a Problem) when it is missing, ambiguous, cannot be a file name,
    or lies outside `folder` (after symlinks) without data.allow_outside_image_dir."""
    paths: list[str | None] = []
    index = None if data.path_col else index_folder(folder)
    root = folder.resolve()
    resolve = _Resolver()
    for i, (ident, rel) in enumerate(zip(frame["id"], frame["_path"] if data.path_col else frame["id"])):
        where = f"{csv} row {i + 2}"
        try:
            p = _find_image(ident, rel, data, folder, index, where, problems)
            resolved = resolve(p) if p is not None else None
        except (OSError, ValueError) as exc:  # a path the system refuses to look at (too long, no permission)
            what = rel if data.path_col else ident
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            problems.append(Problem("bad-name", where, f"cannot look up '{short_text(what, 80)}' in {folder} "
                                                       f"({reason}): fix the row"))
            resolved = None
        if resolved is not None and not data.allow_outside_image_dir and not _inside(resolved, root):
            shown = rel if data.path_col else str(p.relative_to(folder)) if p.is_relative_to(folder) else str(p)
            problems.append(outside_problem(where, short_text(shown, 200), resolved, folder, folder_key))
            resolved = None
        paths.append(str(resolved) if resolved is not None else None)
    return paths


def _csv_table(data: DataConfig, csv: Path, folder_key: str, folder: Path | None, labelled: bool,
               group_col: str | None) -> Table:
    frame = read_csv(csv, "data.train_csv" if labelled else "data.test_csv")
    keys = {data.id_col: "data.id_col", **{c: "data.label_col" for c in data.label_columns()}}
    needed = [data.id_col]
    if data.path_col:
        keys[data.path_col] = "data.path_col"
        needed.append(data.path_col)
    if labelled:
        needed.extend(data.label_columns())
    if group_col:
        keys[group_col] = "cv.group_col"
        needed.append(group_col)
    _need_columns(frame, needed, csv, keys)
    folder = _need_dir(folder, folder_key)
    problems: list[Problem] = []
    out = pd.DataFrame({"id": frame[data.id_col].astype(object)})
    if data.path_col:
        out["_path"] = frame[data.path_col]
    for i in np.flatnonzero(out["id"].isna().to_numpy()):
        problems.append(Problem("empty-id", f"{csv} row {i + 2}", f"column '{data.id_col}' is empty"))
    out["id"] = out["id"].fillna("").str.strip()
    # object dtype: pandas 3 would store a list of str as its string dtype and turn the None of a missing file into NaN
    out["path"] = pd.Series(_resolve_paths(out, data, folder, folder_key, csv, problems), index=out.index,
                            dtype=object)
    out = out.drop(columns=["_path"], errors="ignore")
    out["label"] = None
    if labelled:  # the task reads its label column(s): text per row, plus label tuples for multilabel/multitask
        from podium.tasks import task_class

        text, labels, label_problems = task_class(data.task).read_labels(frame, data, csv)
        out["label"] = text
        if labels is not None:
            out["labels"] = labels
        problems.extend(label_problems)
    if group_col:
        out["group"] = frame[group_col]
    out["row"] = np.arange(2, len(out) + 2)
    return Table(out, str(csv), problems)


def _folder_table(folder_key: str, folder: Path | None, labelled: bool, allow_outside: bool = False) -> Table:
    folder = _need_dir(folder, folder_key)
    found: list[tuple[str, Path, str | None]] = []  # (id, file, label)
    if labelled:
        class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not class_dirs:
            raise PodiumError(f"'{folder}' ({folder_key}) has no sub-folders: it needs one folder per class.")
        for d in class_dirs:
            for key, paths in index_folder(d).items():
                found += [(f"{d.name}/{key}", p, d.name) for p in paths]
    else:
        for key, paths in index_folder(folder).items():
            found += [(key, p, None) for p in paths]
    if not found:
        raise PodiumError(f"'{folder}' ({folder_key}) holds no image files ({', '.join(IMAGE_EXTENSIONS)}).")
    root, rows, problems = folder.resolve(), [], []
    for ident, p, label in found:
        resolved = p.resolve()
        if not allow_outside and not _inside(resolved, root):  # a symlink pointing out of the folder
            problems.append(outside_problem(str(p), str(p.relative_to(folder)), resolved, folder, folder_key))
            continue
        rows.append((ident, str(resolved), label))
    frame = pd.DataFrame(rows, columns=["id", "path", "label"])
    frame["row"] = 0
    return Table(frame, str(folder), problems)


def _check_ids(table: Table) -> None:
    dup = table.frame["id"].duplicated(keep=False) & (table.frame["id"] != "")
    for ident, rows in table.frame[dup].groupby("id"):
        # folder sources have no CSV rows (row 0): there the same id means one name with two extensions
        where = f"rows {fmt_list(rows['row'])}" if rows["row"].iloc[0] else f"files {fmt_list(rows['path'])}"
        table.problems.append(
            Problem("duplicate-id", f"{table.source} {where}", f"id '{ident}' appears {len(rows)} times")
        )


def _check_labels(table: Table, classes: list[str] | None) -> None:
    for i, (label, row) in enumerate(zip(table.frame["label"], table.frame["row"])):
        where = f"{table.source} row {row}" if row else table.frame["path"].iloc[i]
        # 'nan' is what a pandas NaN becomes when a frame is written with na_rep='nan' (or by hand)
        if label is None or (isinstance(label, float) and np.isnan(label)) or label == "" or label.lower() == "nan":
            table.problems.append(
                Problem("empty-label", where, f"the label is empty ({label!r}); give every image a class")
            )
        elif classes is not None and label not in classes:
            table.problems.append(
                Problem("unknown-label", where, f"label '{label}' is not in data.classes ({fmt_list(classes)})")
            )


def train_table(cfg: Config) -> Table:
    """The labelled training table, with every problem found collected in `problems`."""
    data = cfg.data
    if data.train_csv is not None:
        table = _csv_table(data, Path(data.train_csv), "data.image_dir", data.image_dir, True, cfg.cv.group_col)
    elif data.train_dir is not None:
        if cfg.cv.group_col:
            raise PodiumError("cv.group_col needs a CSV source (data.train_csv) that holds the group column.")
        table = _folder_table("data.train_dir", data.train_dir, True, data.allow_outside_image_dir)
    else:
        raise PodiumError("No training data: set data.train_csv (+ data.image_dir) or data.train_dir.")
    _check_ids(table)
    if data.task == "multiclass":  # the other tasks check their labels as they read them
        _check_labels(table, data.classes)
    if cfg.cv.group_col:
        empty = table.frame["group"].isna()
        for row in table.frame.loc[empty, "row"]:
            table.problems.append(Problem("empty-group", f"{table.source} row {row}", f"'{cfg.cv.group_col}' is empty"))
    return table


def test_table(cfg: Config) -> Table | None:
    """The unlabelled test table, or None when the config names no test data."""
    data = cfg.data
    if data.test_csv is not None:
        folder = data.test_image_dir or data.image_dir
        key = "data.test_image_dir" if data.test_image_dir else "data.image_dir"
        table = _csv_table(data, Path(data.test_csv), key, folder, False, None)
    elif data.test_dir is not None:
        table = _folder_table("data.test_dir", data.test_dir, False, data.allow_outside_image_dir)
    else:
        return None
    _check_ids(table)
    return table


def raise_problems(table: Table, what: str) -> None:
    if table.problems:
        lines = "\n".join(f"  - {p}" for p in table.problems[:20])
        more = (f"\n  (+{len(table.problems) - 20} more; `podium data check` lists them all)"
                if len(table.problems) > 20 else "")
        raise PodiumError(f"{what} has {len(table.problems)} problem(s):\n{lines}{more}")


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of n items whose class mix matches the whole (largest-remainder quotas, >=1 per class if room)."""
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    exact = counts * n / len(labels)
    quota = np.floor(exact).astype(int)
    if n >= len(classes):
        quota = np.maximum(quota, 1)
    while quota.sum() > n:  # the >=1 floor overshot: take back from the largest quotas
        quota[np.argmax(quota)] -= 1
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    while quota.sum() < n:  # hand out the rest by largest remainder, skipping classes already taken whole
        for k in order:
            if quota.sum() < n and quota[k] < counts[k]:
                quota[k] += 1
    picked = [rng.choice(np.flatnonzero(inverse == k), size=quota[k], replace=False) for k in range(len(classes))]
    return np.sort(np.concatenate(picked))


def load_train(cfg: Config, exclude: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """The training table ready for splitting and training: problems raised, subset applied, `target` added;
    with `exclude`, data.exclude's rows dropped or relabelled (folds are drawn on the table without it)."""
    table = train_table(cfg)
    raise_problems(table, f"Training data '{table.source}'")
    from podium.tasks import make_task, task_class

    frame = table.frame
    classes = task_class(cfg.data.task).outputs_of(frame, cfg.data)  # classes | labels | task:class names
    task = make_task(cfg.data, classes)
    if cfg.data.task != "multiclass":  # one class per image to stratify on (folds, data.subset); see podium.tasks
        frame["stratify"] = task.stratify_key(frame)
    key = frame["stratify"] if "stratify" in frame.columns else frame["label"]
    if cfg.data.subset:
        frame = frame.iloc[stratified_subset(key.to_numpy(), cfg.data.subset, cfg.cv.seed)]
    frame = frame.reset_index(drop=True)
    if exclude and cfg.data.exclude is not None:
        frame = apply_exclude(frame, read_exclude(cfg.data.exclude, frame, classes, cfg.data), cfg.data)
    frame["target"] = task.key(task.encode(frame))  # multiclass: the class index
    return frame, classes


def table_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of the training table as loaded (load_train: data.subset applied): each row's id, label and image path,
    in id order. One changed label, image path, added or removed row changes it."""
    h = hashlib.sha256(b"podium-table 1\n")
    for ident, label, path in frame[["id", "label", "path"]].astype(str).sort_values("id").itertuples(index=False):
        h.update(f"{ident}\0{label}\0{path}\n".encode())
    return h.hexdigest()


def load_test(cfg: Config) -> pd.DataFrame | None:
    table = test_table(cfg)
    if table is None:
        return None
    raise_problems(table, f"Test data '{table.source}'")
    return table.frame.reset_index(drop=True)

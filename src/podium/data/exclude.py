"""`data.exclude: ids.csv`: drop or relabel listed training images in a run, without touching the user's CSV.

The file is the one `podium errors RUN --suspect` writes (id, given, suspected, confidence, action, fold), edited
or written by hand: `id` is required; `action` is drop (the default when the column or the cell is empty) or
relabel, which gives the image the label in `suspected` (multi-label: labels joined by data.label_sep, possibly
none). Other columns are ignored. Every problem is refused together, each naming its line.

Folds stay those of the whole table (podium.data.splits reads the persisted file as it is): a dropped image
simply leaves its fold, a relabelled one keeps it, so the new run's CV is comparable with the run that found them.
The classes stay those of the whole table too, so both runs have the same outputs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from podium.config import Config, DataConfig
from podium.errors import PodiumError, fmt_list

COLUMNS = ["id", "given", "suspected", "confidence", "action"]  # what --suspect writes (then `fold`)
ACTIONS = ("drop", "relabel")


@dataclass(frozen=True)
class Exclusion:
    path: Path
    drop: list[str]  # ids removed from the run
    relabel: dict[str, str] = field(default_factory=dict)  # id -> its new label (as label text)


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise PodiumError(f"data.exclude: '{path}' does not exist. Give the CSV `podium errors RUN --suspect` wrote "
                          "(or one with an id column).")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)  # ids like '007' or 'NA' stay text
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PodiumError(f"data.exclude: '{path}' is not a readable CSV ({type(exc).__name__}: {exc}).") from None
    if "id" not in table.columns:
        raise PodiumError(f"data.exclude: '{path}' has no 'id' column (it has {fmt_list(table.columns, 6)}). The "
                          f"columns are {', '.join(COLUMNS)}; only id is required.")
    return table


def read_exclude(path: Path | str, frame: pd.DataFrame, classes: list[str], data: DataConfig) -> Exclusion:
    """The file checked against the training table `frame` (its ids) and `classes` (the run's outputs)."""
    path = Path(path)
    table = _read(path)
    known = set(frame["id"].astype(str))
    actions = table["action"].str.strip().str.lower() if "action" in table.columns else pd.Series("", table.index)
    problems, seen, drop, relabel = [], {}, [], {}
    for i, (ident, action) in enumerate(zip(table["id"], actions)):
        line = f"line {i + 2}"
        action = action or "drop"
        if ident in seen:
            problems.append(f"{line}: id '{ident}' is listed again (first on line {seen[ident]}); keep one row")
            continue
        seen[ident] = i + 2
        if ident not in known:
            why = f" (data.subset={data.subset} keeps a part of it)" if data.subset else ""
            problems.append(f"{line}: id '{ident}' is not in the training data{why}")
            continue
        if action not in ACTIONS:
            problems.append(f"{line}: action '{table['action'].iloc[i]}' for id '{ident}' is not one of "
                            f"{', '.join(ACTIONS)}")
            continue
        if action == "drop":
            drop.append(ident)
            continue
        new = table["suspected"].iloc[i].strip() if "suspected" in table.columns else None
        bad = _bad_label(new, classes, data)
        if bad:
            problems.append(f"{line}: id '{ident}' cannot be relabelled: {bad}")
            continue
        relabel[ident] = new
    if problems:
        more = f"\n  (+{len(problems) - 10} more)" if len(problems) > 10 else ""
        raise PodiumError(f"data.exclude: '{path}' has {len(problems)} problem(s):\n"
                          + "\n".join(f"  - {p}" for p in problems[:10]) + more
                          + "\nFix those rows (action: drop or relabel), or remove them.")
    return Exclusion(path=path, drop=drop, relabel=relabel)


def _bad_label(new: str | None, classes: list[str], data: DataConfig) -> str | None:
    """Why `new` cannot be an image's label; None when it can."""
    if data.task == "multitask":
        return "data.task=multitask takes action drop only (relabel one task's column in a copy of the CSV)"
    if new is None:
        return "the file has no 'suspected' column holding the new label"
    if data.task == "multiclass":
        if new not in classes:
            return f"its suspected class '{new}' is not one of the classes ({fmt_list(classes)})"
        return None
    unknown = [x for x in new.split(data.label_sep) if x and x not in classes]
    return f"its suspected label(s) {fmt_list(unknown)} are not among the labels ({fmt_list(classes)})" if unknown \
        else None


def apply_exclude(frame: pd.DataFrame, exclusion: Exclusion, data: DataConfig) -> pd.DataFrame:
    """`frame` without the dropped rows and with the relabelled rows' label (and multi-label label set) replaced."""
    out = frame[~frame["id"].isin(set(exclusion.drop))].copy()
    if exclusion.relabel:
        new = out["id"].map(exclusion.relabel)
        hit = new.notna()
        if data.task == "multilabel":  # the label sets (tuples) are what training encodes; `label` their text
            sep = data.label_sep
            sets = [tuple(x for x in n.split(sep) if x) if isinstance(n, str) else old
                    for n, old in zip(new, out["labels"])]
            out["labels"] = pd.Series(sets, index=out.index, dtype=object)
            out["label"] = out["labels"].map(sep.join)
        else:
            out.loc[hit, "label"] = new[hit]
    return out.reset_index(drop=True)


def dropped_ids(path: Path | str) -> set[str]:
    """The ids a (checked) exclude file drops: podium.data.splits lets them be missing from the data."""
    table = _read(Path(path))
    if "action" not in table.columns:
        return set(table["id"])
    action = table["action"].str.strip().str.lower()
    return set(table["id"][(action == "") | (action == "drop")])


def exclude_record(cfg: Config) -> dict | None:
    """data.exclude's record for the run (None without one): file, sha256, how many dropped and relabelled."""
    if cfg.data.exclude is None:
        return None
    path = Path(cfg.data.exclude)
    drop = dropped_ids(path)
    n = len(_read(path))
    return {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "dropped": len(drop),
            "relabelled": n - len(drop)}

"""`podium errors RUN DIR [--all]`: the OOF images sorted into DIR/<true>/<pred>/ for an image viewer.

S2's team flipped through their mistakes class by class. Each file is a copy of the original image named
`p<probability of the predicted class>_<id>.<ext>`, so a viewer's name order runs from the least to the most
confident mistake. Class names become folder names with characters a file system refuses (/ \\ : * ? " < > |)
replaced by '_'; DIR/index.csv maps every file back to its id, classes, probabilities and fold.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from podium.errors import PodiumError
from podium.io import atomic_write_csv
from podium.report.rundata import load_run
from podium.run.guard import data_paths
from podium.run.marker import MARKER, is_podium_run
from podium.run.outputs import check_out

_UNSAFE = re.compile(r'[/\\:*?"<>|\x00-\x1f]')


def folder_names(classes: list[str]) -> dict[str, str]:
    """A distinct, file-system-safe folder name per class ('T-shirt/top' -> 'T-shirt_top')."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for c in classes:
        base = _UNSAFE.sub("_", c).strip().lstrip(".") or "_"
        name, k = base, 2
        while name.lower() in taken:  # case-insensitive file systems too
            name, k = f"{base}~{k}", k + 1
        taken.add(name.lower())
        out[c] = name
    return out


@dataclass(frozen=True)
class ErrorFolders:
    out: Path  # OUT/<true>/<pred>/ image copies
    written: int  # images copied
    wrong: int  # of those, misclassified
    missing: int  # OOF images whose file was not found
    index: Path  # OUT/index.csv: one row per copy


def export_errors(run_path: Path | str, out: Path | str, include_all: bool = False,
                  overwrite: bool = False) -> ErrorFolders:
    """Copy misclassified (or all) OOF images into out/<true>/<pred>/; returns counts and the index path."""
    run = load_run(run_path)
    out = check_out(out, overwrite, {"the run folder": run.path, **data_paths(run.cfg)}, what="OUT", folder=True)
    if is_podium_run(out):
        raise PodiumError(f"'{out}' is a folder podium made for a run (it carries {MARKER}). Choose another folder.")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise PodiumError(f"'{out}' is not empty. Pass --overwrite to replace it, or choose another folder.")
        if not (out / "index.csv").exists():
            raise PodiumError(f"'{out}' holds files podium did not write (no index.csv): refusing to clear it.")
        shutil.rmtree(out)
    paths = run.image_paths("train")
    if not paths:
        raise PodiumError(run.image_note or f"No training images found for run '{run.path}'.")
    folders = folder_names(run.classes)
    pred = run.pred
    rows = [r for r in range(len(run.y)) if include_all or pred[r] != run.y[r]]
    records = []
    for r in rows:
        ident = run.oof["id"].iloc[r]
        src = paths.get(ident)
        if src is None:
            continue
        t, p = run.classes[run.y[r]], run.classes[pred[r]]
        name = f"p{run.probs[r, pred[r]]:.3f}_{_UNSAFE.sub('_', ident)}{Path(src).suffix}"
        dest = out / folders[t] / folders[p] / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        records.append({"file": dest.relative_to(out).as_posix(), "id": ident, "fold": int(run.oof["fold"].iloc[r]),
                        "true": t, "pred": p, "p_pred": run.probs[r, pred[r]], "p_true": run.probs[r, run.y[r]],
                        "source": src})
    out.mkdir(parents=True, exist_ok=True)
    index = pd.DataFrame(records, columns=["file", "id", "fold", "true", "pred", "p_pred", "p_true", "source"])
    atomic_write_csv(out / "index.csv", index)
    wrong = int((index["true"] != index["pred"]).sum()) if len(index) else 0
    return ErrorFolders(out=out, written=len(index), wrong=wrong, missing=len(rows) - len(index),
                        index=out / "index.csv")

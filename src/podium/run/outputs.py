"""Where a user's --out may write: never over a file without --overwrite, never into a run folder, never over data."""

from __future__ import annotations

from pathlib import Path

from podium.errors import PodiumError
from podium.run.marker import run_above


def check_out(path: Path | str, overwrite: bool, protected: dict[str, Path] | None = None, what: str = "--out",
              allowed: tuple[Path | str, ...] = (), folder: bool = False) -> Path:
    """Refuse an output path that would destroy something; returns `path`.

    Refused: a path that is (or lies inside) one of `protected` (label -> file or folder: the data a config names,
    a run folder, an input file), a path inside a folder podium marked as its own (podium.run.marker), a folder,
    and an existing file unless `overwrite`. `allowed`: podium's own default outputs (RUN/submission.csv), always
    accepted. `folder`: `path` is a folder podium writes into (`podium errors`, `podium ensemble`): it is also
    refused when it holds a protected path; whether an existing one may be replaced is the caller's to judge."""
    path = Path(path)
    target = path.resolve()
    if target in {Path(a).resolve() for a in allowed}:
        return path
    for label, item in (protected or {}).items():
        item = Path(item).resolve()
        if target == item or item in target.parents or (folder and target in item.parents):
            where = "is" if target == item else "lies inside" if item in target.parents else "holds"
            raise PodiumError(f"{what} '{path}' {where} {label} '{item}': podium never writes over it. Choose another "
                              f"{what}.")
    run = run_above(target.parent)
    if run is not None:
        raise PodiumError(f"{what} '{path}' lies inside '{run}', a folder podium made and keeps (a run, or an "
                          f"ensemble). Choose another {what}, outside it.")
    if folder:
        return path
    if target.is_dir():
        raise PodiumError(f"{what} '{path}' is a folder. Give a file path.")
    if target.exists() and not overwrite:
        raise PodiumError(f"'{path}' exists. Pass --overwrite to replace it, or choose another {what}.")
    return path

"""What `podium train` may do to the run folder <output_dir>/<name>: where it may lie, what it may remove.

Rules (a user's data is never lost to a typo in name= or output_dir=):
  - the run folder lies strictly inside output_dir (name=.. or an absolute name would leave it);
  - it never is, nor holds, the config file in use, the data files and folders the config names, or the folds file;
  - an existing, non-empty folder is used only when it carries podium's marker (podium.run.marker); a run made
    before markers existed is adopted when its config.yaml is exactly the config in use;
  - only a marked folder is ever removed (`--overwrite`, or replacing a run that never got a checkpoint).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from podium.config import Config, config_changes
from podium.errors import PodiumError
from podium.run.marker import MARKER, marker_kind, write_marker
from podium.run.rundir import RunDir
from podium.run.writer import check_writer


def data_paths(cfg: Config, config_path: Path | str | None = None) -> dict[str, Path]:
    """The user's files a run reads, by the key that names them: never written over, never removed."""
    from podium.data.splits import folds_path

    d = cfg.data
    paths = {"the config file": config_path, "data.train_csv": d.train_csv, "data.test_csv": d.test_csv,
             "data.image_dir": d.image_dir, "data.test_image_dir": d.test_image_dir, "data.train_dir": d.train_dir,
             "data.test_dir": d.test_dir, "data.sample_submission": d.sample_submission, "data.exclude": d.exclude}
    if d.train_csv is not None or d.train_dir is not None:
        paths["the folds file (cv.folds_file)"] = folds_path(cfg)
    return {key: Path(p) for key, p in paths.items() if p is not None}


def check_writable(folder: Path | str, key: str = "output_dir") -> None:
    """Create `folder` if needed and write a file into it; a PodiumError naming it (and the config `key` to change)
    when that fails."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise PodiumError(f"Cannot write into {key} '{folder}' ({exc.strerror or exc}). Set {key}=... to a folder "
                          "you can write to, with room for the run.") from None


def _holds(folder: Path, path: Path) -> bool:
    return folder == path or folder in path.parents


def check_location(cfg: Config, config_path: Path | str | None = None) -> Path:
    """The run folder, refused unless it lies inside output_dir and holds none of the user's files."""
    out = Path(cfg.output_dir).resolve()
    rd = Path(os.path.normpath(out / cfg.name))  # '..' applied as written; the folder itself may be a link
    if out not in rd.parents:
        raise PodiumError(f"name={cfg.name!r} puts the run folder at '{rd}', outside output_dir '{out}'. The name "
                          "must be one folder name (no '/', '\\', '..'), e.g. name=baseline.")
    real = rd.resolve()
    for key, path in data_paths(cfg, config_path).items():
        if _holds(real, path.resolve()):
            raise PodiumError(f"The run folder '{rd}' (output_dir/name) {'is' if real == path.resolve() else 'holds'} "
                              f"{key} '{path}': podium never trains into (or removes) a folder holding your data. "
                              "Set name=... or output_dir=... to a folder of its own.")
    return rd


def open_run(cfg: Config, config_path: Path | str | None = None, note=print) -> RunDir:
    """The run folder, checked and marked: a new or empty folder gets the marker; an unmarked one with files is
    refused (unless it is a podium run from before markers with exactly this config, which is adopted)."""
    rd = check_location(cfg, config_path)
    if rd.exists() and not rd.is_dir():
        raise PodiumError(f"The run folder '{rd}' is a file. Set name=... (or output_dir=...) to a new folder.")
    kind = marker_kind(rd)
    if kind is None and rd.is_dir() and any(rd.iterdir()):
        saved = RunDir(rd).config
        if not (saved.is_file() and not config_changes(saved, cfg)):
            raise PodiumError(f"'{rd}' exists, holds files and was not made by `podium train` (no {MARKER} marker): "
                              "podium never writes into or removes it. Choose another name=... or output_dir=....")
        note(f"'{rd}' is a run from before podium marked its run folders: adopting it ({MARKER} added)")
    elif kind not in (None, "train"):
        raise PodiumError(f"'{rd}' is a folder made by `podium {kind}`, not a training run. Choose another name=....")
    if kind is None:
        rd.mkdir(parents=True, exist_ok=True)
        write_marker(rd, "train")
    return RunDir(rd)


def clear_run(rd: RunDir, keep: tuple[str, ...] = ("locks",)) -> None:
    """Remove everything in the marked run folder `rd` but `keep` (the locks this process holds), then mark it
    again. Refuses an unmarked folder: the last line of defence."""
    if marker_kind(rd.path) != "train":
        raise PodiumError(f"Refusing to remove '{rd.path}': it does not carry podium's {MARKER} marker.")
    check_writer(rd.path)
    for entry in rd.path.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    write_marker(rd.path, "train")

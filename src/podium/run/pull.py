"""A run restored from its mirror (`podium pull URL [DIR]`, and `podium train --resume --mirror` on a fresh
machine): every file is read through the manifest that names it and checked against its size and sha256 before it
is written (atomically) into the run folder.

A manifest whose object has gone meanwhile (the writer published again and collected the old objects) is read
again, up to READ_TRIES times. A folder holding another run is never written into, and a finished fold on disk is
never replaced by an unfinished one from the mirror.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

from podium.errors import PodiumError
from podium.io import atomic_path
from podium.run.files import CONFIG, DONE, LAST
from podium.run.folddir import FoldDir
from podium.run.marker import MARKER, marker_kind, write_marker
from podium.run.store import CHUNK, Store

READ_TRIES = 3


class _Gone(Exception):
    """An object named by the manifest was missing or not what it said: read the manifest again."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def same_file(path: Path, entry: dict) -> bool:
    return path.is_file() and path.stat().st_size == entry["size"] and file_sha256(path) == entry["sha256"]


def fetch(store: Store, part: str, entry: dict, dest: Path) -> None:
    """The object of `entry` into `dest`, written only once its size and sha256 match the manifest."""
    digest, size = hashlib.sha256(), 0
    try:
        with store.fs.open(store.object_path(part, entry["sha256"]), "rb") as src, atomic_path(dest) as tmp:
            with open(tmp, "wb") as out:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
                raise _Gone(f"'{dest.name}' read back {size} bytes with another sha256 than the manifest's")
    except FileNotFoundError:
        raise _Gone(f"the object of '{dest.name}' is gone") from None


def restore_part(store: Store, run: Path, part: str, only_missing: bool = False, skip: tuple[str, ...] = ()) -> int:
    """Write `part`'s files from the mirror into `run` (those missing, with `only_missing`; files named in `skip`
    left out); returns how many were written."""
    why = ""
    for _ in range(READ_TRIES):
        manifest = store.manifest(part)
        if manifest is None:
            return 0
        written = 0
        try:
            for rel, entry in sorted(manifest["files"].items()):
                dest = run / rel
                if rel.rsplit("/", 1)[-1] in skip or (only_missing and dest.exists()) or same_file(dest, entry):
                    continue
                fetch(store, part, entry, dest)
                written += 1
            return written
        except _Gone as exc:
            why = str(exc)
    raise PodiumError(f"The mirror {store.url} changed under every read of {part} ({why}): a machine is still "
                      "writing it. Pull again once its training has finished.")


def mirror_folds(manifests: dict[str, dict]) -> dict[int, bool]:
    """Every fold in the mirror -> whether it is finished (its done.json is published)."""
    return {int(p[4:]): f"{p}/{DONE}" in m["files"] for p, m in manifests.items() if p.startswith("fold")}


def restore_finished(store: Store, run: Path, manifests: dict[str, dict], skip_folds=()) -> list[int]:
    """Every fold finished in the mirror but not on disk, written into `run` (its last.ckpt left out: only resuming
    needs it); returns those folds."""
    got = []
    for k, done in sorted(mirror_folds(manifests).items()):
        if done and k not in skip_folds and not FoldDir(run / f"fold{k}").is_done():
            restore_part(store, run, f"fold{k}", skip=(LAST,))
            got.append(k)
    return got


def mirror_config(store: Store, manifests: dict[str, dict], folder: Path) -> Path | None:
    """The mirror's config.yaml, written into `folder`; None when the mirror holds no run yet."""
    entry = manifests.get("run", {}).get("files", {}).get(CONFIG)
    if entry is None:
        return None
    fetch(store, "run", entry, folder / CONFIG)
    return folder / CONFIG


def check_same_run(store: Store, run: Path, manifests: dict[str, dict]) -> None:
    """Refuse when `run` holds files of another run than the mirror's (its config.yaml differs)."""
    entry = manifests.get("run", {}).get("files", {}).get(CONFIG)
    local = run / CONFIG
    if entry is not None and local.is_file() and not same_file(local, entry):
        raise PodiumError(f"'{run}' holds another run than the mirror {store.url} (their {CONFIG} differ). Pull into "
                          "a new folder, or pass the matching mirror.")


def restore_for_training(store: Store, run: Path, to_train: list[int], overwrite: bool,
                         manifests: dict[str, dict]) -> list[int]:
    """Before `podium train --mirror` (the caller has checked that the mirror holds this run): the run's files missing
    here, the folds finished elsewhere, and the latest checkpoint of each fold about to be trained that has none here
    (a fresh machine resuming). Returns the folds finished in the mirror."""
    if not manifests:
        return []
    restore_part(store, run, "run", only_missing=True)
    retrain = set(to_train) if overwrite else set()
    restore_finished(store, run, manifests, skip_folds=retrain)
    for k, done in mirror_folds(manifests).items():
        fold = FoldDir(run / f"fold{k}")
        if not done and k in to_train and k not in retrain and not fold.has_checkpoint() and not fold.is_done():
            restore_part(store, run, f"fold{k}")
    return sorted(k for k, done in mirror_folds(manifests).items() if done)


def pull(url: str, dest: Path, note: Callable[[str], None] = print) -> dict:
    """`podium pull`: the run at `url` (<mirror>/<name>) into `dest`, checked against its manifests. An existing
    `dest` must be empty or the same run (same config.yaml); a finished fold there is never replaced by an
    unfinished one. Returns {files, folds_done, folds_unfinished}."""
    store = Store(url)
    manifests = store.manifests()
    if "run" not in manifests:
        raise PodiumError(f"No run at {url}: it has no manifests/run.json. Pass the run's own prefix, "
                          "<mirror>/<name>, as `podium train --mirror` wrote it.")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        if marker_kind(dest) != "train":
            raise PodiumError(f"'{dest}' exists and is not a podium run folder: podium never writes into it. Pull "
                              "into a new folder.")
        check_same_run(store, dest, manifests)
    written = restore_part(store, dest, "run")
    folds = mirror_folds(manifests)
    for k, done in sorted(folds.items()):
        if not done and FoldDir(dest / f"fold{k}").is_done():
            note(f"kept fold {k} of '{dest}': it is finished here and unfinished in the mirror")
            continue
        written += restore_part(store, dest, f"fold{k}")
    if not (dest / MARKER).is_file():
        write_marker(dest, "train")
    return {"files": written, "folds_done": sorted(k for k, d in folds.items() if d),
            "folds_unfinished": sorted(k for k, d in folds.items() if not d)}

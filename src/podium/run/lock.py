"""One writer per fold: RUN/locks/fold<k>.lock while a process trains fold k.

The file is created atomically (O_CREAT | O_EXCL) and holds JSON {host, pid, started, token}. A second `podium
train` of the same fold is refused with the holder's host and pid. Machines training disjoint folds into one
shared folder (a documented feature) each hold their own folds' locks. A lock whose holder ran on this host and
has died is stale: it is taken over, with a note. A lock from another host can only be judged by a person, so the
refusal names the file to delete when that machine is gone.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from podium.errors import PodiumError
from podium.io import process_alive
from podium.run.writer import check_writer


def lock_path(run: Path | str, k: int) -> Path:
    return Path(run) / "locks" / f"fold{k}.lock"


def read_holder(path: Path) -> dict | None:
    """The lock's JSON, or None when it cannot be read (gone, or being written)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def is_stale(holder: dict) -> bool:
    """Held by a process of this host that no longer runs."""

    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not process_alive(pid)


def acquire(path: Path, what: str, note: Callable[[str], None] = print) -> dict:
    """Create the lock at `path` for this process (taking over a stale one, told through `note`); returns what it
    holds. A live holder: PodiumError naming it, `what` it holds and the file."""
    check_writer(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = {"host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "token": secrets.token_hex(8)}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_holder(path)
            if holder is None or not is_stale(holder):
                raise PodiumError(_held_message(path, what, holder)) from None
            note(f"taking over the stale lock '{path}' of {what}: process {holder['pid']} on this host "
                 f"({holder.get('host')}) started it at {holder.get('started', '?')} and no longer runs")
            # two processes may both judge it stale; only one of them wins the O_EXCL create that follows
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(mine, f)
        return mine
    raise PodiumError(_held_message(path, what, read_holder(path)))


def release(path: Path, mine: dict) -> None:
    """Remove the lock if it is still this process's (a person may have deleted it and another taken it)."""
    holder = read_holder(path)
    if holder is not None and holder.get("token") == mine["token"]:
        path.unlink(missing_ok=True)


def live_holders(run: Path | str, mine: list[dict] = ()) -> list[tuple[Path, dict]]:
    """Every lock of `run` held by a process other than this one's `mine` and not stale."""
    tokens = {m["token"] for m in mine}
    out = []
    for path in sorted((Path(run) / "locks").glob("fold*.lock")):
        holder = read_holder(path)
        if holder is None or (holder.get("token") not in tokens and not is_stale(holder)):
            out.append((path, holder or {}))
    return out


@contextmanager
def fold_locks(run: Path | str, folds: list[int], note: Callable[[str], None] = print) -> Iterator[list[dict]]:
    """Hold the locks of `folds` of `run` for the duration of the block; released however it ends."""
    held: list[tuple[Path, dict]] = []
    try:
        for k in folds:
            path = lock_path(run, k)
            held.append((path, acquire(path, f"fold {k} of run '{run}'", note)))
        yield [mine for _, mine in held]
    finally:
        for path, mine in held:
            release(path, mine)


def _held_message(path: Path, what: str, holder: dict | None) -> str:
    if holder is None:
        return (f"The lock '{path}' of {what} exists but cannot be read: another `podium train` is starting on it, "
                f"or one crashed while taking it. If no training runs, delete '{path}' and train again.")
    return (f"{what[0].upper()}{what[1:]} is being trained by process {holder.get('pid')} on host "
            f"{holder.get('host')} (since {holder.get('started', '?')}; lock file '{path}'). Wait for it to finish, "
            f"or train other folds (--folds). If that process is gone (its machine stopped), delete '{path}' and "
            "train again.")

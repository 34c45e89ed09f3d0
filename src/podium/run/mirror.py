"""The run folder mirrored to an object store in the background (`--mirror URL`, `mirror:`): podium.run.store
holds the layout, this module the writer.

A thread scans the run folder every few seconds, and at once when podium writes a file of a run (`written()`: the
run's writers and the checkpoints call it), and publishes each part this
process owns: the run's own files ("run") and the folds it trains ("fold<k>", leased: podium.run.lease). A changed
file is hashed and uploaded from one open handle (a checkpoint renamed over meanwhile still uploads whole), then
the part's manifest is rewritten. Training never waits on it: the loop only pokes the thread. A failing store is
reported once, retried with a growing pause (up to a minute) and reported again when it works; it never stops
training. A process that is not the writer (ranks > 0 of a multi-device run) gets a Mirror that does nothing.

Objects no longer named by a fold's manifest are deleted one publication later (a reader that has just read the
previous manifest can still fetch what it names; `podium pull` re-reads the manifest when an object is gone).
The run part may be written by several machines (the last merge wins), so its objects are never deleted.
"""

from __future__ import annotations

import os
import socket
import threading
import weakref
from pathlib import Path
from typing import Callable

from podium.run import lease
from podium.run.files import DONE
from podium.run.store import Store, now, sha256_of

INTERVAL = 2.0  # seconds between scans of the run folder: a scan is a stat of each file, cheap next to an epoch
SETTLE = 0.5  # seconds a write waits for the others of the same moment (an epoch's end writes 2-3 files): one upload
MAX_PAUSE = 60.0  # the longest wait between tries while the store fails
FINAL_TRIES = 3  # tries of the last publication when the command ends (the run itself is already safe on disk)
SKIP_DIRS = ("locks",)  # this machine's own fold locks: meaningless elsewhere (leases stand for them in the mirror)


_ACTIVE: "weakref.WeakSet[Mirror]" = weakref.WeakSet()  # the mirrors running in this process


def written() -> None:
    """A file of a run was just written (podium.run's writers, checkpoints): every running mirror looks now rather
    than at its next scan. Returns at once."""
    for mirror in list(_ACTIVE):
        mirror.poke()


def part_of(rel: str) -> str:
    """'fold<k>' for a file in fold<k>/, else 'run'."""
    head = rel.split("/", 1)[0]
    return head if "/" in rel and head.startswith("fold") and head[4:].isdigit() else "run"


def local_files(run: Path, part: str) -> dict[str, Path]:
    """The files of `part` in the run folder, by path relative to it; temporary files of atomic writes left out."""
    base = run if part == "run" else run / part
    out: dict[str, Path] = {}
    for folder, dirs, names in os.walk(base):
        rel_dir = Path(folder).relative_to(run).as_posix()
        if part == "run" and rel_dir == ".":  # the folds are parts of their own
            dirs[:] = [d for d in dirs if part_of(f"{d}/x") == "run" and d not in SKIP_DIRS]
        for name in names:
            if name.endswith(".tmp") or name.startswith(".tmp-"):  # podium.io.atomic_path's temporary names
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            out[rel] = Path(folder) / name
    return out


class Mirror:
    """Publishes the parts this process owns to `url` (<mirror>/<name>) from a background thread."""

    def __init__(self, run: Path | str, url: str, writer: bool = True, note: Callable[[str], None] = print,
                 interval: float = INTERVAL):
        self.run, self.url, self.writer, self.note, self.interval = Path(run), url, writer, note, interval
        self.store = Store(url) if writer else None
        self.parts: set[str] = {"run"}
        self.leases: dict[int, dict] = {}
        self.published: dict[str, dict] = {}  # part -> files of its manifest as this process last saw or wrote it
        self.previous: dict[str, set[str]] = {}  # part -> objects of the manifest before that (deleted next time)
        self.hashes: dict[str, tuple[int, int, str]] = {}  # local path -> (size, mtime_ns, sha256)
        self.stored: set[tuple[str, str]] = set()  # (part, sha256) known to be in the store: no request to check
        self.failing: str | None = None  # the error while the store fails, else None
        self.last_beat = now()
        self._lock = threading.Lock()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ what this process owns
    def own(self, k: int, mine: dict) -> None:
        """Publish fold k from now on (this process holds its lease `mine`)."""
        with self._lock:
            self.parts.add(f"fold{k}")
            self.leases[k] = mine

    def start(self) -> "Mirror":
        if self.writer and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="podium-mirror", daemon=True)
            self._thread.start()
            _ACTIVE.add(self)
        return self

    def poke(self) -> None:
        """Publish soon (a fold finished): returns at once."""
        self._wake.set()

    def close(self) -> bool:
        """Stop the thread, publish once more (a few tries) and release the leases still held; True when the
        mirror holds the run as it is on disk. Failing: reported, and the run stays complete locally."""
        if not self.writer:
            return True
        _ACTIVE.discard(self)
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
        for attempt in range(FINAL_TRIES):
            if self._round():
                break
            if attempt + 1 < FINAL_TRIES:
                self._stop.wait(2.0 ** attempt)
        for k, mine in list(self.leases.items()):
            try:
                lease.release(self.store, k, mine)
            except Exception:  # the store fails: the lease goes stale by itself
                pass
        if self.failing:
            self.note(f"mirror {self.url}: still failing ({self.failing}). The run is complete on this disk "
                      f"('{self.run}'); push it again later with the same command and --resume.")
            return False
        return True

    def __enter__(self) -> "Mirror":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the thread
    def _loop(self) -> None:
        pause = self.interval
        while not self._stop.is_set():
            if self.failing:
                self._stop.wait(pause)  # backing off: writes do not hurry a failing store
            elif self._wake.wait(pause):
                self._stop.wait(SETTLE)
            self._wake.clear()
            if self._stop.is_set():
                return
            pause = self.interval if self._round() else min(MAX_PAUSE, max(pause, 1.0) * 2)

    def _round(self) -> bool:
        """One publication of every owned part and the leases' heartbeats; False (reported once) on failure."""
        try:
            if now() - self.last_beat > lease.HEARTBEAT:
                self._beat()
            with self._lock:
                parts = sorted(self.parts)
            for part in parts:
                self._publish(part)
        except Exception as exc:  # any failure of the store (network, permissions, quota): training goes on
            why = f"{type(exc).__name__}: {exc}".strip()[:300]
            if self.failing is None:
                self.note(f"mirror {self.url}: cannot write ({why}). Training goes on locally; retrying in the "
                          f"background (up to every {MAX_PAUSE:.0f} s).")
            self.failing = why
            return False
        if self.failing is not None:
            self.note(f"mirror {self.url}: writing again; the mirror is up to date")
            self.failing = None
        return True

    def _beat(self) -> None:
        self.last_beat = now()
        for k, mine in list(self.leases.items()):
            if not lease.refresh(self.store, k, mine):
                self.note(f"mirror {self.url}: another machine took over fold {k}'s lease; this machine no longer "
                          "publishes that fold")
                with self._lock:
                    self.leases.pop(k, None)
                    self.parts.discard(f"fold{k}")

    def _publish(self, part: str) -> None:
        if part not in self.published:
            known = self.store.manifest(part)
            self.published[part] = known["files"] if known else {}
            self.stored |= {(part, e["sha256"]) for e in self.published[part].values()}
        files: dict[str, dict] = {}
        for rel, path in local_files(self.run, part).items():
            entry = self._upload(part, path)
            if entry is not None:
                files[rel] = entry
        if files == self.published[part] or not files:
            return
        self.store.write_manifest(part, files, {"host": socket.gethostname(), "pid": os.getpid(), "written": now()})
        current = {e["sha256"] for e in files.values()}
        before = {e["sha256"] for e in self.published[part].values()}
        if part != "run":  # objects of two publications ago, named by neither that one nor this one
            gone = self.previous.get(part, set()) - before - current
            self.store.remove_objects(part, gone)
            self.stored -= {(part, sha) for sha in gone}
            self.previous[part] = before
        self.published[part] = files
        k = int(part[4:]) if part != "run" else None
        if k is not None and f"{part}/{DONE}" in files and k in self.leases:
            lease.release(self.store, k, self.leases.pop(k))  # published finished: free for no one to retrain

    def _upload(self, part: str, path: Path) -> dict | None:
        """The file's {sha256, size} once its object is in the store; None when it vanished meanwhile."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        seen = self.hashes.get(str(path))
        if seen and seen[:2] == (st.st_size, st.st_mtime_ns) and (part, seen[2]) in self.stored:
            return {"sha256": seen[2], "size": st.st_size}  # unchanged since it was uploaded: not even opened
        try:
            src = path.open("rb")  # one handle: a rename over the path meanwhile does not change what we read
        except FileNotFoundError:
            return None
        with src:
            st = os.fstat(src.fileno())
            sha = sha256_of(src, st.st_size)
            self.hashes[str(path)] = (st.st_size, st.st_mtime_ns, sha)
            if (part, sha) not in self.stored and not self.store.has_object(part, sha, st.st_size):
                src.seek(0)
                self.store.put_object(part, sha, src, st.st_size)
            self.stored.add((part, sha))
        return {"sha256": sha, "size": st.st_size}

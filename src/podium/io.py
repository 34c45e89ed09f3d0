"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Files get the permissions the user's umask gives a new file (0644 under the usual 022), not mkstemp's 0600, so
a teammate can read a shared run. A write refused by the system (permissions, read-only or full disk, a name too
long) is a PodiumError naming the file and saying what to do, with the caller's `hint` (e.g. which config key
moves the file elsewhere).
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from podium.errors import PodiumError

# errno -> (what went wrong, in words; what to do about it)
WRITE_ERRORS: dict[int, tuple[str, str]] = {
    errno.EACCES: ("permission denied", "make the folder writable for you, or write elsewhere"),
    errno.EPERM: ("operation not permitted", "make the folder writable for you, or write elsewhere"),
    errno.EROFS: ("the file system is read-only", "write to a writable folder instead"),
    errno.ENOSPC: ("the disk is full", "free some space on that disk, or write elsewhere"),
    errno.EDQUOT: ("your disk quota is used up", "free some space within your quota, or write elsewhere"),
    errno.ENAMETOOLONG: ("the path is too long for the file system", "use a shorter path or name"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "fix the path"),
    errno.EEXIST: ("a file stands where a folder is needed", "move that file, or write elsewhere"),
    errno.EISDIR: ("a folder stands where the file should be", "move that folder, or write elsewhere"),
}

_umask_lock = threading.Lock()
_umask_cache: int | None = None


def current_umask() -> int:
    """The process's umask. Read from /proc on Linux (changing nothing); elsewhere os.umask is set and put back
    once, under a lock, and remembered."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    global _umask_cache
    with _umask_lock:
        if _umask_cache is None:
            _umask_cache = os.umask(0o022)
            os.umask(_umask_cache)
        return _umask_cache


def write_error(path: Path | str, exc: OSError, hint: str | None = None,
                tmp: str | None = None) -> PodiumError | None:
    """The PodiumError for an OSError refusing to write `path` (see WRITE_ERRORS), or None for other errors."""
    if exc.errno not in WRITE_ERRORS:
        return None
    reason, fix = WRITE_ERRORS[exc.errno]
    other = exc.filename is not None and str(exc.filename) not in (str(path), str(tmp), str(Path(path).parent))
    where = f" ('{exc.filename}')" if other else ""
    to_do = f"{fix}: {hint}" if hint else fix
    return PodiumError(f"Cannot write '{path}': {reason}{where}. {to_do[0].upper()}{to_do[1:].rstrip('.')}.")


@contextmanager
def atomic_path(path: Path | str, hint: str | None = None):
    """Yield a temporary path beside `path`; on success it is renamed onto `path` in one step, with the
    permissions the umask gives a new file. If the system refuses the write (see WRITE_ERRORS) a PodiumError
    names `path` and says what to do, ending with `hint` when given (e.g. "set cv.folds_file to a writable
    path"). The temporary file never outlives a failure."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        stem = path.name.encode()[:200].decode(errors="ignore")  # room for mkstemp's part in a 255-byte name
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        try:
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp made it 0600
        except OSError:
            pass  # a file system without permissions (some network mounts): keep what it gives
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass  # already gone (or the folder vanished)
        error = write_error(path, exc, hint, tmp) if isinstance(exc, OSError) else None
        if error is not None:
            raise error from None
        raise


def atomic_write_text(path: Path | str, text: str, hint: str | None = None) -> None:
    with atomic_path(path, hint=hint) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: Path | str, obj, hint: str | None = None) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n", hint=hint)


def atomic_write_csv(path: Path | str, frame, hint: str | None = None) -> None:
    with atomic_path(path, hint=hint) as tmp:
        frame.to_csv(tmp, index=False)


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this machine still runs (judges abandoned caches and stale locks)."""
    if os.name != "posix":
        return True  # Windows' os.kill(pid, 0) would terminate the process: never delete there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def read_csv(path: Path, what: str):
    """Read a CSV with every column as text (ids like '007' stay '007'), or explain why it can't be."""
    import pandas as pd

    if path is None:
        raise PodiumError(f"{what} is not set in the config.")
    path = Path(path)
    if not path.is_file():
        raise PodiumError(f"{what} '{path}' does not exist. Check the path in the config.")
    try:
        # utf-8-sig: Excel's byte-order mark would otherwise glue itself onto the first column's name
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise PodiumError(
            f"{what} '{path}' is not a readable CSV file ({type(exc).__name__}: {exc}). "
            "Give a UTF-8, comma-separated text file with a header line."
        ) from None
    if frame.shape[1] == 0 or len(frame) == 0:
        raise PodiumError(f"{what} '{path}' has no rows. It needs a header line and one row per image.")
    frame.columns = [c.strip() for c in frame.columns]
    return frame

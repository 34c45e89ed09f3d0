"""Where a benchmark's numbers came from: the code, the machine, the libraries and how busy the machine was.

Every script in benchmarks/ writes `provenance()` under the key "provenance" of its results file, through
`write_results`, which also writes atomically (a temp file in the same folder, then a rename: a benchmark killed
while writing leaves the old file whole). `benchmarks/figures.py` reads it back to name the commit and date under
every rendered table and to tell a stale results file from a fresh one.

The load average "at start" is taken when this module is first imported (benchmark scripts import it at the top),
"at end" when `provenance()` is called (just before the results are written).

    {"commit": "<40 hex>", "dirty": false, "dirty_files": {}, "date": "2026-11-23T10:00:00+00:00",
     "device": "AMD EPYC ...", "gpu": null, "python": "3.11.7", "torch": "2.x", "timm": "1.x", "lightning": "2.x",
     "cpu_count": 2, "torch_threads": 2, "loadavg_start": [1.2, 1.0, 0.9], "loadavg_end": [...],
     "command": "benchmarks/train_overhead.py --steps 60"}

`dirty` ignores benchmarks/results/ (a `make bench` run rewrites those files one after another). `dirty_files`
maps every other path that differed from `commit` (modified, added or untracked, not ignored) to the git blob hash
of its content then, so figures.py can tell whether the code a run measured is the code committed since.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = "benchmarks/results/"


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


LOADAVG_AT_IMPORT = _loadavg()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def _dirty_files() -> dict[str, str]:
    """Path -> blob hash of every changed, added or untracked (not ignored) path outside benchmarks/results/."""
    status = _git("status", "--porcelain=v1", "-z", "--untracked-files=all")
    if not status:
        return {}
    entries = status.split("\0")
    paths: list[str] = []
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if "R" in code or "C" in code:
            i += 1  # the rename's source path follows
        if not path.startswith(RESULTS_DIR):
            paths.append(path)
    files = {}
    for path in paths:
        full = ROOT / path
        files[path] = (_git("hash-object", "--", path) or "").strip() if full.is_file() else "deleted"
    return files


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - not installed, or no metadata
        return None


def _command() -> str:
    argv = list(sys.argv) or ["python"]
    if argv[0] and os.path.exists(argv[0]):
        argv[0] = os.path.relpath(argv[0], ROOT)
    return shlex.join(argv)


def provenance() -> dict:
    """Commit, dirty state, date, device, library versions, CPU count, torch threads, load average at start and end,
    and the command line of the running benchmark."""
    commit = (_git("rev-parse", "HEAD") or "").strip() or None
    dirty_files = _dirty_files() if commit else {}
    gpu = None
    torch_version = torch_threads = None
    if "torch" in sys.modules or _version("torch"):
        import torch

        torch_version, torch_threads = torch.__version__, torch.get_num_threads()
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    return {
        "commit": commit,
        "dirty": bool(dirty_files),
        "dirty_files": dirty_files,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": gpu or _cpu_model(),
        "gpu": gpu,
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "torch": torch_version,
        "timm": _version("timm"),
        "lightning": _version("lightning"),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch_threads,
        "loadavg_start": LOADAVG_AT_IMPORT,
        "loadavg_end": _loadavg(),
        "command": _command(),
    }


def write_json(path: Path, data) -> None:
    """Write `data` as indented JSON to `path` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # what a plain open() would have given, not mkstemp's 0600
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(path: Path, result: dict) -> dict:
    """Add `provenance()` under "provenance" (every other key kept as the script made it) and write atomically."""
    result = {**result, "provenance": provenance()}
    write_json(path, result)
    return result

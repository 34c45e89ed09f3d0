"""A real PostgreSQL for the tests: initdb + pg_ctl in a temp folder on a free port, started and stopped by the tests.

As root (containers, CI) the server must run as the `postgres` user (runuser). Skipped, with the reason, only when
the binaries are absent (`make test` installs Debian's postgresql when pg_ctl is missing).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", "postgres", "--", *args]


@pytest.fixture(scope="module")
def postgres_url():
    """postgresql://postgres@127.0.0.1:<port>/postgres of a fresh server, stopped and deleted after the module."""
    bins = _bin_dir()
    if bins is None or not (bins / "initdb").exists():
        pytest.skip("PostgreSQL's initdb/pg_ctl are not installed (Debian: apt-get install postgresql; "
                    "`make test` does it)")
    root = Path(tempfile.mkdtemp(prefix="podium-pg-"))  # not under pytest's 0700 tmp: the server user reads it
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    subprocess.run(_as_server_user([str(bins / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                    "--no-sync"]), check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(_as_server_user([str(bins / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
                                    "-w", "-t", "60", "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_server_user([str(bins / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

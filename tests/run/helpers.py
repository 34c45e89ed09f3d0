"""What the safety tests craft: a checkpoint that runs code when unpickled, the pid of a process that has ended."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import torch


class Evil:
    """Unpickling this touches `marker`: a stand-in for any code a crafted checkpoint could run."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def evil_checkpoint(path: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    """A Lightning-looking checkpoint at `path` whose unpickling creates `marker`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "payload": Evil(marker)}, path)
    return path


def dead_pid() -> int:
    """The pid of a process of this host that has exited (a crashed trainer's)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid

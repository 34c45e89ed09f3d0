"""Who writes the run folder: one process, whatever the number of processes training it.

A multi-device run (train.devices x train.nodes > 1, Lightning's DDP) is one process per device, and every one of
them runs the whole `podium train` command from the top: Lightning's own launcher re-runs the command line for
devices 1..N-1 when the first fit starts, torchrun and SLURM's srun start them all at once. Only the process of global
rank 0 writes the run folder (marker, locks, config, folds, checkpoints, curves, OOF, done.json, metrics.json) and
mirrors it; the others read what they need (the data, a checkpoint to resume from) and never write.

This module is the one place that decides it. `podium train` declares the run's processes (`declare`)
before it touches the folder; every writer of RunDir/FoldDir (podium.run.access.Folder) then calls `check_writer`,
which raises on any other rank: a process that should not write fails loudly instead of racing rank 0. Lightning
saves checkpoints and TensorBoard logs on rank 0 only by itself.

The rank is read from the environment the launcher sets, before Lightning has started: torchrun sets RANK, srun
sets SLURM_PROCID, Lightning's launcher NODE_RANK and LOCAL_RANK (the first process has none of them until it
launches the others). podium.engine.fold checks that Lightning's trainer agrees.
"""

from __future__ import annotations

import os

# the run this process works on, as `podium train` declared it: train.devices processes on each of train.nodes machines
_devices, _nodes = 1, 1


def declare(devices: int, nodes: int = 1) -> None:
    """`podium train`'s declaration, before it touches the run folder: train.devices and train.nodes."""
    global _devices, _nodes
    _devices, _nodes = int(devices), int(nodes)


def processes() -> int:
    """The processes training the declared run (1 until a multi-device run is declared)."""
    return _devices * _nodes


def launched_rank(devices: int | None = None) -> int:
    """This process's global rank as its launcher set it: 0 for the first (or only) process. `devices`: processes
    per machine (default: as declared)."""
    env = os.environ
    if "RANK" in env:  # torchrun (and anything speaking torch.distributed's env:// protocol)
        return int(env["RANK"])
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:  # srun: one task per device
        return int(env["SLURM_PROCID"])
    # Lightning's launcher: NODE_RANK of the machine (set by the user on each), LOCAL_RANK of the process on it
    return int(env.get("NODE_RANK", "0")) * (devices or _devices) + int(env.get("LOCAL_RANK", "0"))


def is_writer() -> bool:
    """Whether this process writes the run folder (and mirrors it): always in a one-process run, whatever its
    environment says (a SLURM array task, one of several independent job steps); in a multi-process run, rank 0."""
    return processes() == 1 or launched_rank() == 0


def check_writer(path: os.PathLike | str) -> None:
    """Raise unless this process may write `path` of a run folder (a bug in podium, not a user's mistake)."""
    if not is_writer():
        raise RuntimeError(f"rank {launched_rank()} of a {processes()}-process run tried to write '{path}': only "
                           "rank 0 writes the run folder (podium.run.writer)")

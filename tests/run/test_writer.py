"""run/writer.py: which process of a multi-device run writes the run folder, read from each launcher's environment,
and every run-folder writer refusing the others."""

from __future__ import annotations

import pandas as pd
import pytest

from podium.run import writer
from podium.run.lock import fold_locks
from podium.run.marker import write_marker
from podium.run.rundir import RunDir

LAUNCH_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "SLURM_NTASKS")


@pytest.fixture
def launched(monkeypatch):
    """launched(devices, nodes, **env): this process as a launcher would start it, for the test's duration."""
    for var in LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)

    def launch(devices: int, nodes: int = 1, **env: str) -> None:
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        writer.declare(devices, nodes)

    yield launch
    writer.declare(1, 1)


@pytest.mark.parametrize("env, rank", [
    ({}, 0),  # the first process, before Lightning's launcher has started the others
    ({"LOCAL_RANK": "1"}, 1),  # Lightning's launcher, second device of node 0
    ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, 4),  # Lightning on node 1 of 4-device nodes
    ({"RANK": "5", "LOCAL_RANK": "1", "NODE_RANK": "1"}, 5),  # torchrun: RANK is the global rank
    ({"SLURM_PROCID": "6", "SLURM_NTASKS": "8", "LOCAL_RANK": "2"}, 6),  # srun, one task per device
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "LOCAL_RANK": "1"}, 1),  # one sbatch task, Lightning's children
])
def test_the_rank_is_read_from_whichever_launcher_started_the_process(launched, env, rank):
    launched(4, 2, **env)
    assert writer.launched_rank() == rank
    assert writer.is_writer() == (rank == 0)


def test_a_one_process_run_writes_whatever_its_environment_says(launched):
    """A SLURM array task or one of several independent job steps carries a rank of its own: still its run's writer."""
    launched(1, 1, SLURM_PROCID="3", SLURM_NTASKS="4", LOCAL_RANK="2")
    assert writer.processes() == 1 and writer.is_writer()


def test_no_run_folder_writer_works_on_another_rank(launched, tmp_path):
    """RunDir/FoldDir writers, the marker and the fold locks all refuse rank 1: a second writer fails loudly."""
    launched(2, 1, LOCAL_RANK="1")
    run = RunDir(tmp_path / "run")
    attempts = [lambda: run.write_classes(["a"]), lambda: run.write_metrics({}),
                lambda: run.fold_dir(0).write_oof(pd.DataFrame({"id": ["1"]})),
                lambda: write_marker(run.path), lambda: fold_locks(run.path, [0]).__enter__()]
    for attempt in attempts:
        with pytest.raises(RuntimeError, match="only rank 0 writes"):
            attempt()
    assert not (tmp_path / "run").exists()
    launched(2, 1, LOCAL_RANK="0")  # rank 0 writes
    run.path.mkdir()
    run.write_classes(["a"])
    assert run.classes() == ["a"]

"""podium.run: the run folder <output_dir>/<name>/ — what it holds, who may write it, how it is read.

  marker.py      RUN/.podium-run: podium removes and replaces only folders that carry it
  rundir.py      RunDir: the run's files by name, and readers that name the broken file and its fix
  checkpoint.py  load_checkpoint: the one way a checkpoint is read (tensors only, never pickled code)
  lock.py        RUN/locks/fold<k>.lock: one writer per fold
  guard.py       where a run folder may lie and what `podium train` may remove

Other modules still reach into run folders directly; they move here as they are touched.
"""

from podium.run.checkpoint import load_checkpoint
from podium.run.lock import fold_locks
from podium.run.marker import MARKER, is_podium_run, run_above, write_marker
from podium.run.rundir import RunDir

__all__ = ["MARKER", "RunDir", "fold_locks", "is_podium_run", "load_checkpoint", "run_above", "write_marker"]

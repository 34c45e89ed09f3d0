"""podium.run: the run folder <output_dir>/<name>/ — what it holds, who may write it, how it is read.

  files.py       the names of the run's files (RUN_FILES), in one place, and how to get each back when damaged
  rundir.py      RunDir: the one owner of the folder — every path, checked reader and atomic writer
  folddir.py     FoldDir: one fold's files, fold<k>/ (checkpoints, curves, OOF, finished marker)
  access.py      what both share: checked JSON/CSV readers, atomic writers, the MLflow run id
  marker.py      RUN/.podium-run: podium removes and replaces only folders that carry it
  checkpoint.py  load_checkpoint: the one way a checkpoint is read (tensors only, never pickled code)
  lock.py        RUN/locks/fold<k>.lock: one writer per fold
  writer.py      one writer per run: rank 0 of a multi-device (DDP) run, the only process that writes the folder
  guard.py       where a run folder may lie and what `podium train` may remove
  merge.py       every finished fold's OOF merged and scored (oof.csv, metrics.json)
  decisions.py   what is fitted on the OOF and read by predict (posthoc.json, thresholds.json)
  outputs.py     where a user's --out may write
  store.py       a run's mirror in an object store (any fsspec URL): objects, manifests, leases
  mirror.py      Mirror: the run folder published to its mirror from a background thread
  pull.py        a run restored from its mirror, every file checked against its manifest
  lease.py       fold leases in the mirror: one machine per fold, with a heartbeat

No module outside podium.run spells a run file's name (tests/run/test_owner.py).
"""

from podium.run.checkpoint import load_checkpoint
from podium.run.files import RUN_FILES
from podium.run.folddir import FoldDir
from podium.run.lock import fold_locks
from podium.run.marker import MARKER, is_podium_run, run_above, write_marker
from podium.run.rundir import RunDir

__all__ = ["MARKER", "RUN_FILES", "FoldDir", "RunDir", "fold_locks", "is_podium_run", "load_checkpoint", "run_above",
           "write_marker"]

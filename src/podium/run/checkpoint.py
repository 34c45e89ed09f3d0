"""The one way podium reads a checkpoint: tensors and plain data only, never pickled code.

Every load (resume through Lightning's CheckpointIO, predict, report's Grad-CAM, `train.init_from`, the best
checkpoint after a fold) comes here. `torch.load(weights_only=True)` refuses any pickled object other than tensors
and plain containers, so a crafted file cannot run code when it is opened; an explicit weights_only=True wins over
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (torch 2.14, the pinned version: the variable only sets the default).
A missing, truncated or crafted file becomes a PodiumError that names it and says how to get a good one back.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from podium.errors import PodiumError
from podium.run.files import CONFIG

_REFUSED = "Weights only load failed"  # how torch starts the error for a pickled object it will not build


def checkpoint_fix(path: Path) -> str:
    """How to get a good `path` back: retrain its fold when it is a run's fold<k>/*.ckpt."""
    fold, run = path.parent, path.parent.parent
    if fold.name.startswith("fold") and fold.name[4:].isdigit() and (run / CONFIG).is_file():
        k = fold.name[4:]
        return (f"retrain fold {k} of the run: `podium train {run / CONFIG} --folds {k} --overwrite` "
                f"(or delete fold{k}/ and train with --resume)")
    return "restore the file from a backup, or point at a checkpoint `podium train` wrote"


def load_checkpoint(path: Path | str, fix: str | None = None) -> dict:
    """The checkpoint dict at `path` (on the CPU) holding a 'state_dict'; a PodiumError naming the file (and `fix`,
    default: how to retrain its fold) when it is missing, unreadable, not a checkpoint or holds pickled objects."""
    import torch

    path = Path(path)
    fix = fix or checkpoint_fix(path)
    if not path.is_file():
        raise PodiumError(f"Checkpoint '{path}' is missing. To get it back, {fix}.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _REFUSED not in str(exc):
            raise PodiumError(f"Checkpoint '{path}' is corrupt ({_first_line(exc)}). To get it back, {fix}.") from None
        raise PodiumError(f"Checkpoint '{path}' holds pickled objects besides tensors and plain data; podium never "
                          f"loads those, since unpickling them could run any code. It was not written by `podium "
                          f"train`: {fix}.") from None
    except Exception as exc:  # a truncated zip, an empty file, an unreadable disk: all mean "not a good checkpoint"
        raise PodiumError(f"Checkpoint '{path}' cannot be read: it is truncated or corrupt ({_first_line(exc)}). "
                          f"To get it back, {fix}.") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise PodiumError(f"'{path}' is not a checkpoint written by `podium train` (no state_dict). {fix[0].upper()}"
                          f"{fix[1:]}.")
    return checkpoint


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__

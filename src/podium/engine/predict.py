"""Prediction with a fold's model: class probabilities with TTA views, and a fold's best checkpoint as a module.

Checkpoints are read with podium.run.load_checkpoint (weights only): loading one never runs pickled code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from podium.augment import eval_pipeline, to_float
from podium.config import Config
from podium.engine.build import build_module
from podium.engine.fastpath import as_channels_last, autocast_dtype, wants_channels_last
from podium.engine.loader import make_loader
from podium.errors import PodiumError
from podium.run.checkpoint import load_checkpoint
from podium.run.decisions import run_task
from podium.run.rundir import RunDir
from podium.tta import check_combine, combine, tta_views


@torch.inference_mode()
def predict_probs(module, images: np.ndarray, indices: np.ndarray, batch_size: int, tta: str | list[str] = "none",
                  how: str = "mean_probs") -> np.ndarray:
    """Class probabilities (N x C, float64) for images[indices]: the TTA views' outputs combined by `how`.

    The training loop's fast path on a GPU (podium.engine.fastpath): channels_last network and views, cuDNN
    autotuning, bf16 (else fp16) autocast, and outputs kept on the device until the last batch (one copy back)."""
    views = tta_views(tta)
    check_combine(how)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = module.to(device).eval()
    net = module.eval_model()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer sets it: prediction's batches have one shape
    channels_last = wants_channels_last(net, device.type)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    dtype = autocast_dtype(device.type)
    out = []
    pipeline = eval_pipeline(module.augment_cfg, images.shape[-1])  # the edge channel when the model takes one
    for x, _ in make_loader(images, None, indices, batch_size, seed=None, pipeline=pipeline):
        xf = to_float(x.to(device, non_blocking=True), module.mean, module.std)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = [net(as_channels_last(view(xf)) if channels_last else view(xf)).float() for _, view in views]
        out.append(combine(logits, how, module.task.activation))
    return torch.cat(out).double().cpu().numpy()


def load_fold_module(cfg: Config, rd: Path, k: int, n_classes: int, channels: int, task=None):
    """Fold k's best checkpoint as a module for prediction; `task` (podium.tasks) default: the run's."""
    run = RunDir(rd)
    task = task or run_task(rd, cfg)
    if len(task.outputs) != n_classes:
        raise PodiumError(f"'{run.classes_file}' lists {len(task.outputs)} outputs, not {n_classes}.")
    info = run.info() if run.run_json.exists() else {}
    stats = (tuple(info["mean"]), tuple(info["std"])) if "mean" in info else None  # as trained (augment.normalize)
    module = build_module(
        cfg.model_copy(update={"model": cfg.model.model_copy(update={"pretrained": False, "weights": None})}),
        task, channels, steps_per_epoch=1, stats=stats)
    state = load_checkpoint(run.best_ckpt(k))["state_dict"]
    try:
        module.load_state_dict(state)
    except RuntimeError as err:  # another shape than the config's model: classes.json or config.yaml was edited
        raise PodiumError(f"'{run.best_ckpt(k)}' does not fit the model of '{run.config}' with the "
                          f"{len(task.outputs)} outputs of '{run.classes_file}' ({str(err).splitlines()[0]}). Restore "
                          "those files as `podium train` wrote them, or retrain the run.") from None
    return module

"""Multi-device training (train.devices x train.nodes > 1): Lightning's DDP settings, and validation over every rank.

Each process validates its share of the fold's validation images (podium.samplers.ShardedSampler, padded so every
rank runs the same number of batches). `gather_validation` collects the shares on every rank and drops the padding
by the images' positions: each validation image counted once, the metric computed on the whole set, and the same
number on every rank, so the checkpoint and early stopping decide alike everywhere.
"""

from __future__ import annotations

import numpy as np
import torch

from podium.config import Config
from podium.errors import PodiumError


def trainer_settings(cfg: Config) -> dict:
    """What the Lightning Trainer needs for cfg's processes: DDP past one, and podium's own sharding always."""
    settings = dict(num_nodes=cfg.train.nodes,
                    # podium shards its loaders itself (make_loader's rank/world): Lightning's replacement would wrap
                    # the training sampler in another shuffle and pad validation with repeated images
                    use_distributed_sampler=False)
    if cfg.train.devices * cfg.train.nodes > 1:
        # one process per device, each running the whole command (Lightning's launcher, torchrun or srun start them;
        # ddp_spawn would pickle the module and its loaders into fresh processes instead); gloo on CPU, NCCL on GPUs
        settings["strategy"] = "ddp"
    return settings


def check_ranks(trainer, rank: int, world: int) -> None:
    """Refuse a launch where Lightning's rank differs from the one podium read from the environment (podium.run.writer):
    the loaders would read another rank's share, and the wrong process would write the run folder."""
    if (trainer.global_rank, trainer.world_size) != (rank, world):
        raise PodiumError(
            f"This process is rank {trainer.global_rank} of {trainer.world_size} for Lightning but rank {rank} of "
            f"{world} (train.devices x train.nodes) for podium's reading of its launcher's environment (RANK, "
            "SLURM_PROCID, NODE_RANK, LOCAL_RANK). Start one process per device with one launcher: `podium train` "
            "alone (it starts the others), torchrun --nproc-per-node=train.devices, or srun --ntasks-per-node="
            "train.devices; see docs/multi-gpu.md.")


def dedupe_gathered(positions: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """The gathered `values` (rows aligned with `positions`, padding repeats included) with each position once, in
    position order. Refuses a gap: a position below the largest that no rank predicted."""
    unique, first = np.unique(positions, return_index=True)
    if len(unique) and (unique[0] != 0 or unique[-1] != len(unique) - 1):
        raise RuntimeError(f"validation gathered positions {unique[:3]}..{unique[-3:]}: not each of 0..n-1")
    return tuple(v[first] for v in values)


def gather_validation(module, probs: torch.Tensor, targets: torch.Tensor,
                      positions: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
    """The whole validation set's probabilities and targets (numpy, in position order), on every rank.

    `module`: the LightningModule (its all_gather speaks the trainer's process group); `positions`: each row's
    position in the fold's validation images (None: one process, rows already in order)."""
    world = module.trainer.world_size
    if world == 1 or positions is None:
        return probs.cpu().numpy(), targets.cpu().numpy()
    gathered = module.all_gather({"p": probs, "y": targets, "i": positions})  # each W x L x ...: equal shards
    flat = {k: v.reshape(-1, *v.shape[2:]).cpu().numpy() for k, v in gathered.items()}
    return dedupe_gathered(flat["i"], flat["p"], flat["y"])

"""A local Hugging Face hub cache holding a timm model's weights, built offline the way huggingface_hub lays it out.

<cache>/models--<org>--<name>/
  blobs/<sha256 of the file>                           the file itself
  snapshots/<revision>/model.safetensors -> ../../blobs/<sha256>
  refs/main                                            the revision (40 hex digits, no newline)

The weights are timm's network for the name with every tensor set to values drawn from a fixed seed, so a test can
tell them from any other initialisation.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

REVISION = "0123456789abcdef0123456789abcdef01234567"


def known_state(arch: str, seed: int = 7) -> dict[str, torch.Tensor]:
    """timm's `arch` (1000 classes) with every tensor replaced by seeded values: weights ~ N(0, 0.1) + 0.01 x
    position, BatchNorm variances in [0.5, 1.5), counters 3."""
    import timm

    g = torch.Generator().manual_seed(seed)
    state = {}
    for i, (key, t) in enumerate(timm.create_model(arch, pretrained=False).state_dict().items()):
        if not t.is_floating_point():
            state[key] = torch.full_like(t, 3)
        elif key.endswith("running_var"):
            state[key] = torch.rand(t.shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(t.shape, generator=g) * 0.1 + 0.01 * (i % 7)
    return state


def write_hub_weights(cache: Path, repo: str, state: dict[str, torch.Tensor], revision: str = REVISION) -> Path:
    """`state` as `repo`'s model.safetensors in the hub cache `cache`; returns the snapshot's file."""
    folder = Path(cache) / f"models--{repo.replace('/', '--')}"
    tmp = folder / "model.safetensors.tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    blob = folder / "blobs" / digest
    blob.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(blob)
    snapshot = folder / "snapshots" / revision / "model.safetensors"
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(blob, snapshot.parent), snapshot)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(revision)
    return snapshot

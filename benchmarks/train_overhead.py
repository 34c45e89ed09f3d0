"""podium's training loop vs a bare PyTorch loop: same model, data, batch size, optimiser and schedule.

Rounds alternate (podium, bare, podium, bare, ...) in one process so machine noise hits both alike. Time per
step = median gap between consecutive step starts (everything between steps counts: Lightning's hooks,
logging, the progress bar, the loader). Also: training GFLOP/s achieved (forward FLOPs counted by torch's
FlopCounterMode, x3 for forward + backward) as a share of the fp32 matmul peak measured in the same run (the
better of a measurement before and one after the rounds).

    .venv/bin/python benchmarks/train_overhead.py [--steps 60] [--rounds 3] [--model podium_cnn] [--size 28]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from provenance import write_results  # benchmarks/provenance.py: commit, machine, load, versions

from podium.config import from_dict
from podium.engine.build import build_module
from podium.engine.fold import make_trainer
from podium.engine.loader import make_loader
from podium.engine.module import seed_everything
from podium.models import create_model
from podium.tasks import make_task
from podium.tasks.check import check_config

RESULTS = Path(__file__).parent / "results" / "train_overhead.json"


class StepClock(pl.Callback):
    def __init__(self):
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.starts.append(time.perf_counter())


def matmul_peak_gflops(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times) / 1e9


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops())


def podium_round(cfg, images, targets, steps: int, workdir: Path) -> list[float]:
    seed_everything(0)
    loader = make_loader(images, targets, np.arange(len(images)), cfg.train.batch_size, seed=0)
    # the module, head and loss exactly as `podium train` builds them for a fold (loss from the training targets)
    task = make_task(cfg.data, [str(c) for c in range(10)])
    module = build_module(cfg, task, images.shape[-1], len(loader), train_targets=targets, stats=((0.5,), (0.5,)))
    clock = StepClock()
    trainer = make_trainer(cfg, workdir, len(loader), max_steps=steps, limit_val_batches=0)
    trainer.callbacks.append(clock)
    trainer.fit(module, loader)
    return np.diff(clock.starts[2:]).tolist()  # skip warm-up steps


def bare_round(cfg, images, targets, steps: int) -> list[float]:
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    from podium.augment import to_float, train_transform

    seed_everything(0)
    t = cfg.train
    model = create_model(cfg.model, 10, images.shape[-1])
    opt = create_optimizer_v2(model, opt=t.optimizer, lr=t.lr, weight_decay=t.weight_decay)
    loader = make_loader(images, targets, np.arange(len(images)), t.batch_size, seed=0)
    sched, _ = create_scheduler_v2(opt, sched=t.scheduler, num_epochs=t.epochs, warmup_epochs=t.warmup_epochs,
                                   step_on_epochs=False, updates_per_epoch=len(loader))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=t.loss_args["label_smoothing"])
    augment, mean, std = train_transform(cfg.augment), torch.tensor([0.5]), torch.tensor([0.5])
    starts, step = [], 0
    model.train()
    while step < steps:
        for x, y in loader:
            starts.append(time.perf_counter())
            loss = loss_fn(model(augment(to_float(x, mean, std))), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            sched.step_update(step)
            if step >= steps:
                break
    return np.diff(starts[2:]).tolist()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default="podium_cnn")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4096, args.size, args.size, 1), dtype=np.uint8)
    targets = rng.integers(0, 10, size=len(images))
    cfg = check_config(from_dict({"model": {"name": args.model, "pretrained": False},  # loss_args filled in
                                  "train": {"batch_size": args.batch, "epochs": 10, "patience": 0}}))
    peak = matmul_peak_gflops()
    flops = 3 * forward_flops(create_model(cfg.model, 10, 1), torch.zeros(args.batch, 1, args.size, args.size))
    podium_t, bare_t = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            podium_t.append(statistics.median(podium_round(cfg, images, targets, args.steps, Path(tmp) / f"r{r}")))
            bare_t.append(statistics.median(bare_round(cfg, images, targets, args.steps)))
            print(f"round {r}: podium {podium_t[-1] * 1e3:.1f} ms/step, bare {bare_t[-1] * 1e3:.1f} ms/step")
    peaks = [peak, matmul_peak_gflops()]  # before and after the rounds: on a shared machine the best is the peak
    peak = max(peaks)
    p, b = statistics.median(podium_t), statistics.median(bare_t)
    result = {
        "benchmark": "train_overhead", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": vars(args), "torch_threads": torch.get_num_threads(),
        "ms_per_step": {"podium": p * 1e3, "bare": b * 1e3}, "ratio_podium_over_bare": p / b,
        "rounds": {"podium_ms": [x * 1e3 for x in podium_t], "bare_ms": [x * 1e3 for x in bare_t]},
        "train_gflop_per_step": flops / 1e9, "achieved_gflops": {"podium": flops / p / 1e9, "bare": flops / b / 1e9},
        "fp32_matmul_peak_gflops": peak, "fp32_matmul_gflops_before_after": peaks,
        "share_of_peak": {"podium": flops / p / 1e9 / peak, "bare": flops / b / 1e9 / peak},
    }
    write_results(RESULTS, result)
    print(f"podium/bare time per step: {p / b:.3f} (target <= 1.10); podium {p * 1e3:.1f} ms, bare {b * 1e3:.1f} ms")
    print(f"training GFLOP/s: podium {flops / p / 1e9:.1f}, bare {flops / b / 1e9:.1f}; fp32 matmul peak {peak:.1f} "
          f"-> {flops / p / 1e9 / peak:.0%} / {flops / b / 1e9 / peak:.0%} of peak")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

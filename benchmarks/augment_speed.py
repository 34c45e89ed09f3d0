"""What each augmentation preset costs per training step, at 28 px (grayscale) and 128 px (RGB).

Every preset trains the same model on the same random images through podium's own loop (make_loader with the
per-image stage as train_fold builds it, Lightning, the batch stage in training_step). Rounds alternate presets
(none, light, medium, heavy, documents, none, ...) in one process so machine noise hits all alike. Time per step =
median gap between consecutive step starts, as in benchmarks/train_overhead.py, in wall time and in this process's
CPU time (all its threads): on a shared, overloaded machine the wall time mostly measures waiting for a core, the
CPU time still measures the work a step costs. Also: the per-image stage alone, in CPU ms per image.

`--workers N` runs the training rounds with train.workers=N (default 0, the figures' setting; with workers the CPU
time counts the training process only). `--loader-workers 0,1,2` adds, for each preset with a per-image stage, the
loader alone (make_loader as train_fold builds it, no training): augmented batches per second with each worker
count, over one epoch after a warm-up epoch that starts the persistent workers.

    .venv/bin/python benchmarks/augment_speed.py [--steps 20] [--rounds 2] [--sizes 28,128] [--workers 0]
        [--loader-workers 0,1,2] [--out FILE]

Writes benchmarks/results/augment_speed.json (with the load average: the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from provenance import write_results  # benchmarks/provenance.py: commit, machine, load, versions

from podium.augment import PRESETS, train_pipeline
from podium.config import from_dict
from podium.engine.build import build_module
from podium.engine.fold import make_trainer
from podium.engine.loader import make_loader
from podium.engine.module import seed_everything
from podium.samplers import EpochSampler
from podium.tasks import make_task

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "augment_speed.json"


class StepClock(pl.Callback):
    def __init__(self):
        self.starts: list[float] = []
        self.cpu: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.starts.append(time.perf_counter())
        self.cpu.append(time.process_time())


def preset_round(preset: str, images, targets, batch: int, steps: int, workdir: Path,
                 workers: int = 0) -> tuple[float, float]:
    """(wall, CPU) seconds per step, medians over the steps after the first two."""
    cfg = from_dict({"model": {"name": "podium_cnn", "pretrained": False}, "augment": {"preset": preset},
                     "train": {"batch_size": batch, "epochs": 10, "patience": 0, "workers": workers}})
    seed_everything(0)
    sampler = EpochSampler(len(images), 0)
    loader = make_loader(images, targets, np.arange(len(images)), batch, None, sampler=sampler,
                         pipeline=train_pipeline(cfg.augment, images.shape[-1]), augment_seed=0,
                         workers=cfg.train.workers)
    task = make_task(cfg.data, [str(c) for c in range(10)])
    module = build_module(cfg, task, images.shape[-1], len(loader), train_targets=np.asarray(targets))
    clock = StepClock()
    trainer = make_trainer(cfg, workdir, len(loader), max_steps=steps, limit_val_batches=0)
    trainer.callbacks.append(clock)
    trainer.fit(module, loader)
    return statistics.median(np.diff(clock.starts[2:])), statistics.median(np.diff(clock.cpu[2:]))


def image_stage_ms(preset: str, images: np.ndarray, reps: int = 3) -> float:
    """CPU ms per image of the per-image stage alone; 0 when the preset has none."""
    cfg = from_dict({"augment": {"preset": preset}})
    pipe = train_pipeline(cfg.augment, images.shape[-1])
    if pipe is None:
        return 0.0
    times = []
    for r in range(reps):
        t = time.process_time()
        pipe(images, r)
        times.append(time.process_time() - t)
    return statistics.median(times) / len(images) * 1e3


def loader_batches_per_s(preset: str, images, targets, batch: int, workers: int) -> float:
    """Augmented batches per second out of the training loader alone, in its second epoch (the first starts the
    persistent workers and fills their queues)."""
    cfg = from_dict({"augment": {"preset": preset}})
    sampler = EpochSampler(len(images), 0)
    loader = make_loader(images, targets, np.arange(len(images)), batch, None, sampler=sampler,
                         pipeline=train_pipeline(cfg.augment, images.shape[-1]), augment_seed=0, workers=workers)
    assert loader.num_workers == workers
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        t = time.perf_counter()
        n = sum(1 for _ in loader)
        seconds = time.perf_counter() - t
    return n / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sizes", default="28,128")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--workers", type=int, default=0, help="train.workers of the training rounds")
    ap.add_argument("--loader-workers", default="", help="e.g. 0,1,2: also time the loader alone with these")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where the results go (a dry run: elsewhere)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    result = {"benchmark": "augment_speed", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": settings,
              "torch_threads": torch.get_num_threads(), "model": "podium_cnn", "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            channels = 1 if size <= 32 else 3  # Fashion-MNIST-like at 28 px, photos at 128 px
            batch = args.batch if size <= 32 else max(16, args.batch // 4)
            images = rng.integers(0, 256, size=(batch * (args.steps + 4), size, size, channels), dtype=np.uint8)
            targets = rng.integers(0, 10, size=len(images))
            wall: dict[str, list[float]] = {p: [] for p in PRESETS}
            cpu: dict[str, list[float]] = {p: [] for p in PRESETS}
            for r in range(args.rounds):
                for preset in PRESETS:
                    w, c = preset_round(preset, images, targets, batch, args.steps, Path(tmp) / f"{size}-{preset}-{r}",
                                        args.workers)
                    wall[preset].append(w)
                    cpu[preset].append(c)
                    print(f"{size} px round {r}: {preset:10s} {w * 1e3:.1f} ms/step wall, {c * 1e3:.1f} ms CPU",
                          flush=True)
            ms = {p: statistics.median(v) * 1e3 for p, v in wall.items()}
            cpu_ms = {p: statistics.median(v) * 1e3 for p, v in cpu.items()}
            result["sizes"][str(size)] = {
                "channels": channels, "batch": batch, "ms_per_step": ms, "cpu_ms_per_step": cpu_ms,
                "ratio_to_light": {p: ms[p] / ms["light"] for p in ms},
                "cpu_ratio_to_light": {p: cpu_ms[p] / cpu_ms["light"] for p in cpu_ms},
                "image_stage_cpu_ms_per_image": {p: image_stage_ms(p, images[:batch]) for p in PRESETS},
                "rounds_ms": {p: [x * 1e3 for x in v] for p, v in wall.items()},
                "rounds_cpu_ms": {p: [x * 1e3 for x in v] for p, v in cpu.items()}}
            if args.loader_workers:
                counts = [int(w) for w in args.loader_workers.split(",")]
                staged = [p for p in PRESETS if train_pipeline(from_dict({"augment": {"preset": p}}).augment, 1)]
                per_s = {p: {str(w): loader_batches_per_s(p, images, targets, batch, w) for w in counts}
                         for p in staged}
                result["sizes"][str(size)]["loader_batches_per_s"] = per_s
                for p, v in per_s.items():
                    print(f"{size} px loader alone, {p}: " + ", ".join(f"{w} workers {b:.1f} batches/s"
                                                                       for w, b in v.items()), flush=True)
    result["load_average_before"], result["load_average_after"] = load_before, os.getloadavg()
    write_results(args.out, result)
    print("\n| size | preset | ms/step (wall) | CPU ms/step | CPU x light | image stage, CPU ms/image | per batch |")
    print("|---|---|---|---|---|---|---|")
    for size, r in result["sizes"].items():
        for p in PRESETS:
            print(f"| {size} px, {r['channels']} ch, batch {r['batch']} | {p} | {r['ms_per_step'][p]:.0f} | "
                  f"{r['cpu_ms_per_step'][p]:.0f} | {r['cpu_ratio_to_light'][p]:.2f} | "
                  f"{r['image_stage_cpu_ms_per_image'][p]:.3f} | "
                  f"{r['image_stage_cpu_ms_per_image'][p] * r['batch']:.0f} ms |")
    print(f"load average before {load_before}, after {result['load_average_after']}; wrote {args.out}")


if __name__ == "__main__":
    main()

"""Two-process DDP on CPU against one process, on scikit-learn's digits: a correctness check, not a speed figure.

The same config trained as a user runs it, `podium train CONFIG --folds 0`: with train.devices=1 at batch B, with
train.devices=2 (gloo, Lightning's `ddp` launcher re-running the command) at batch B/2 per process, so both take the
same images per optimizer step, and once more on one process with one thread (Lightning gives each DDP process
cores // processes threads). Each epoch's time is read from the TensorBoard events (the wall clock of each epoch's
validation scores: training plus validation), the first epoch left out (warm-up); the command's wall time is
reported too. On a machine whose cores are shared, the processes compete for the same cores: the figure says DDP
runs and what it costs there, not what it gains on GPUs.

    python benchmarks/ddp_cpu.py [--n 600] [--epochs 4] [--batch 32] [--out FILE]

Writes benchmarks/results/ddp_cpu.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "ddp_cpu.json"


def epoch_seconds(board: Path) -> list[float]:
    """Seconds between consecutive epochs' validation scores in a fold's TensorBoard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(board))
    events.Reload()
    times = [e.wall_time for e in events.Scalars("val_metric")]
    return [round(b - a, 3) for a, b in zip(times, times[1:])]


def train(config: Path, devices: int, batch: int, name: str, threads: int | None = None) -> dict:
    """`podium train` of fold 0 on `devices` CPU processes. `threads`: OMP_NUM_THREADS for each (None: as torch and
    Lightning choose: torch's default for one process, cores // processes for DDP)."""
    import torch

    cmd = [sys.executable, "-m", "podium", "train", str(config), "--folds", "0", f"name={name}",
           f"train.devices={devices}", f"train.batch_size={batch}", "train.accelerator=cpu"]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    used = threads or (torch.get_num_threads() if devices == 1 else max(1, (os.cpu_count() or 1) // devices))
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t
    run = config.parent / "runs" / name
    epochs = epoch_seconds(run / "fold0" / "tensorboard")
    metrics = json.loads((run / "metrics.json").read_text())
    return {"devices": devices, "batch_per_device": batch, "threads_per_process": used, "wall_seconds": round(wall, 2),
            "epoch_seconds": epochs, "median_epoch_seconds": statistics.median(epochs),
            "fold0_accuracy": metrics["folds"]["fold0"]["accuracy"], "fold0_n": metrics["folds"]["fold0"]["n"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=600, help="digits training images (of 1,437)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32, help="images per optimizer step (split over the processes)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from provenance import write_results

    from podium.commands.demo import demo_config
    from podium.config import save_config
    from podium.data.scenarios.digits import write_digits_competition

    work = Path(tempfile.mkdtemp(prefix="podium-ddp-"))
    write_digits_competition(work / "data", n=args.n)
    cfg = demo_config(work, args.epochs)
    cfg = cfg.model_copy(update={"cv": cfg.cv.model_copy(update={"n_folds": 2}),
                                 "train": cfg.train.model_copy(update={"patience": 0})})
    config = work / "config.yaml"
    save_config(cfg, config)
    # one process with torch's threads, one process with one thread, two processes (one thread each on 2 cores)
    runs = [train(config, 1, args.batch, "one"),  # builds the decode cache first: the others find it
            train(config, 1, args.batch, "one-thread", threads=1),
            train(config, 2, args.batch // 2, "two")]
    for r in runs:
        print(f"devices={r['devices']} x {r['threads_per_process']} thread(s), batch/device={r['batch_per_device']}: "
              f"epoch {r['median_epoch_seconds']:.2f} s "
              f"(each {r['epoch_seconds']}), command {r['wall_seconds']:.1f} s, fold 0 accuracy "
              f"{r['fold0_accuracy']:.4f} on {r['fold0_n']} images")
    write_results(args.out, {"benchmark": "ddp_cpu", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                             "model": cfg.model.name, "image_size": cfg.data.image_size, "runs": runs,
                             "cpu_count": os.cpu_count()})
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

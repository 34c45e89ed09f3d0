"""How long `podium report` takes on a 5-fold run with 60,000 OOF images (Fashion-MNIST's train set).

The run is real: podium_cnn_s trained 1 epoch per fold (made once, then reused from benchmarks/work/runs), so
the Grad-CAM section loads real fold checkpoints and the galleries decode real image files. The timed command
is what a user runs, `podium report RUN --out FILE`, in a fresh process (imports included); median of 3.

    make fashion-mnist && .venv/bin/python benchmarks/report_speed.py [--repeats 3]

Target: under 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from provenance import write_results  # benchmarks/provenance.py: commit, machine, load, versions

HERE = Path(__file__).parent
WORK = HERE / "work" / "fashion-mnist"
RESULTS = HERE / "results" / "report_speed.json"
TARGET_S = 60.0


def config():
    from podium.config import from_dict
    from podium.tasks.check import check_config

    return check_config(from_dict({
        "name": "report-bench-5fold", "output_dir": str(HERE / "work" / "runs"),
        "data": {"train_csv": str(WORK / "train.csv"), "test_csv": str(WORK / "test.csv"),
                 "image_dir": str(WORK / "images"), "sample_submission": str(WORK / "sample_submission.csv"),
                 "image_size": 28, "cache_dir": str(HERE / "work" / "cache")},
        "cv": {"n_folds": 5},
        "model": {"name": "podium_cnn_s", "pretrained": False},
        "augment": {"hflip": True, "shift": 0.0},
        "train": {"epochs": 1, "batch_size": 256, "optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-4,
                  "warmup_epochs": 0, "patience": 0, "eval_batch_size": 1024},
    }))  # checked (loss_args filled) as `podium train` saves it: a run of these settings compares equal


def make_run() -> Path:
    """Train the 5-fold run once (about 2 min on 2 cores); later calls reuse it."""
    from podium.commands.predict import predict
    from podium.commands.train import run_dir, train
    from podium.config import to_yaml
    from podium.data.datasets import make_dataset
    from podium.data.splits import make_folds_file

    if not (WORK / "train.csv").exists():
        make_dataset("fashion-mnist", WORK)
    cfg = config()
    rd = run_dir(cfg)
    current = (rd / "config.yaml").exists() and (rd / "config.yaml").read_text() == to_yaml(cfg)
    metrics = json.loads((rd / "metrics.json").read_text()) if current and (rd / "metrics.json").exists() else {}
    if not metrics.get("complete"):  # never made, interrupted, or made by a podium whose config differs
        make_folds_file(cfg)
        train(cfg, resume=current, overwrite=not current)
    if not (rd / "test_probs.csv").exists():
        predict(rd)
    return rd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rd = make_run()
    out = HERE / "work" / "report-bench.html"
    cmd = [sys.executable, "-c", "from podium.cli import main; main()", "report", str(rd), "--out", str(out),
           "--overwrite"]  # every repeat replaces the page the one before wrote
    seconds, load = [], []
    for _ in range(args.repeats):
        load.append(os.getloadavg()[0])
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        seconds.append(time.perf_counter() - t0)
    html = out.read_text()
    metrics = json.loads((rd / "metrics.json").read_text())
    median = statistics.median(seconds)
    result = {
        "benchmark": "report_speed", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(cmd[3:]),
        "oof_images": metrics["oof"]["n"], "folds": metrics["folds_done"], "cv_accuracy": metrics["cv"],
        "seconds": [round(s, 2) for s in seconds], "median_seconds": round(median, 2), "target_seconds": TARGET_S,
        "html_bytes": len(html), "images_embedded": html.count("<img "), "cpu_count": os.cpu_count(),
        "load_average_1min_before_each": [round(x, 2) for x in load], "config": config().model_dump(mode="json"),
    }
    result = write_results(RESULTS, result)
    print(f"podium report on {metrics['oof']['n']} OOF images, {len(metrics['folds_done'])} folds: median "
          f"{median:.1f} s of {[round(s, 1) for s in seconds]} ({result['images_embedded']} images, "
          f"{len(html) / 1e6:.1f} MB); target < {TARGET_S:.0f} s -> {'met' if median < TARGET_S else 'NOT met'}; "
          f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

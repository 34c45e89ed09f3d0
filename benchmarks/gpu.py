"""The GPU path, checked for real on a lent accelerator: podium's loop in fp32 vs bf16 mixed precision, and the demo.

Data: the digits competition (`podium demo --data-only`), decoded at --size px so a pretrained efficientnet_lite0
has real work; fold 0 of 5 (1,149 training images) for --epochs epochs, once with train.precision=32 and once with
bf16 (what `precision: auto` picks on a GPU that supports it). Reports images/s of training, the fold's CV and
wall time per setting, then `podium demo` end to end (podium_cnn, 5 folds x 12 epochs) on the GPU.

    python benchmarks/gpu.py [--size 224] [--epochs 4] [--out DIR]      # needs a CUDA GPU

Writes benchmarks/results/gpu.json (and a copy in --out).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from provenance import provenance, write_json  # benchmarks/provenance.py: commit, machine, load, versions

from podium.commands.demo import run_demo
from podium.commands.train import train
from podium.config import from_dict
from podium.data.scenarios.digits import write_digits_competition
from podium.data.splits import make_folds_file

RESULTS = Path(__file__).parent / "results" / "gpu.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs a CUDA GPU")
    work = Path(tempfile.mkdtemp(prefix="podium-gpu-"))
    write_digits_competition(work / "data")
    rows = {}
    for precision in ("32", "bf16"):
        raw = {"name": f"gpu-{precision}", "output_dir": str(work / "runs"),
               "data": {"train_csv": str(work / "data" / "train.csv"), "image_dir": str(work / "data" / "images"),
                        "image_size": args.size, "cache_dir": str(work / "cache")},
               "model": {"name": "efficientnet_lite0", "pretrained": True},
               "augment": {"hflip": False},
               "train": {"epochs": args.epochs, "batch_size": args.batch, "precision": precision, "patience": 0}}
        cfg = from_dict(raw)
        make_folds_file(cfg)
        train(cfg, folds=[0], overwrite=True)  # warm-up: cache build, cuDNN autotune, first compile of kernels
        torch.cuda.synchronize()
        t0 = time.time()
        metrics = train(cfg, folds=[0], overwrite=True)
        torch.cuda.synchronize()
        seconds = time.time() - t0
        n_train = int(json.loads((work / "runs" / cfg.name / "run.json").read_text())["n_train"] * 0.8)
        rows[precision] = {"seconds": round(seconds, 2), "cv_accuracy": metrics["cv"],
                           "train_images_per_second": round(n_train * args.epochs / seconds, 1),
                           "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2)}
        torch.cuda.reset_peak_memory_stats()
        print(precision, rows[precision], flush=True)
    t0 = time.time()
    demo = run_demo(work / "demo")
    result = {"benchmark": "gpu", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": vars(args) | {"out": None},
              "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "efficientnet_lite0_fold0": rows,
              "bf16_speedup": round(rows["32"]["seconds"] / rows["bf16"]["seconds"], 2),
              "demo": {"cv": demo.cv, "test_accuracy": demo.test_accuracy, "tta": demo.tta,
                       "wall_seconds": round(time.time() - t0, 1)}}
    result = {**result, "provenance": provenance()}
    print(json.dumps(result, indent=2))
    for path in [RESULTS] + ([args.out / "gpu.json"] if args.out else []):
        write_json(path, result)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

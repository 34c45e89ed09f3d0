"""podium_cnn on Fashion-MNIST: seconds per epoch and test accuracy per epoch, in a bare PyTorch loop.

What it measures: the network and recipe alone (no data pipeline, no Lightning), on the full 60,000
training images and the official 10,000 test images, with torch limited to `--threads` cores (2: the
brief's machine). Recipe: SGD + Nesterov (momentum 0.9), one-cycle lr (peak 0.1, 25% warm-up), weight
decay 5e-4 on conv/linear weights, label smoothing 0.1, random horizontal flip, batch 256, channels_last.
Accuracy is reported plain and with horizontal-flip TTA. Wall time counts only the training steps;
CPU time is the process's (both threads), so contention from other processes shows as wall >> CPU / 2.

    make fashion-mnist && .venv/bin/python benchmarks/podium_cnn.py --model podium_cnn --epochs 8
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from podium.config import ModelConfig
from podium.models import create_model

DATA = Path("/usr/share/datasets/fashion-mnist")
RESULTS = Path(__file__).parent / "results" / "podium_cnn.json"


def read_idx(path: Path) -> np.ndarray:
    raw = gzip.open(path).read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(read_idx(DATA / f"{split}-images-idx3-ubyte.gz").copy()).float()[:, None] / 255
    y = torch.from_numpy(read_idx(DATA / f"{split}-labels-idx1-ubyte.gz").astype(np.int64))
    return (x - 0.5) / 0.5, y  # podium's normalisation for networks without pretrained weights


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    plain, tta = [], []
    for i in range(0, len(x), 1000):
        xb = x[i:i + 1000].contiguous(memory_format=torch.channels_last)
        p = model(xb).softmax(1)
        plain.append(p)
        tta.append(p + model(xb.flip(-1)).softmax(1))
    return tuple(round((torch.cat(p).argmax(1) == y).float().mean().item(), 4) for p in (plain, tta))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="podium_cnn")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--drop-rate", type=float, default=ModelConfig().drop_rate, help="model.drop_rate")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    xtr, ytr = load("train")
    xte, yte = load("t10k")
    cfg = ModelConfig(name=args.model, pretrained=False, drop_rate=args.drop_rate)
    model = create_model(cfg, num_classes=10, in_chans=1)
    model = model.to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=args.lr, momentum=0.9, nesterov=True)
    steps = len(xtr) // args.batch  # the last partial batch is dropped
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps, pct_start=0.25)
    log = []
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(xtr))
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(steps):
            idx = order[i * args.batch:(i + 1) * args.batch]
            x, y = xtr[idx], ytr[idx]
            flip = torch.rand(len(x)) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        acc, acc_tta = accuracy(model, xte, yte)
        log.append({"epoch": epoch, "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1),
                    "test_acc": acc, "test_acc_hflip_tta": acc_tta})
        print(json.dumps(log[-1]), flush=True)
    result = {"config": vars(args), "recipe": __doc__.split("\n\n")[1].replace("\n", " "), "epochs": log}
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results + [result], indent=1) + "\n")


if __name__ == "__main__":
    main()

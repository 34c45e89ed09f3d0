"""podium on a GPU side by side with a bare PyTorch loop, in one process on the same GPU (issue 13).

1. Training throughput, steady state: resnet50 and efficientnet_lite0 at --size px (224), fold 0 of 5 of a generated
   competition (--n-train training images, 8,192), batch 256, bf16 mixed (`precision: auto`), augment `light` and
   `heavy`. podium = `podium train` on that fold, as a user runs it. bare = a hand-written loop over the same decoded
   images (podium's cache) with the same network (podium.models.create_model), channels_last, bf16 autocast, fused
   AdamW, cosine per step, label smoothing 0.1, the same augmentation (light: flips and shifts on the GPU batch;
   heavy: the same albumentations per image in DataLoader workers with pinned memory) and, like podium, one pass
   over the fold's validation images per epoch. Each side runs once to warm up (cache, cuDNN autotuning, workers),
   then 1 epoch and 4 epochs: an epoch's time is (T4 - T1) / 3, which cancels every fixed cost (set-up, cache
   check, checkpoints, the OOF prediction; benchmarks/fixed_costs.py measures those).
2. Fashion-MNIST fold 0 end to end, competition folder -> submission, as a user runs it: `podium train CONFIG
   --folds 0` then `podium predict RUN --tta hflip`, each its own process (imports, cache build, training,
   prediction); seconds per command and test accuracy. Needs the Debian package's files (`make fashion-mnist`) or
   --fashion-dir pointing at a copy of them (the GPU machine has no network).

    python benchmarks/gpu.py                 # needs a CUDA GPU; writes benchmarks/results/gpu.json
    python benchmarks/gpu.py --dry-run       # CPU, tiny (32 px, 128 training images, 1 and 2 epochs): checks the
                                             # script end to end (14 min on 2 busy shared cores, mostly set-up);
                                             # writes benchmarks/work/gpu-dry-run.json only, never results/
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from provenance import write_results  # benchmarks/provenance.py: commit, machine, load, versions

from podium.augment import ItemPipeline, resolve, to_float, train_transform
from podium.commands.train import train
from podium.config import AugmentConfig, ModelConfig, from_dict, save_config
from podium.data import datasets
from podium.engine.fold import load_data
from podium.models import create_model

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "gpu.json"
DRY_RESULTS = HERE / "work" / "gpu-dry-run.json"
CLASSES = 10
TARGETS = {"podium_over_bare_light": 0.95, "heavy_over_light": 0.8, "fashion_seconds": 15, "fashion_accuracy": 0.93}


# ----------------------------------------------------------------------------------------------------- data


def _draw(args: tuple[int, int, str]) -> None:
    """A smooth random scene with a class-coloured disc (a learnable signal), saved as JPEG."""
    import cv2
    from PIL import Image

    i, size, path = args
    rng = np.random.default_rng(i)
    img = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    hue = np.array([(i % CLASSES) * 25, 255 - (i % CLASSES) * 25, 128], dtype=int)
    cv2.circle(img, tuple(int(c) for c in rng.integers(size // 4, 3 * size // 4, 2)), size // 5,
               tuple(int(c) for c in hue), thickness=-1)
    Image.fromarray(img).save(path, quality=90)


def write_competition(root: Path, n: int, size: int) -> Path:
    """root/images/<id>.jpg and root/train.csv (id, label) of n generated images."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    ids = [f"g{i:06d}" for i in range(n)]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(_draw, [(i, size, str(root / "images" / f"{ident}.jpg")) for i, ident in enumerate(ids)],
                      chunksize=64))
    pd.DataFrame({"id": ids, "label": [f"c{i % CLASSES}" for i in range(n)]}).to_csv(root / "train.csv", index=False)
    return root / "train.csv"


def podium_config(work: Path, model: str, augment: str, epochs: int, args):
    return from_dict({
        "name": f"{model}-{augment}-e{epochs}", "output_dir": str(work / "runs"),
        "data": {"train_csv": str(work / "data" / "train.csv"), "image_dir": str(work / "data" / "images"),
                 "image_size": args.size, "cache_dir": str(work / "cache")},
        "cv": {"n_folds": 5},
        "model": {"name": model, "pretrained": False},  # the weights change nothing in the speed (no network there)
        "augment": {"preset": augment},
        "train": {"epochs": epochs, "batch_size": args.batch, "eval_batch_size": args.eval_batch, "patience": 0},
    })


# ------------------------------------------------------------------------------------------ the two loops


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def podium_seconds(work: Path, model: str, augment: str, epochs: int, args) -> tuple[float, float]:
    """Wall time of `podium train` on fold 0 (from the config to the fold's OOF and metrics), and its CV."""
    cfg = podium_config(work, model, augment, epochs, args)
    _sync()
    t = time.perf_counter()
    metrics = train(cfg, folds=[0], overwrite=True)
    _sync()
    return time.perf_counter() - t, metrics["cv"]


class Batches(torch.utils.data.Dataset):
    """Whole batches of uint8 rows from the decoded images (what a bare loop over a memmap reads), through the
    per-image albumentations stage when there is one."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, rows: np.ndarray, pipeline: ItemPipeline | None):
        self.images, self.targets, self.rows, self.pipeline = images, targets, rows, pipeline

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions):
        rows = self.rows[np.asarray(positions)]
        x = np.asarray(self.images[np.sort(rows)])
        y = self.targets[np.sort(rows)]
        if self.pipeline is not None:
            x = self.pipeline(x, int(rows[0]))
        return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2), torch.from_numpy(y)


def _loader(ds: Batches, batch: int, shuffle: bool, workers: int, cuda: bool):
    order = torch.utils.data.RandomSampler(ds) if shuffle else torch.utils.data.SequentialSampler(ds)
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, pin_memory=cuda,
                                       sampler=torch.utils.data.BatchSampler(order, batch, drop_last=False),
                                       prefetch_factor=4 if workers else None)


def bare_seconds(data, model: str, augment: str, epochs: int, args) -> tuple[float, float]:
    """A bare loop's wall time for `epochs` epochs (train + validation pass), from building the network to the last
    validation score, and that score (accuracy)."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    fmt = torch.channels_last if cuda else torch.contiguous_format
    aug_cfg = AugmentConfig(preset=augment)
    aug = resolve(aug_cfg)
    targets = data.frame["target"].to_numpy()
    fold = data.frame["fold"].to_numpy()
    workers = min(16, os.cpu_count() or 1) if not args.dry_run else 0
    _sync()
    t = time.perf_counter()
    torch.manual_seed(0)
    net = create_model(ModelConfig(name=model, pretrained=False), CLASSES, 3).to(device, memory_format=fmt)
    opt = create_optimizer_v2(net, opt="adamw", lr=1e-3, weight_decay=0.05, **({"fused": True} if cuda else {}))
    pipeline = ItemPipeline(aug, 3, False) if aug.per_item() else None
    train_loader = _loader(Batches(data.images, targets, np.flatnonzero(fold != 0), pipeline), args.batch, True,
                           workers, cuda)
    val_loader = _loader(Batches(data.images, targets, np.flatnonzero(fold == 0), None), args.eval_batch, False,
                         workers, cuda)
    sched, _ = create_scheduler_v2(opt, sched="cosine", num_epochs=epochs, warmup_epochs=1, step_on_epochs=False,
                                   updates_per_epoch=len(train_loader))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    batch_ops = train_transform(aug_cfg)
    mean = torch.full((3,), 0.5, device=device)
    step, accuracy = 0, torch.zeros((), device=device)
    for _ in range(epochs):
        net.train()
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            x = batch_ops(to_float(x, mean, mean)).contiguous(memory_format=fmt)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = loss_fn(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            sched.step_update(step)
        net.eval()
        correct = torch.zeros((), device=device)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            for x, y in val_loader:
                x = to_float(x.to(device, non_blocking=True), mean, mean).contiguous(memory_format=fmt)
                correct += (net(x).argmax(1) == y.to(device, non_blocking=True)).sum()
        accuracy = correct / int((fold == 0).sum())
    score = float(accuracy)  # the one wait for the device, after the last epoch
    return time.perf_counter() - t, score


# --------------------------------------------------------------------------------------------- measures


def steady_state(run, epochs: tuple[int, int]) -> dict:
    """run(epochs) -> (seconds, score): warm-up, then the two lengths; an epoch's time is their difference."""
    run(epochs[0])
    t_short, _ = run(epochs[0])
    t_long, score = run(epochs[1])
    return {"seconds": {str(epochs[0]): round(t_short, 2), str(epochs[1]): round(t_long, 2)},
            "epoch_seconds": (t_long - t_short) / (epochs[1] - epochs[0]), "score": score}


def throughput(work: Path, args) -> dict:
    out: dict = {}
    for model in args.models:
        for augment in args.augments:
            row = {}
            row["podium"] = steady_state(lambda e: podium_seconds(work, model, augment, e, args), args.epochs)
            data = load_data(podium_config(work, model, augment, 1, args))  # the same decoded images podium read
            n_train = int((data.frame["fold"] != 0).sum())
            row["bare"] = steady_state(lambda e: bare_seconds(data, model, augment, e, args), args.epochs)
            for side in ("podium", "bare"):
                row[side]["train_images_per_second"] = round(n_train / row[side]["epoch_seconds"], 1)
            row["podium_over_bare"] = round(row["podium"]["train_images_per_second"]
                                            / row["bare"]["train_images_per_second"], 3)
            out.setdefault(model, {})[augment] = row
            print(model, augment, json.dumps(row), flush=True)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if {"light", "heavy"} <= set(out[model]):
            out[model]["heavy_over_light"] = {
                side: round(out[model]["heavy"][side]["train_images_per_second"]
                            / out[model]["light"][side]["train_images_per_second"], 3) for side in ("podium", "bare")}
    return out


def fashion_end_to_end(work: Path, args) -> dict:
    """`podium train --folds 0` and `podium predict --tta hflip` in their own processes, on a fresh cache."""
    source = Path(args.fashion_dir)
    if not source.exists():
        return {"skipped": f"no Fashion-MNIST files under {source} (make fashion-mnist, or --fashion-dir)"}
    datasets.FASHION_DIR = source
    comp = work / "fashion"
    datasets.make_dataset("fashion-mnist", comp, n=args.fashion_n)  # the competition folder: not timed
    cfg = from_dict({
        "name": "fmnist", "output_dir": str(work / "runs"),
        "data": {"train_csv": str(comp / "train.csv"), "test_csv": str(comp / "test.csv"),
                 "image_dir": str(comp / "images"), "sample_submission": str(comp / "sample_submission.csv"),
                 "image_size": 28, "cache_dir": str(work / "fashion-cache")},
        "cv": {"n_folds": 5},
        "model": {"name": "podium_cnn", "pretrained": False, "drop_rate": 0.0},
        "augment": {"hflip": True, "shift": 0.0},
        "train": {"epochs": args.fashion_epochs, "batch_size": 256, "optimizer": "sgd", "lr": 0.1,
                  "weight_decay": 5e-4, "warmup_epochs": 1, "patience": 0, "eval_batch_size": 1024},
    })
    config = work / "fashion.yaml"
    save_config(cfg, config)
    podium = [sys.executable, "-c", "from podium.cli import main; main()"]
    seconds = {}
    for step, cmd in (("train", [*podium, "train", str(config), "--folds", "0"]),
                      ("predict", [*podium, "predict", str(work / "runs" / "fmnist"), "--tta", "hflip"])):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        seconds[step] = round(time.perf_counter() - t, 2)
    sub = pd.read_csv(work / "runs" / "fmnist" / "submission.csv", dtype=str)
    truth = pd.read_csv(comp / "test_labels.csv", dtype=str).set_index("id")["label"]
    done = json.loads((work / "runs" / "fmnist" / "fold0" / "done.json").read_text())
    return {"seconds": round(sum(seconds.values()), 2), "seconds_by_command": seconds, "fold_seconds": done["seconds"],
            "test_accuracy": float((sub["label"].to_numpy() == truth.loc[sub["id"]].to_numpy()).mean()),
            "epochs": args.fashion_epochs, "train_images": int(len(pd.read_csv(comp / "train.csv")) * 0.8)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--n-train", type=int, default=8192, help="training images of fold 0 (of 5)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--eval-batch", type=int, default=512)
    ap.add_argument("--models", nargs="+", default=["resnet50", "efficientnet_lite0"])
    ap.add_argument("--augments", nargs="+", default=["light", "heavy"])
    ap.add_argument("--fashion-dir", default=str(datasets.FASHION_DIR))
    ap.add_argument("--fashion-n", type=int, default=None, help="Fashion-MNIST training images (default all 60,000)")
    ap.add_argument("--fashion-epochs", type=int, default=8)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny: checks the script, writes " + str(DRY_RESULTS))
    ap.add_argument("--out", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    args.epochs = (1, 4)
    if args.dry_run:
        args.size, args.n_train, args.batch, args.eval_batch, args.epochs = 32, 128, 32, 64, (1, 2)
        args.fashion_n, args.fashion_epochs = 1000, 1
    elif not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs a CUDA GPU (or --dry-run)")
    torch.backends.cudnn.benchmark = True
    work = Path(tempfile.mkdtemp(prefix="podium-gpu-"))
    t0 = time.perf_counter()
    write_competition(work / "data", args.n_train * 5 // 4, args.size)
    print(f"generated {args.n_train * 5 // 4} images in {time.perf_counter() - t0:.0f} s", flush=True)
    rows = throughput(work, args)
    fashion = fashion_end_to_end(work, args)
    print("fashion_mnist_fold0", json.dumps(fashion), flush=True)
    result = {"benchmark": "gpu", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "settings": {k: v for k, v in vars(args).items() if k not in ("out", "fashion_dir")},
              "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (dry run)",
              "torch": torch.__version__, "cpu_count": os.cpu_count(), "throughput": rows,
              "fashion_mnist_fold0": fashion, "targets": TARGETS}
    result = write_results(DRY_RESULTS if args.dry_run else RESULTS, result)
    if args.out:
        write_results(args.out / "gpu.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "provenance"}, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

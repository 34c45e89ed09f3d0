"""S2's situation: clean training images, a test set that is rotated, flipped, noisy and colour-shifted.

Data: `podium datasets make fashion-noisy` with --n training images (a random subset of Fashion-MNIST's 60,000,
clean 28x28 grayscale) and the official 10,000 test images corrupted (random rot90, flips, contrast/brightness,
colour cast, Gaussian noise; RGB, read as grayscale like the training images). One model and one budget for every
row: fold 0 of a stratified 5-fold split, the same seed, network, optimiser and epochs; only augment.preset differs.
Each row is scored on the corrupted test set (through `podium predict`) and on the same 10,000 images clean.

    .venv/bin/python benchmarks/noisy_test.py [--n 12000] [--epochs 10] [--presets none,medium,documents] [--reuse]

Every row is trained afresh on the code being measured; --reuse keeps a finished row trained with the same config
(quicker, but then the figures come from whichever code trained it).

Target: `documents` recovers >= 90% of the clean-test macro-F1 (the reference: the `none` row on the clean test,
a model trained and tested as usual) on the corrupted test, while `none` collapses there.
Writes benchmarks/results/noisy_test.json: every row's scores, seconds, the load average and its config.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from provenance import write_results  # benchmarks/provenance.py: commit, machine, load, versions

from podium.commands.predict import predict
from podium.commands.train import run_dir, train
from podium.config import from_dict, to_yaml
from podium.data.datasets import FASHION_CLASSES, load_fashion_mnist, make_dataset
from podium.data.splits import make_folds_file
from podium.engine.predict import load_fold_module, predict_probs
from podium.metrics import METRICS
from podium.tasks.check import check_config

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "noisy_test.json"


def config(args, work: Path, preset: str):
    return check_config(from_dict({
        "name": f"noisy-{preset}", "output_dir": str(HERE / "work" / "runs"),
        "data": {"train_csv": str(work / "train.csv"), "test_csv": str(work / "test.csv"),
                 "image_dir": str(work / "images"), "sample_submission": str(work / "sample_submission.csv"),
                 "image_size": 28, "cache_dir": str(HERE / "work" / "cache")},
        "cv": {"n_folds": 5, "metric": "f1_macro"},
        "model": {"name": args.model, "pretrained": False},
        "augment": {"preset": preset},
        "train": {"epochs": args.epochs, "batch_size": args.batch, "optimizer": "sgd", "lr": args.lr,
                  "weight_decay": 5e-4, "warmup_epochs": 1, "patience": 0, "eval_batch_size": 1024},
    }))  # checked (loss_args filled) as `podium train` saves it: a run of these settings compares equal


def scores(y: np.ndarray, probs: np.ndarray) -> dict:
    return {name: METRICS[name].fn(y, probs) for name in ("f1_macro", "accuracy")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=12000, help="training images (a random subset of the 60,000)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--model", default="podium_cnn_s")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--presets", default="none,medium,documents")
    ap.add_argument("--reuse", action="store_true", help="keep a finished row trained with the same config")
    args = ap.parse_args()
    work = HERE / "work" / f"fashion-noisy-n{args.n}"
    if not (work / "train.csv").exists():
        make_dataset("fashion-noisy", work, n=args.n, seed=0)
    truth = pd.read_csv(work / "test_labels.csv", dtype={"id": str}).set_index("id")["label"]
    index = {c: i for i, c in enumerate(FASHION_CLASSES)}
    clean_x = load_fashion_mnist()[2][..., None]  # the same 10,000 test images, in test.csv's order, uncorrupted
    rows, t_all = {}, time.time()
    for preset in args.presets.split(","):
        t0 = time.time()
        cfg = config(args, work, preset)
        make_folds_file(cfg)
        rd = run_dir(cfg)
        same = args.reuse and (rd / "config.yaml").exists() and (rd / "config.yaml").read_text() == to_yaml(cfg)
        metrics = train(cfg, folds=[0], resume=same, overwrite=not same)
        predict(rd, overwrite=True)
        probs = pd.read_csv(rd / "test_probs.csv", dtype={"id": str}).set_index("id")
        y = truth.loc[probs.index].map(index).to_numpy()
        noisy = scores(y, probs[FASHION_CLASSES].to_numpy())
        classes = json.loads((rd / "classes.json").read_text())  # the probabilities' column order (sorted names)
        module = load_fold_module(cfg, rd, 0, len(classes), 1)
        clean_p = predict_probs(module, clean_x, np.arange(len(clean_x)), cfg.train.eval_batch_size)
        clean_p = clean_p[:, [classes.index(c) for c in FASHION_CLASSES]]
        clean = scores(truth.map(index).to_numpy(), clean_p)  # test_labels.csv is in test.csv's (= the array's) order
        done = json.loads((rd / "fold0" / "done.json").read_text())
        rows[preset] = {"corrupted": noisy, "clean": clean, "oof_f1_macro": metrics["cv"],
                        "train_seconds": done["seconds"], "seconds": round(time.time() - t0, 1),
                        "config": cfg.model_dump(mode="json")}
        print(f"{preset:10s} macro-F1 corrupted {noisy['f1_macro']:.4f}  clean {clean['f1_macro']:.4f}  "
              f"(OOF {metrics['cv']:.4f}, fold trained in {done['seconds']:.0f} s)", flush=True)
    write(rows, args, time.time() - t_all)


def write(rows: dict, args, seconds: float) -> None:
    reference = rows.get("none", {}).get("clean", {}).get("f1_macro")
    recovered = {p: r["corrupted"]["f1_macro"] / reference for p, r in rows.items()} if reference else {}
    out = {"benchmark": "noisy_test", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": vars(args),
           "data": f"fashion-noisy, {args.n} clean training images, fold 0 of 5; test: official 10,000 corrupted "
                   "(and clean)",
           "torch_threads": torch.get_num_threads(), "load_average_1_5_15": os.getloadavg(),
           "wall_seconds": round(seconds, 1), "train_seconds_total": sum(r["train_seconds"] for r in rows.values()),
           "reference_clean_f1_macro": reference,
           "share_of_clean_f1_macro": recovered, "rows": rows,
           "target": "documents corrupted macro-F1 >= 0.9 x reference (none on clean test); none collapses",
           "target_met": bool(recovered) and recovered.get("documents", 0) >= 0.9}
    out = write_results(RESULTS, out)
    print("\n| augment.preset | macro-F1, corrupted test | macro-F1, clean test | corrupted / reference | train s |")
    print("|---|---|---|---|---|")
    for p, r in rows.items():
        share = f"{recovered[p]:.0%}" if recovered else "-"
        print(f"| {p} | {r['corrupted']['f1_macro']:.4f} | {r['clean']['f1_macro']:.4f} | {share} | "
              f"{r['train_seconds']:.0f} |")
    print(f"reference (none, clean test): {reference}; target met: {out['target_met']}; wrote {RESULTS}")


if __name__ == "__main__":
    main()

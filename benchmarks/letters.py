"""S0's task offline: which of 26 letters appear in an image, scored by per-label accuracy on held-out labels.

Data: `podium datasets make letters` (5,000 train / 1,000 test 256x256 RGB images, 10-15 distinct letters each in
matplotlib's DejaVu fonts over a noisy background; test labels in test_labels.csv, never read by training).
One run: pretrained efficientnet_lite0 (offline ImageNet weights), images decoded to --size px, multi-label
stratified 5-fold split, fold 0 trained (4,000 images, 1,000 validating), BCE-with-logits, per-class thresholds
fitted on the OOF, then predicted on the 1,000 test images. Target (issue 4): per-label accuracy >= 0.95.

    .venv/bin/python benchmarks/letters.py [--size 128] [--epochs 20] [--lr 3e-3] [--folds 0]

Writes benchmarks/results/letters.json: OOF and test per-label accuracy, exact match, F1, timings.
"""

from __future__ import annotations

import argparse
import json
import os
import string
import time
from pathlib import Path

import pandas as pd
import torch
from provenance import write_results  # benchmarks/provenance.py: commit, machine, load, versions

from podium.commands.predict import predict
from podium.commands.train import run_dir, train
from podium.config import from_dict
from podium.data.datasets import make_dataset
from podium.data.splits import make_folds_file

HERE = Path(__file__).parent
WORK = HERE / "work" / "letters"
RESULTS = HERE / "results" / "letters.json"
LETTERS = list(string.ascii_lowercase)


def config(args) -> dict:
    return {
        "name": f"letters-{args.model}-{args.size}-e{args.epochs}",
        "output_dir": str(HERE / "work" / "runs"),
        "data": {"task": "multilabel", "label_col": LETTERS, "train_csv": str(WORK / "train.csv"),
                 "test_csv": str(WORK / "test.csv"), "image_dir": str(WORK / "images"),
                 "sample_submission": str(WORK / "sample_submission.csv"), "image_size": args.size,
                 "cache_dir": str(HERE / "work" / "cache")},
        "cv": {"strategy": "multilabel", "n_folds": 5, "metric": "per_label_accuracy"},
        "model": {"name": args.model, "pretrained": True},
        "augment": {"hflip": False, "shift": 0.05},  # letters are not mirror-symmetric
        "train": {"epochs": args.epochs, "batch_size": args.batch, "lr": args.lr, "warmup_epochs": 1,
                  "patience": 0, "eval_batch_size": 128},
    }


def test_scores(run: Path) -> dict:
    sub = pd.read_csv(run / "submission.csv", dtype={"id": str}).set_index("id")
    truth = pd.read_csv(WORK / "test_labels.csv", dtype={"id": str}).set_index("id").loc[sub.index]
    pred, y = sub[LETTERS].to_numpy().astype(int), truth[LETTERS].to_numpy().astype(int)
    from sklearn.metrics import f1_score

    return {"per_label_accuracy": float((pred == y).mean()), "exact_match": float((pred == y).all(1).mean()),
            "f1_micro": float(f1_score(y, pred, average="micro")),
            "f1_macro": float(f1_score(y, pred, average="macro")), "n": len(sub)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--folds", default="0", help="comma-separated folds to train (all five: 0,1,2,3,4)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="the results file written")
    args = ap.parse_args()
    t0 = time.time()
    if not (WORK / "train.csv").exists():
        make_dataset("letters", WORK)
    t_data = time.time() - t0
    cfg = from_dict(config(args))
    make_folds_file(cfg, overwrite=True)
    t1 = time.time()
    metrics = train(cfg, folds=[int(k) for k in args.folds.split(",")], overwrite=True)
    t_train = time.time() - t1
    t2 = time.time()
    predict(run_dir(cfg), overwrite=True)
    t_predict = time.time() - t2
    test = test_scores(run_dir(cfg))
    thresholds = (json.loads((run_dir(cfg) / "thresholds.json").read_text())
                  if (run_dir(cfg) / "thresholds.json").exists() else None)
    out = {"benchmark": "letters", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": vars(args),
           "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg(),
           "oof": metrics.get("oof"), "thresholds": thresholds, "test": test,
           "seconds": {"data": round(t_data, 1), "train": round(t_train, 1), "predict": round(t_predict, 1),
                       "total": round(time.time() - t0, 1)},
           "target": {"per_label_accuracy": 0.95}, "target_met": test["per_label_accuracy"] >= 0.95}
    write_results(args.out, out)
    print(f"OOF per-label accuracy {metrics['oof'].get('per_label_accuracy', float('nan')):.4f}; test per-label "
          f"accuracy {test['per_label_accuracy']:.4f}, exact match {test['exact_match']:.4f}, F1 micro "
          f"{test['f1_micro']:.4f}; train {t_train:.0f} s, predict {t_predict:.0f} s, total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()

"""Leakage: CV with folds split by image overstates the test score; folds split by person do not (S1/S4).

Data: `podium datasets make profiles` (the S1/S4 stand-in: 7 pictures per person over the person's own background;
mask state from a drawn shape, gender and age readable but noisy from the face, given away exactly by the person),
--persons train persons x 7 pictures at --size px, as many new persons held out as the test set (many, so the true
score is measured closely). One model and one budget for both rows: the 18-class single head (label = 6 mask +
3 gender + age), all --n-folds folds (3 by default, to fit ~12 minutes on 2 CPU cores), the same seed, network,
optimiser and epochs. Rows:

  kfold   folds split by image: every person's pictures spread over the folds (what S1 first did)
  group   folds split by person (cv.strategy group, cv.group_col person): no person in two folds

Each row: CV (OOF accuracy over the folds), the true accuracy on the new test persons (fold models averaged),
and the gap; plus the same split into mask / gender / age accuracy, and what `podium data check` says about the
row's folds file (group-across-folds findings).

    .venv/bin/python benchmarks/leakage.py [--persons 200] [--size 48] [--epochs 10] [--n-folds 3]

Writes benchmarks/results/leakage.json: both rows, the settings, the load average and the configs.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from provenance import write_results  # benchmarks/provenance.py: commit, machine, load, versions

from podium.commands.predict import predict
from podium.commands.train import run_dir, train
from podium.config import from_dict
from podium.data.leakage import groups_across_folds, read_current_folds
from podium.data.scenarios.profiles import make_profiles
from podium.data.sources import train_table
from podium.data.splits import make_folds_file

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "leakage.json"
STRATEGIES = {"kfold": {"strategy": "kfold"}, "group": {"strategy": "group", "group_col": "person"}}


def config(args, work: Path, strategy: str):
    return from_dict({
        "name": f"profiles-{strategy}", "output_dir": str(work / "runs"),
        "data": {"train_csv": str(work / "train.csv"), "test_csv": str(work / "test.csv"),
                 "image_dir": str(work / "images"), "sample_submission": str(work / "sample_submission.csv"),
                 "label_col": "label", "classes": [str(c) for c in range(18)], "image_size": args.size,
                 "cache_dir": str(work / "cache")},
        # group_col on both rows so data check can say which persons span folds; only `group` splits by it
        "cv": {**STRATEGIES[strategy], "group_col": "person", "n_folds": args.n_folds,
               "folds_file": str(work / f"folds_{strategy}.csv")},
        "model": {"name": args.model, "pretrained": False},
        "augment": {"hflip": True},
        "train": {"epochs": args.epochs, "batch_size": args.batch, "lr": args.lr, "warmup_epochs": 1, "patience": 0,
                  "seed": args.seed},
    }, f"leakage {strategy} config")


def task_accuracy(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Accuracy of the 18-class label and of the three tasks it encodes (6 mask + 3 gender + age)."""
    parts = {"label": lambda y: y, "mask": lambda y: y // 6, "gender": lambda y: (y % 6) // 3, "age": lambda y: y % 3}
    return {k: float((f(pred) == f(truth)).mean()) for k, f in parts.items()}


def scores(rd: Path, work: Path) -> tuple[dict, dict]:
    """(OOF, test) accuracies of a trained run, label and per task."""
    oof = pd.read_csv(rd / "oof.csv", dtype={"id": str})
    classes = [str(c) for c in range(18)]
    cv = task_accuracy(oof[classes].to_numpy().argmax(1), oof["label"].astype(int).to_numpy())
    predict(rd, tta="none")
    probs = pd.read_csv(rd / "test_probs.csv", dtype={"id": str}).set_index("id")
    truth = pd.read_csv(work / "test_labels.csv", dtype={"id": str}).set_index("id")["label"].loc[probs.index]
    return cv, task_accuracy(probs[classes].to_numpy().argmax(1), truth.to_numpy())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=200, help="train persons (x 7 pictures); as many new ones in test")
    ap.add_argument("--size", type=int, default=48, help="image side (px), drawn and trained")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--n-folds", type=int, default=3)
    ap.add_argument("--model", default="podium_cnn_s")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0, help="data and training seed")
    ap.add_argument("--folds", default=None, help="train only these folds, e.g. 0 (a quick look; CV over them only)")
    args = ap.parse_args()
    t_start, load_before = time.time(), os.getloadavg()
    work = HERE / "work" / f"profiles-{args.persons}x7-{args.size}px-s{args.seed}-t{args.persons}"
    if not (work / "train.csv").exists():
        make_profiles(work, n=7 * args.persons, seed=args.seed, size=args.size, n_test_persons=args.persons)
    rows = {}
    for strategy in STRATEGIES:
        t0 = time.time()
        cfg = config(args, work, strategy)
        make_folds_file(cfg, overwrite=True)
        spans = len(groups_across_folds(train_table(cfg).frame, read_current_folds(cfg)[1], "person", "folds"))
        train(cfg, folds=[int(k) for k in args.folds.split(",")] if args.folds else None, overwrite=True)
        cv, test = scores(run_dir(cfg), work)
        rows[strategy] = {"cv": cv, "test": test, "gap": cv["label"] - test["label"],
                          "data_check_group_findings": spans, "seconds": round(time.time() - t0, 1),
                          "config": cfg.model_dump(mode="json")}
        print(f"{strategy:6s} CV {cv['label']:.4f}  test {test['label']:.4f}  gap {cv['label'] - test['label']:+.4f}  "
              f"(mask/gender/age CV {cv['mask']:.3f}/{cv['gender']:.3f}/{cv['age']:.3f}, test {test['mask']:.3f}/"
              f"{test['gender']:.3f}/{test['age']:.3f}; {time.time() - t0:.0f} s)", flush=True)
    out = {"benchmark": "leakage", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": vars(args),
           "data": f"profiles: {args.persons} train persons x 7 at {args.size} px, {args.persons} new test persons",
           "torch_threads": torch.get_num_threads(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
           "wall_seconds": round(time.time() - t_start, 1), "rows": rows,
           "kfold_overstates": rows["kfold"]["gap"] > 0.05, "group_close": abs(rows["group"]["gap"]) < 0.03}
    out = write_results(RESULTS, out)
    print("\n| folds | CV (OOF accuracy) | test accuracy (new persons) | gap | persons in >1 fold |")
    print("|---|---|---|---|---|")
    for strategy, r in rows.items():
        print(f"| {strategy} | {r['cv']['label']:.4f} | {r['test']['label']:.4f} | {r['gap']:+.4f} | "
              f"{r['data_check_group_findings']} |")
    print(f"wall {out['wall_seconds']:.0f} s, load average {load_before[0]:.1f} -> {out['loadavg_after'][0]:.1f}")


if __name__ == "__main__":
    main()

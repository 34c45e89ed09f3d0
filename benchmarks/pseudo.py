"""Learning from the test set and from the ensemble (issue 17): baseline vs pseudo-labels vs OOF distillation vs both.

Data: `podium datasets make fashion-noisy` with --n labeled training images (clean Fashion-MNIST) and the official
10,000 test images corrupted (rotated, flipped, noisy, colour-shifted: S2's situation). The corrupted test images are
the unlabeled pool, as in a competition where the test images are given; their labels are held out and only score.

One budget per row: the same folds (K = --folds), seed, network, augmentation (--augment) and epochs.
  baseline      all K folds (the teacher's OOF and the pseudo-labels' source need them); scored by its fold-0 model
  pseudo        `podium pseudo baseline --threshold T`: the pool images whose top probability (the K-fold average)
                reaches T join the training folds as hard labels (fold TRAIN_ONLY); fold 0 trained
  distill       train.soft_targets=baseline, train.soft_alpha=A; fold 0 trained
  both          the two together; fold 0 trained
  seed          the baseline again with train.seed=1, fold 0: how much training noise alone moves the test score
Every row is scored by its fold-0 model on the corrupted test (accuracy, macro-F1) with the difference to the baseline
and its paired standard error (per-image for accuracy, a paired bootstrap for macro-F1), and on fold 0's validation
images (the same for every row). T and A are fixed before any run (0.9: `podium pseudo`'s default; 0.3: the issue's
and Plant Pathology 2020's 1st place); nothing is chosen on the test labels.

    .venv/bin/python benchmarks/pseudo.py [--n 2000] [--folds 3] [--epochs 5] [--pool-size 2000] [--threshold 0.9]
                                          [--alpha 0.3]     (the issue's size: --n 6000 --pool-size 10000)

Writes benchmarks/results/pseudo.json.
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
from podium.commands.pseudo import pseudo
from podium.commands.train import run_dir, train
from podium.config import from_dict, parse_overrides, to_yaml
from podium.data.cache import build_cache
from podium.data.datasets import make_dataset
from podium.data.sources import load_test
from podium.data.splits import make_folds_file
from podium.engine.predict import load_fold_module, predict_probs
from podium.metrics import METRICS
from podium.run.rundir import RunDir
from podium.tasks.check import check_config

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "pseudo.json"


def config(args, work: Path, name: str, data: dict | None = None, train_extra: dict | None = None):
    return check_config(from_dict({
        "name": name, "output_dir": str(HERE / "work" / "runs-pseudo"),
        "data": {"train_csv": str(work / "train.csv"), "test_csv": str(work / "test.csv"),
                 "image_dir": str(work / "images"), "sample_submission": str(work / "sample_submission.csv"),
                 "image_size": 28, "cache_dir": str(HERE / "work" / "cache"), **(data or {})},
        "cv": {"n_folds": args.folds, "metric": "accuracy"},
        "model": {"name": args.model, "pretrained": False},
        "augment": augment_settings(args.augment),
        "train": {"epochs": args.epochs, "batch_size": args.batch, "optimizer": "adamw", "lr": args.lr,
                  "warmup_epochs": 0, "patience": 0, "eval_batch_size": 1024,
                  **(train_extra or {})},
    }))


def reusable(args, cfg, folds: int) -> bool:
    """--reuse: the run exists with this very config and its first `folds` folds finished (then not retrained)."""
    rd = RunDir(run_dir(cfg))
    return (args.reuse and rd.config.is_file() and rd.config.read_text() == to_yaml(cfg)
            and all(rd.fold_dir(k).is_done() for k in range(folds)))


def augment_settings(text: str) -> dict:
    """'preset=light,rot90=true' -> {'preset': 'light', 'rot90': True} (values read as YAML)."""
    return {k: v for k, v in parse_overrides([p for p in text.split(",") if p])}


def fold0_test_probs(cfg, run: Path, images: np.ndarray) -> np.ndarray:
    rd = RunDir(run)
    module = load_fold_module(cfg, run, 0, len(rd.classes()), rd.info()["channels"])
    return predict_probs(module, images, np.arange(len(images)), cfg.train.eval_batch_size)


def paired(y: np.ndarray, base: np.ndarray, row: np.ndarray, boot: int = 300) -> dict:
    """Accuracy and macro-F1 of `row`, and their differences to `base` with paired standard errors."""
    f1 = METRICS["f1_macro"].fn
    hit_b, hit_r = base.argmax(1) == y, row.argmax(1) == y
    d = hit_r.astype(float) - hit_b
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(y), len(y)) for _ in range(boot)]
    f1_diffs = [f1(y[i], row[i]) - f1(y[i], base[i]) for i in draws]
    return {"accuracy": float(hit_r.mean()), "f1_macro": float(f1(y, row)),
            "accuracy_diff": float(d.mean()), "accuracy_diff_se": float(d.std(ddof=1) / np.sqrt(len(y))),
            "f1_macro_diff": float(f1(y, row) - f1(y, base)), "f1_macro_diff_se": float(np.std(f1_diffs, ddof=1))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="labeled training images (a random subset of the 60,000)")
    ap.add_argument("--folds", type=int, default=3, help="K: the baseline trains all K (teacher OOF, pseudo source)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--model", default="podium_cnn_s")
    ap.add_argument("--augment", default="preset=light,rot90=true,vflip=true",
                    help="augment.* for every row; the default's flips and rot90 are whole-batch tensor operations "
                         "(cheap on 2 cores), against the corrupted test's rotations and flips")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3, help="AdamW's peak lr: learns in few steps, as 2 cores need")
    ap.add_argument("--threshold", type=float, default=0.9, help="podium pseudo --threshold, fixed a priori")
    ap.add_argument("--alpha", type=float, default=0.3, help="train.soft_alpha, fixed a priori")
    ap.add_argument("--pool-size", type=int, default=2000,
                    help="unlabeled pool: this many of the corrupted test images (random, seed 0; predicted by the "
                         "baseline's folds via --pool); every row is still scored on all 10,000")
    ap.add_argument("--reuse", action="store_true", help="keep a finished run trained with the same config (quicker; "
                    "its figures then come from whichever code trained it)")
    args = ap.parse_args()
    work = HERE / "work" / f"fashion-noisy-n{args.n}"
    if not (work / "train.csv").exists():
        make_dataset("fashion-noisy", work, n=args.n, seed=0)
    t_all = time.time()
    base_cfg = config(args, work, "baseline")
    make_folds_file(base_cfg)
    base = run_dir(base_cfg)
    seconds = {}
    t0 = time.time()
    if not reusable(args, base_cfg, args.folds):
        train(base_cfg, overwrite=True)
        if args.pool_size >= 10000:
            predict(base, overwrite=True)  # the K-fold average on the test set: what `podium pseudo` reads
    seconds["baseline"] = round(time.time() - t0, 1)
    out = HERE / "work" / "pseudo-labels"
    test = load_test(base_cfg)
    pool = None
    if args.pool_size < len(test):  # a random share of the test images as the pool: less to train on 2 cores
        pool = HERE / "work" / f"pool-{args.pool_size}.csv"
        test[["id"]].sample(n=args.pool_size, random_state=0).sort_values("id").to_csv(pool, index=False)
    made = pseudo(base, out, threshold=str(args.threshold), pool=pool, overwrite=True)
    rows = {"baseline": base_cfg,
            "pseudo": config(args, work, "pseudo", data={"pseudo": str(out)}),
            "distill": config(args, work, "distill", train_extra={"soft_targets": str(base),
                                                                   "soft_alpha": args.alpha}),
            "both": config(args, work, "both", data={"pseudo": str(out)},
                           train_extra={"soft_targets": str(base), "soft_alpha": args.alpha}),
            "seed": config(args, work, "seed", train_extra={"seed": 1})}  # the baseline again: training noise
    truth = pd.read_csv(work / "test_labels.csv", dtype={"id": str}).set_index("id")["label"]
    classes = RunDir(base).classes()
    y = truth.loc[test["id"]].map({c: i for i, c in enumerate(classes)}).to_numpy()
    kept = pd.read_csv(out / "pseudo.csv", dtype={"id": str, "source_id": str})
    pseudo_acc = float((truth.loc[kept["source_id"]].to_numpy() == kept["label"].to_numpy()).mean())
    images = build_cache(list(test["path"]), 28, "resize", RunDir(base).info()["channels"], base_cfg.cache_dir()).images
    probs, results = {}, {}
    for name, cfg in rows.items():
        t0 = time.time()
        if name != "baseline":
            if not reusable(args, cfg, 1):
                train(cfg, folds=[0], overwrite=True)
            seconds[name] = round(time.time() - t0, 1)
        run = run_dir(cfg)
        probs[name] = fold0_test_probs(cfg, run, images)
        metrics = RunDir(run).metrics()
        results[name] = {**paired(y, probs["baseline"], probs[name]), "seconds": seconds[name],
                         "fold0_val_accuracy": metrics["folds"]["fold0"]["cv"],
                         "train_seconds": RunDir(run).done(0)["seconds"]}
        r = results[name]
        print(f"{name:9s} test acc {r['accuracy']:.4f} ({r['accuracy_diff']:+.4f} +- {r['accuracy_diff_se']:.4f})  "
              f"macro-F1 {r['f1_macro']:.4f} ({r['f1_macro_diff']:+.4f} +- {r['f1_macro_diff_se']:.4f})  "
              f"fold-0 val acc {r['fold0_val_accuracy']:.4f}", flush=True)
    base_kfold = None if pool is not None else METRICS["accuracy"].fn(
        y, pd.read_csv(base / "test_probs.csv", dtype={"id": str}).set_index("id").loc[test["id"], classes].to_numpy())
    result = {"benchmark": "pseudo", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": vars(args),
              "data": f"fashion-noisy: {args.n} clean labeled images, {args.folds} folds; test: the official 10,000 "
                      f"test images corrupted (labels held out, used only to score); pool: {args.pool_size} of them",
              "pseudo_labels": {"kept": made.record["kept"], "pool": made.record["pool_images"],
                                "accuracy_of_kept_labels": pseudo_acc,
                                "per_class_kept": {c: v["kept"] for c, v in made.record["per_class"].items()}},
              "baseline_kfold_test_accuracy": base_kfold, "rows": results,
              "torch_threads": torch.get_num_threads(), "load_average_1_5_15": os.getloadavg(),
              "wall_seconds": round(time.time() - t_all, 1)}
    write_results(RESULTS, result)
    print(f"pseudo-labels: {made.record['kept']} of {made.record['pool_images']} pool images kept at "
          f"{args.threshold}, {pseudo_acc:.1%} of them correct (held-out labels); baseline's {args.folds}-fold "
          f"average on test: {base_kfold}; wrote {RESULTS} in {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()

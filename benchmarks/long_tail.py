"""Long tails: which loss, sampler or correction to use, measured side by side on fashion-lt (imbalance 100).

Data: `podium datasets make fashion-lt` (Fashion-MNIST cut to 6,000 ... 60 training images per class, the
CIFAR-10-LT protocol; 14,886 images), the official balanced 10,000-image test set held out: accuracy on it *is*
balanced accuracy. One model and one budget for every row: fold 0 of a stratified 5-fold split (11,908 training
images, 2,978 validating), the same seed, network, optimiser, epochs and augmentation; the best epoch is chosen
on validation balanced accuracy (cv.metric). Rows:

  ce                 plain cross-entropy (label smoothing 0, as in the literature's baseline)
  weighted_ce        cross-entropy weighted by inverse class frequency (weighted_ce's default)
  focal              focal loss, gamma 2
  balanced_softmax   cross-entropy of logits + log prior (Ren et al. 2020)
  ldam_drw           LDAM margins on a cosine head, re-weighting from 80% of the epochs (Cao et al. 2019)
  logit_adjust       the ce run's probabilities with a post-hoc logit adjustment, tau fitted on its OOF
  class_balanced     cross-entropy with the class-balanced sampler
  crt                the ce run's backbone, classifier retrained with class-balanced sampling (Kang et al. 2020)

    make fashion-mnist && .venv/bin/python benchmarks/long_tail.py [--epochs 12] [--rows ce,balanced_softmax]

Writes benchmarks/results/long_tail.json: every row's test and OOF scores, seconds, and the config that made it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from provenance import provenance, write_results  # benchmarks/provenance.py: commit, machine, load, versions

from podium.commands.predict import predict
from podium.commands.train import run_dir, train
from podium.config import from_dict
from podium.data.datasets import FASHION_CLASSES, make_dataset
from podium.data.splits import make_folds_file
from podium.metrics import METRICS
from podium.run.decisions import fit_run

HERE = Path(__file__).parent
WORK = HERE / "work" / "fashion-lt"
RESULTS = HERE / "results" / "long_tail.json"
RAREST = FASHION_CLASSES[-3:]  # Sneaker 166, Bag 100, Ankle boot 60 training images

CE = {"loss": "cross_entropy", "loss_args": {"label_smoothing": 0.0}}
# row -> config overrides on top of the base (None: post-hoc on the ce run, no training of its own)
ROWS: dict[str, dict | None] = {
    "ce": {"train": CE},
    "weighted_ce": {"train": {"loss": "weighted_ce", "loss_args": {"weights": "inverse"}}},
    "focal": {"train": {"loss": "focal", "loss_args": {"gamma": 2.0}}},
    "balanced_softmax": {"train": {"loss": "balanced_softmax"}},
    "ldam_drw": {"train": {"loss": "ldam"}, "model": {"head": "cosine", "head_scale": 30.0}},
    "logit_adjust": None,
    "class_balanced": {"train": {**CE, "sampler": "class_balanced"}},
    "crt": {"train": {**CE, "stage": "classifier", "sampler": "class_balanced"}},  # + init_from, epochs: below
}


def base(args) -> dict:
    return {
        "output_dir": str(HERE / "work" / "runs"),
        "data": {"train_csv": str(WORK / "train.csv"), "test_csv": str(WORK / "test.csv"),
                 "image_dir": str(WORK / "images"), "sample_submission": str(WORK / "sample_submission.csv"),
                 "image_size": 28, "cache_dir": str(HERE / "work" / "cache")},
        "cv": {"n_folds": 5, "metric": "balanced_accuracy"},
        "model": {"name": args.model, "pretrained": False},
        "augment": {"hflip": True, "shift": 0.0},
        "train": {"epochs": args.epochs, "batch_size": args.batch, "optimizer": "sgd", "lr": args.lr,
                  "weight_decay": 5e-4, "warmup_epochs": 1, "patience": 0, "eval_batch_size": 1024},
    }


def merge(a: dict, b: dict) -> dict:
    return {**a, **{k: merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
                    for k, v in b.items()}}


def test_scores(run: Path, posthoc: bool, tta: str) -> dict:
    predict(run, tta=tta, posthoc=posthoc)
    probs = pd.read_csv(run / "test_probs.csv", dtype={"id": str}).set_index("id")
    truth = pd.read_csv(WORK / "test_labels.csv", dtype={"id": str}).set_index("id")["label"].loc[probs.index]
    y = truth.map({c: i for i, c in enumerate(FASHION_CLASSES)}).to_numpy()
    p = probs[FASHION_CLASSES].to_numpy()
    pred = p.argmax(1)
    recall = {c: float((pred[y == i] == i).mean()) for i, c in enumerate(FASHION_CLASSES)}
    return {"balanced_accuracy": METRICS["balanced_accuracy"].fn(y, p), "f1_macro": METRICS["f1_macro"].fn(y, p),
            "f1_weighted": METRICS["f1_weighted"].fn(y, p),
            "recall_rarest3": float(np.mean([recall[c] for c in RAREST])), "recall": recall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--crt-epochs", type=int, default=4)
    ap.add_argument("--model", default="podium_cnn_s")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--tta", default="hflip")
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of: " + ", ".join(ROWS))
    args = ap.parse_args()
    if not (WORK / "train.csv").exists():
        make_dataset("fashion-lt", WORK, imbalance=100)
    rows = [r for r in ROWS if r in args.rows.split(",")]
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    same = {k: v for k, v in old.get("settings", {}).items() if k != "rows"} == {
        k: v for k, v in vars(args).items() if k != "rows"}
    results = old["rows"] if same else {}  # rows measured earlier with the same settings are kept
    for kept in results.values():  # each row carries the provenance of the run that measured it (None: unknown)
        kept.setdefault("provenance", None)
    ce_cfg = from_dict(merge(base(args), {**ROWS["ce"], "name": "lt-ce"}))
    make_folds_file(ce_cfg)
    for row in rows:
        t0 = time.time()
        spec = ROWS[row]
        if spec is None:  # post-hoc logit adjustment of the ce run
            cfg, rd = ce_cfg, run_dir(ce_cfg)
            params = fit_run(rd, "logit_adjust", "balanced_accuracy")
            extra = {"tau": params["tau"], "oof_before": params["oof_before"]["balanced_accuracy"],
                     "oof_after": params["oof_after"]["balanced_accuracy"]}
            cv = params["oof_after"]["balanced_accuracy"]
            scores = test_scores(rd, posthoc=True, tta=args.tta)
            (rd / "posthoc.json").unlink()  # the ce row itself is scored without it
        else:
            raw = merge(base(args), {**spec, "name": f"lt-{row}"})
            if row == "crt":
                raw = merge(raw, {"train": {"init_from": str(run_dir(ce_cfg)), "epochs": args.crt_epochs,
                                            "warmup_epochs": 0}})
            cfg = from_dict(raw)
            metrics = train(cfg, folds=[0], overwrite=True)
            rd, cv, extra = run_dir(cfg), metrics["cv"], {}
            scores = test_scores(rd, posthoc=False, tta=args.tta)
        results[row] = {**scores, "oof_balanced_accuracy": cv, "seconds": round(time.time() - t0, 1), **extra,
                        "config": cfg.model_dump(mode="json"), "provenance": provenance()}
        print(f"{row:17s} test balanced acc {scores['balanced_accuracy']:.4f}  macro-F1 {scores['f1_macro']:.4f}  "
              f"rarest-3 recall {scores['recall_rarest3']:.4f}  (OOF {cv:.4f}, {time.time() - t0:.0f} s)", flush=True)
        write(results, args)
    print_table(results)


def write(results: dict, args) -> None:
    ce = results.get("ce", {}).get("balanced_accuracy")
    best = max(results, key=lambda r: results[r]["balanced_accuracy"])
    gain = None if ce is None else results[best]["balanced_accuracy"] - ce
    out = {"benchmark": "long_tail", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": vars(args),
           "data": "fashion-lt, imbalance 100 (6000..60 per class), fold 0 of 5; test: official balanced 10,000",
           "torch_threads": torch.get_num_threads(), "rows": results, "best": best,
           "best_minus_ce_balanced_accuracy": gain, "target": {"best_minus_ce_balanced_accuracy": 0.05},
           "target_met": gain is not None and gain >= 0.05}
    write_results(RESULTS, out)


def print_table(results: dict) -> None:
    print("\n| method | balanced acc | macro-F1 | weighted-F1 | recall, 3 rarest | OOF bal. acc | s |")
    print("|---|---|---|---|---|---|---|")
    for row, r in results.items():
        print(f"| {row} | {r['balanced_accuracy']:.4f} | {r['f1_macro']:.4f} | {r['f1_weighted']:.4f} | "
              f"{r['recall_rarest3']:.4f} | {r['oof_balanced_accuracy']:.4f} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()

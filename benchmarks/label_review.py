"""Label-noise review and fine-tuning at a larger size on Fashion-MNIST with planted mislabels.

A random --n of the 60,000 training images (seed 0), --noise of their labels flipped to a random other class
(seeded); the official 10,000 test images held out (their labels only score the submissions). Runs, all on the same
persisted --folds split, podium_cnn at 28 px (AdamW, lr 2e-3, batch 64):

  noisy      the noisy labels as given
  cleaned    the same config + data.exclude of `podium errors noisy --suspect` (the top --fraction, action drop)
  finetune   the noisy config + train.finetune_size (the last --finetune-epochs epochs at that size); skipped with
             --finetune-size 0

Reported: the share of the planted mislabels in --suspect's top --fraction (recall) and the share of that list that
is planted (precision), each run's CV (OOF, its own labels) and held-out test accuracy, and the test difference
against `noisy` with its paired standard error (the same 10,000 test images). The fraction is fixed before any run
(2%: the default), never chosen on the test labels.

    .venv/bin/python benchmarks/label_review.py [--n 2000] [--folds 3] [--epochs 4] [--noise 0.05]
                                               [--fraction 0.02] [--finetune-size 36]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from provenance import write_results  # benchmarks/provenance.py: commit, machine, load, versions

from podium.commands.predict import predict
from podium.commands.train import run_dir, train
from podium.config import from_dict
from podium.data.datasets import make_dataset
from podium.data.splits import make_folds_file
from podium.report.suspects import rank, write_suspects

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "label_review.json"


def plant_noise(work: Path, noise: float, seed: int) -> pd.DataFrame:
    """train.csv with `noise` of its labels moved to a random other class; the true labels kept in truth.csv."""
    truth_csv = work / "truth.csv"
    if truth_csv.exists():
        return pd.read_csv(truth_csv, dtype=str, keep_default_na=False)
    table = pd.read_csv(work / "train.csv", dtype=str, keep_default_na=False)
    classes = sorted(table["label"].unique())
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(table), size=round(noise * len(table)), replace=False)
    truth = table.rename(columns={"label": "true"})
    for i in flipped:
        others = [c for c in classes if c != table.at[i, "label"]]
        table.at[i, "label"] = others[rng.integers(len(others))]
    truth["given"] = table["label"]
    table.to_csv(work / "train.csv", index=False)
    truth.to_csv(truth_csv, index=False)
    return truth


def config(args, work: Path, name: str, **train_extra) -> dict:
    return {
        "name": name, "output_dir": str(work / "runs"),
        "data": {"train_csv": str(work / "train.csv"), "test_csv": str(work / "test.csv"),
                 "image_dir": str(work / "images"), "sample_submission": str(work / "sample_submission.csv"),
                 "image_size": 28, "cache_dir": str(work / "cache")},
        "cv": {"n_folds": args.folds},
        "model": {"name": "podium_cnn", "pretrained": False},
        "augment": {"hflip": True, "shift": 0.0},
        "train": {"epochs": args.epochs, "batch_size": 64, "lr": 2e-3, "warmup_epochs": 0, "patience": 0,
                  "eval_batch_size": 1024, **train_extra},
    }


def run(raw: dict, truth_test: pd.Series) -> dict:
    """Train every fold, predict the test set (no TTA); CV, test accuracy and each test image's correctness. Folds
    an earlier, interrupted call finished are kept (--resume): on a busy machine the benchmark continues where it
    stopped; `seconds` then counts this call only."""
    cfg = from_dict(raw)
    t0 = time.time()
    metrics = train(cfg, resume=True)
    res = predict(run_dir(cfg), tta="none", overwrite=True)
    sub = pd.read_csv(res.submission, dtype=str).set_index("id")
    correct = (sub.loc[truth_test.index, "label"] == truth_test).to_numpy()
    return {"cv": metrics["cv"], "test_accuracy": float(correct.mean()), "seconds": round(time.time() - t0, 1),
            "n_train": int(metrics["oof"]["n"]), "correct": correct}


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """b - a on the same images: the difference and its paired standard error."""
    d = b.astype(float) - a.astype(float)
    return {"difference": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="training images drawn from Fashion-MNIST's 60,000")
    ap.add_argument("--folds", type=int, default=3, help="cv.n_folds (every fold is trained: --suspect needs the OOF)")
    ap.add_argument("--noise", type=float, default=0.05, help="share of training labels flipped")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--fraction", type=float, default=0.02, help="the share --suspect lists (and cleaned drops)")
    ap.add_argument("--finetune-size", type=int, default=36, help="0: skip the finetune run")
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the planted noise")
    args = ap.parse_args()
    t0 = time.time()
    work = HERE / "work" / f"label-review-n{args.n}"
    if not (work / "train.csv").exists():
        make_dataset("fashion-mnist", work, n=args.n)
    truth = plant_noise(work, args.noise, args.seed)
    planted = set(truth.loc[truth["true"] != truth["given"], "id"])
    truth_test = pd.read_csv(work / "test_labels.csv", dtype=str).set_index("id")["label"]
    make_folds_file(from_dict(config(args, work, "noisy")))

    runs = {"noisy": run(config(args, work, "noisy"), truth_test)}

    def save() -> dict:  # after each run: a benchmark cut short keeps what it measured
        base = runs["noisy"]["correct"]
        rows = {key: {**{k: v for k, v in r.items() if k != "correct"},
                      **({"vs_noisy": paired(base, r["correct"])} if key != "noisy" else {})}
                for key, r in runs.items()}
        result = {"benchmark": "label_review", "settings": vars(args), "torch_threads": torch.get_num_threads(),
                  "n_test": len(truth_test), "review": review, "runs": rows,
                  "wall_seconds": round(time.time() - t0, 1)}
        write_results(RESULTS, result)
        return result

    noisy = work / "runs" / "noisy"
    listed = write_suspects(noisy, fraction=args.fraction, out=work / "suspects.csv", overwrite=True).table
    hits = listed["id"].isin(planted)
    true_of = truth.set_index("id")["true"]
    at_noise = rank(noisy, fraction=args.noise).table["id"].isin(planted)  # the list as long as the noise
    review = {"planted": len(planted), "listed": len(listed), "planted_listed": int(hits.sum()),
              "recall": float(hits.sum() / len(planted)), "precision": float(hits.mean()),
              "suspected_is_true_label": float((listed.loc[hits, "suspected"].to_numpy()
                                                == true_of.loc[listed.loc[hits, "id"]].to_numpy()).mean()),
              "recall_at_noise_rate": float(at_noise.sum() / len(planted)), "precision_at_noise_rate":
              float(at_noise.mean())}
    result = save()
    cleaned = config(args, work, "cleaned")
    cleaned["data"]["exclude"] = str(work / "suspects.csv")
    todo = {"cleaned": cleaned}
    if args.finetune_size:
        todo["finetune"] = config(args, work, "finetune", finetune_size=args.finetune_size,
                                  finetune_epochs=args.finetune_epochs)
    for name, raw in todo.items():
        runs[name] = run(raw, truth_test)
        result = save()
    print(f"planted {review['planted']} mislabels in {args.n} training images; --suspect's top {args.fraction:.0%} "
          f"({review['listed']} images) holds {review['planted_listed']}: recall {review['recall']:.3f}, precision "
          f"{review['precision']:.3f} (top {args.noise:.0%}: recall {review['recall_at_noise_rate']:.3f})")
    print(f"{'run':<10} {'CV':>7} {'test acc':>9} {'vs noisy':>16} {'seconds':>8}")
    for name, r in result["runs"].items():
        vs = r.get("vs_noisy")
        diff = f"{vs['difference']:+.4f} ± {vs['se']:.4f}" if vs else ""
        print(f"{name:<10} {r['cv']:>7.4f} {r['test_accuracy']:>9.4f} {diff:>16} {r['seconds']:>8.0f}")
    print(f"wall {result['wall_seconds']:.0f} s; wrote {RESULTS}")


if __name__ == "__main__":
    main()

"""The demo competition: scikit-learn's bundled digits (1,797 8x8 images) as a Kaggle-style folder.

`write_digits_competition` lays out what a competition gives you (images/, train.csv, test.csv,
sample_submission.csv) plus the held-out test labels (test_labels.csv) so the demo can print a true test
score. `run_demo` runs the whole loop on it: split, train 5 folds, predict with TTA, score.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from podium.config import from_dict, save_config
from podium.data.scenarios.digits import DEMO_SIZE, write_digits_competition
from podium.report.terminal import metrics_table

# The demo's model and budget: a small CNN suited to 32x32 grayscale, trained from scratch.
DEMO_OVERRIDES = {
    "name": "digits-cnn",
    "model": {"name": "podium_cnn", "pretrained": False},
    "augment": {"hflip": False, "shift": 0.1},  # digits are not mirror-symmetric; small shifts are harmless
    "train": {"epochs": 12, "batch_size": 64, "lr": 3e-3, "weight_decay": 0.05, "patience": 0},
}


def demo_config(out: Path, epochs: int | None = None):
    data = out / "data"
    train = {**DEMO_OVERRIDES["train"], **({"epochs": epochs} if epochs else {})}
    raw = {**DEMO_OVERRIDES, "train": train, "output_dir": str(out / "runs"),
           "data": {"train_csv": str(data / "train.csv"), "test_csv": str(data / "test.csv"),
                    "image_dir": str(data / "images"), "sample_submission": str(data / "sample_submission.csv"),
                    "image_size": DEMO_SIZE, "cache_dir": str(out / "cache")}}
    return from_dict(raw, "demo config")


@dataclass(frozen=True)
class DemoResult:
    """The demo's scores: CV on OOF (without and with the TTA it checked), test accuracy by TTA, and its cost."""

    cv: float  # cv.metric (accuracy) on the OOF of 5 folds
    cv_tta: float | None  # the same OOF predicted again with TTA
    test_accuracy: float  # of the submission (the TTA the OOF favours)
    test_accuracy_by_tta: dict[str, float]  # TTA setting -> test accuracy on the held-out labels
    tta: str  # the TTA the submission used
    seconds: float  # wall time, data to submission
    run: Path  # the run folder


def run_demo(out: Path | str, tta: str = "hflip", epochs: int | None = None) -> DemoResult:
    """The whole loop on digits: write data, split, train 5 folds, predict with and without TTA, score on held-out
    labels; the submission keeps whichever of the two the OOF favours. `epochs`: default the demo's 12."""
    from rich.console import Console
    from rich.table import Table

    from podium.commands.predict import predict
    from podium.commands.train import run_dir, train
    from podium.data.splits import make_folds_file

    console = Console()
    out = Path(out)
    t0 = time.time()
    write_digits_competition(out / "data")
    cfg = demo_config(out, epochs)
    save_config(cfg, out / "config.yaml")
    make_folds_file(cfg)
    rd = run_dir(cfg)
    if rd.exists():
        console.print(f"[yellow]replacing the earlier demo run in {rd}[/]")
    metrics = train(cfg, overwrite=True)
    truth = pd.read_csv(out / "data" / "test_labels.csv", dtype=str).set_index("id")["label"]
    test_acc = {}
    for view in dict.fromkeys(["none", tta]):  # the plain prediction too: TTA must earn its place
        res = predict(rd, tta=view)
        sub = pd.read_csv(res.submission, dtype=str)
        test_acc[view] = float((sub["label"].to_numpy() == truth.loc[sub["id"]].to_numpy()).mean())
    tta_oof = res.oof.tta[metrics["cv_metric"]] if res.oof is not None else None
    chosen = tta if tta_oof is None or tta_oof >= metrics["cv"] else "none"  # the submission keeps what OOF favours
    if chosen != tta:
        res = predict(rd, tta=chosen)
    seconds = time.time() - t0
    console.print(metrics_table(metrics, "digits demo: out-of-fold scores"))
    summary = Table(title="digits demo")
    summary.add_column("what")
    summary.add_column("value", justify="right")
    summary.add_row(f"CV {metrics['cv_metric']} (OOF, 5 folds)", f"{metrics['cv']:.4f}")
    if tta_oof is not None:  # predict scored the OOF with the same TTA: the check a user makes before submitting
        summary.add_row(f"CV {metrics['cv_metric']} (OOF, TTA {tta})", f"{tta_oof:.4f}")
    for view, acc in test_acc.items():
        summary.add_row(f"test accuracy (TTA {view})", f"{acc:.4f}")
    summary.add_row("wall time", f"{seconds:.0f} s")
    summary.add_row("run folder", str(rd))
    summary.add_row(f"submission (TTA {chosen}{', the better on OOF' if tta_oof is not None else ''})",
                    str(res.submission))
    console.print(summary)
    console.print(f"Next: `podium config show {out / 'config.yaml'}`, then make one for your competition (README).")
    return DemoResult(cv=metrics["cv"], cv_tta=tta_oof, test_accuracy=test_acc[chosen], test_accuracy_by_tta=test_acc,
                      tta=chosen, seconds=seconds, run=rd)

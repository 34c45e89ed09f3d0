"""The demo competition: scikit-learn's bundled digits (1,797 8x8 images) as a Kaggle-style folder.

`write_digits_competition` lays out what a competition gives you (images/, train.csv, test.csv,
sample_submission.csv) plus the held-out test labels (test_labels.csv) so the demo can print a true test
score. `run_demo` runs the whole loop on it: split, train 5 folds, predict with TTA, score.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from podium.errors import PodiumError
from podium.io import atomic_write_csv, atomic_write_text

DEMO_SIZE = 32  # px: digits are upscaled from 8x8 so they look like a (tiny) real image set
TEST_FRACTION = 0.2  # share of the images held out as the competition's test set
SEED = 0  # fixes which images are test images


def write_digits_competition(out: Path | str, n: int | None = None, seed: int = 0) -> list[Path]:
    """Write the digits competition into `out`; refuses to write into a folder holding other files.
    n: keep a label-stratified n of the 1,437 training images (drawn with seed); the test set is unchanged."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    out = Path(out)
    if out.exists() and any(p.name not in ("images",) and not p.name.startswith(".") for p in out.iterdir()):
        if _is_digits_folder(out):
            return sorted(out.glob("*.csv"))  # already written by an earlier demo: reuse it
        raise PodiumError(f"'{out}' is not empty and is not a digits folder an earlier demo wrote; the demo writes "
                          "a fresh competition folder. Pick another folder.")
    digits = load_digits()
    images = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    ids = np.array([f"digit_{i:04d}" for i in range(len(images))])
    labels = digits.target.astype(int)
    train_idx, test_idx = train_test_split(
        np.arange(len(ids)), test_size=TEST_FRACTION, stratify=labels, random_state=SEED
    )
    from podium.datasets import train_subset

    train_idx = train_idx[train_subset(labels[train_idx], n, seed, "digits")]
    (out / "images").mkdir(parents=True, exist_ok=True)
    for i in np.concatenate([train_idx, test_idx]):
        img = Image.fromarray(images[i], "L").resize((DEMO_SIZE, DEMO_SIZE), Image.BICUBIC)
        img.save(out / "images" / f"{ids[i]}.png")
    atomic_write_csv(out / "train.csv", pd.DataFrame({"id": ids[train_idx], "label": labels[train_idx]}))
    atomic_write_csv(out / "test.csv", pd.DataFrame({"id": ids[test_idx]}))
    # the template a competition hands out: every test id, a placeholder label, in its own order
    template = pd.DataFrame({"id": ids[test_idx], "label": 0}).sample(frac=1.0, random_state=SEED)
    atomic_write_csv(out / "sample_submission.csv", template)
    atomic_write_csv(out / "test_labels.csv", pd.DataFrame({"id": ids[test_idx], "label": labels[test_idx]}))
    atomic_write_text(out / "README.txt", _README)
    return sorted(out.glob("*.csv"))


def _is_digits_folder(out: Path) -> bool:
    """What `write_digits_competition` leaves: its README.txt and every CSV (a competition with a train.csv and
    test_labels.csv of its own is not reused: the demo would call it the digits and train on it)."""
    readme = out / "README.txt"
    return (readme.is_file() and readme.read_text(errors="replace").startswith(_README[:40])
            and all((out / name).is_file() for name in ("train.csv", "test.csv", "test_labels.csv")))


_README = ("scikit-learn digits as a competition: 10 classes, 32x32 grayscale PNGs.\n"
           "test_labels.csv holds the held-out answers (a real competition keeps them secret).\n")

# The demo's model and budget: a small CNN suited to 32x32 grayscale, trained from scratch.
DEMO_OVERRIDES = {
    "name": "digits-cnn",
    "model": {"name": "podium_cnn", "pretrained": False},
    "augment": {"hflip": False, "shift": 0.1},  # digits are not mirror-symmetric; small shifts are harmless
    "train": {"epochs": 12, "batch_size": 64, "lr": 3e-3, "weight_decay": 0.05, "patience": 0},
}


def demo_config(out: Path, epochs: int | None = None):
    from podium.config import from_dict

    data = out / "data"
    train = {**DEMO_OVERRIDES["train"], **({"epochs": epochs} if epochs else {})}
    raw = {**DEMO_OVERRIDES, "train": train, "output_dir": str(out / "runs"),
           "data": {"train_csv": str(data / "train.csv"), "test_csv": str(data / "test.csv"),
                    "image_dir": str(data / "images"), "sample_submission": str(data / "sample_submission.csv"),
                    "image_size": DEMO_SIZE, "cache_dir": str(out / "cache")}}
    return from_dict(raw, "demo config")


def run_demo(out: Path | str, tta: str = "hflip", epochs: int | None = None) -> dict:
    """The whole loop on digits: write data, split, train 5 folds, predict with and without TTA, score on held-out
    labels; the submission keeps whichever of the two the OOF favours. `epochs`: default the demo's 12."""
    from rich.console import Console
    from rich.table import Table

    from podium.config import save_config
    from podium.data.splits import make_folds_file
    from podium.predict import predict
    from podium.report import metrics_table
    from podium.train import run_dir, train

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
        sub = pd.read_csv(res["submission"], dtype=str)
        test_acc[view] = float((sub["label"].to_numpy() == truth.loc[sub["id"]].to_numpy()).mean())
    tta_oof = res["oof"]["tta"][metrics["cv_metric"]] if res.get("oof") else None
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
                    str(res["submission"]))
    console.print(summary)
    console.print(f"Next: `podium config show {out / 'config.yaml'}`, then make one for your competition (README).")
    return {"cv": metrics["cv"], "test_accuracy": test_acc[chosen], "test_accuracy_by_tta": test_acc, "tta": chosen,
            "cv_tta": tta_oof,
            "seconds": seconds, "run": rd}

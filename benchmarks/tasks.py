"""Task kinds on small synthetic sets: per-label thresholds (multi-label) and three heads vs one (multi-task).

multilabel  S0 in miniature: 32 x 32 images holding any of 8 glyphs (fixed random 6 x 6 patterns) at random places
            on noise, label frequencies from 6% to 50%; 1,200 training images (3 folds, iterative stratification),
            600 held-out test images. One bce run; per-label accuracy (S0's metric), F1 and exact match on the OOF
            and on the test set, at 0.5 and at the thresholds fitted on the OOF for cv.metric.
multitask   S1 in miniature: 18 classes = mask (3 glyphs) x gender (2 brightness levels) x age (3 glyph sizes), the
            class 6*mask + 3*gender + age; each person has one gender, one age and one background texture and six
            images; 150 people (900 images, 3 folds grouped by person; --people), 60 held-out people (360 images).
            The same data, folds, network and budget twice: one backbone with three heads (data.task=multitask) and
            one 18-way head (data.task=multiclass on the combined column).

    .venv/bin/python benchmarks/tasks.py [--epochs 12] [--parts multilabel,multitask] [--people 150]

Writes benchmarks/results/tasks.json: every score, the seconds each run took, the load average and the configs
(a part run alone replaces its own entry only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from provenance import provenance, write_results  # benchmarks/provenance.py: commit, machine, load, versions

from podium.commands.predict import predict
from podium.commands.train import run_dir, train
from podium.config import from_dict
from podium.metrics import METRICS, MULTILABEL_METRICS

HERE = Path(__file__).parent
WORK = HERE / "work" / "tasks"
RESULTS = HERE / "results" / "tasks.json"
SIZE = 32


def _glyphs(rng: np.random.Generator, n: int, side: int = 6) -> list[np.ndarray]:
    """n distinct random binary side x side patterns, each with at least a third of its pixels on."""
    out: list[np.ndarray] = []
    while len(out) < n:
        g = rng.random((side, side)) < 0.5
        if g.mean() > 0.33 and all((g != h).sum() > side for h in out):
            out.append(g)
    return out


def write_multilabel(root: Path, n_train: int, n_test: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    labels = [f"g{j}" for j in range(8)]
    glyphs = _glyphs(rng, len(labels))
    freq = np.linspace(0.06, 0.5, len(labels))
    (root / "images").mkdir(parents=True, exist_ok=True)
    hot = rng.random((n_train + n_test, len(labels))) < freq
    for i, row in enumerate(hot):
        img = rng.normal(60, 30, (SIZE, SIZE))
        for j in np.flatnonzero(row):
            y, x = rng.integers(0, SIZE - 6, 2)
            img[y:y + 6, x:x + 6] = np.where(glyphs[j], 220, img[y:y + 6, x:x + 6])
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / f"{i:05d}.png")
    frame = pd.DataFrame(hot.astype(int), columns=labels)
    frame.insert(0, "id", [f"{i:05d}" for i in range(len(hot))])
    frame.iloc[:n_train].to_csv(root / "train.csv", index=False)
    frame.iloc[n_train:].to_csv(root / "test_labels.csv", index=False)
    frame.iloc[n_train:][["id"]].to_csv(root / "test.csv", index=False)
    frame.iloc[n_train:].assign(**{c: 0 for c in labels}).to_csv(root / "sample_submission.csv", index=False)
    return labels


def write_profiles(root: Path, n_people: int, n_test_people: int, per_person: int = 6, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    masks = _glyphs(rng, 3, side=8)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for person in range(n_people + n_test_people):
        gender, age = int(rng.integers(0, 2)), int(rng.integers(0, 3))
        background = rng.normal(70, 25, (SIZE, SIZE))  # the person's own texture, shared by all their images
        for k in range(per_person):
            mask = int(rng.integers(0, 3))
            scale = 1 + age  # glyph of 8, 16 or 24 px
            glyph = np.kron(masks[mask], np.ones((scale, scale), dtype=bool))
            img = background + rng.normal(0, 15, (SIZE, SIZE))
            y, x = rng.integers(0, SIZE - glyph.shape[0] + 1, 2)
            patch = img[y:y + glyph.shape[0], x:x + glyph.shape[1]]
            img[y:y + glyph.shape[0], x:x + glyph.shape[1]] = np.where(glyph, 160 + 80 * gender, patch)
            ident = f"{person:03d}_{k}"
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / f"{ident}.png")
            rows.append((ident, f"p{person:03d}", mask, gender, age, 6 * mask + 3 * gender + age))
    frame = pd.DataFrame(rows, columns=["id", "person", "mask", "gender", "age", "label"])
    n_train = n_people * per_person
    frame.iloc[:n_train].to_csv(root / "train.csv", index=False)
    frame.iloc[n_train:].to_csv(root / "test_labels.csv", index=False)
    frame.iloc[n_train:][["id"]].to_csv(root / "test.csv", index=False)
    frame.iloc[n_train:][["id"]].assign(label=0).to_csv(root / "sample_submission.csv", index=False)


def base(root: Path, name: str, data: dict, cv: dict, args) -> dict:
    return {
        "name": name, "output_dir": str(WORK / "runs"),
        "data": {"train_csv": str(root / "train.csv"), "test_csv": str(root / "test.csv"),
                 "image_dir": str(root / "images"), "sample_submission": str(root / "sample_submission.csv"),
                 "image_size": SIZE, "cache_dir": str(WORK / "cache"), **data},
        "cv": {"n_folds": 3, **cv},
        "model": {"name": "podium_cnn", "pretrained": False},
        "augment": {"hflip": False, "shift": 0.0},
        "train": {"epochs": args.epochs, "batch_size": 64, "lr": 3e-3, "warmup_epochs": 1, "patience": 0,
                  "eval_batch_size": 512},
    }


def run_multilabel(args) -> dict:
    root = WORK / "letters-mini"
    shutil.rmtree(root, ignore_errors=True)  # fresh data and folds every run
    labels = write_multilabel(root, 1200, 600)
    cfg = from_dict(base(root, "ml-bce", {"task": "multilabel", "label_col": labels}, {}, args))
    t0 = time.time()
    metrics = train(cfg, overwrite=True)
    seconds = time.time() - t0
    run = run_dir(cfg)
    predict(run, overwrite=True)
    thr = json.loads((run / "thresholds.json").read_text())
    truth = pd.read_csv(root / "test_labels.csv", dtype={"id": str}).set_index("id")
    probs = pd.read_csv(run / "test_probs.csv", dtype={"id": str}).set_index("id").loc[truth.index, labels].to_numpy()
    y = truth[labels].to_numpy()
    fitted = np.array([thr["thresholds"][c] for c in labels])
    names = ("per_label_accuracy", "f1_macro", "f1_micro", "exact_match")
    test = {f"{name}@{which}": MULTILABEL_METRICS[name].fn(y, probs, t) for name in names
            for which, t in (("0.5", 0.5), ("fitted", fitted))}
    return {"config": cfg.model_dump(mode="json"), "seconds": round(seconds, 1), "thresholds": thr["thresholds"],
            "oof_at_0.5": {n: thr["oof_before"][n] for n in names},
            "oof_fitted": {n: thr["oof_after"][n] for n in names}, "test": test, "oof_mAP": metrics["oof"]["mAP"]}


def run_multitask(args) -> dict:
    root = WORK / f"profiles-mini-{args.people}"
    shutil.rmtree(root, ignore_errors=True)  # fresh data and folds every run
    write_profiles(root, args.people, 60)
    truth = pd.read_csv(root / "test_labels.csv", dtype={"id": str}).set_index("id")
    cv = {"strategy": "group", "group_col": "person"}
    out = {}
    variants = {
        "three_heads": {"task": "multitask", "label_col": ["mask", "gender", "age"],
                        "combine": "6*mask + 3*gender + age"},
        "one_head_18": {"task": "multiclass", "label_col": "label"},
    }
    for name, data in variants.items():
        cfg = from_dict(base(root, f"mt{args.people}-{name}", data, cv, args))
        t0 = time.time()
        metrics = train(cfg, overwrite=True)
        seconds = time.time() - t0
        predict(run_dir(cfg), overwrite=True)
        sub = pd.read_csv(run_dir(cfg) / "submission.csv", dtype={"id": str}).set_index("id").loc[truth.index]
        pred = sub["label"].astype(int).to_numpy()
        y = truth["label"].to_numpy()
        per_task = {t: float(np.mean(p == truth[t].to_numpy()))
                    for t, p in (("mask", pred // 6), ("gender", pred % 6 // 3), ("age", pred % 3))}
        out[name] = {"cv_accuracy": metrics["oof"]["accuracy"], "test_accuracy": float(np.mean(pred == y)),
                     "test_f1_macro": METRICS["f1_macro"].fn(y, np.eye(18)[pred]), "test_per_task": per_task,
                     "seconds": round(seconds, 1), "config": cfg.model_dump(mode="json")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--parts", default="multilabel,multitask")
    parser.add_argument("--people", type=int, default=150, help="multitask: training people (6 images each)")
    args = parser.parse_args()
    # parts run now replace their entry; the others keep the numbers of the run that made them
    results: dict = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    parts = {"multilabel": run_multilabel, "multitask": run_multitask}
    keys = {"multilabel": "multilabel", "multitask": f"multitask_{args.people}_people"}  # one entry per data size
    for part in args.parts.split(","):
        before = os.getloadavg()
        results[keys[part]] = {**parts[part](args), "epochs": args.epochs, "load_average_before": before,
                               "load_average_after": os.getloadavg(), "provenance": provenance()}
    for kept in results.values():  # each part carries the provenance of the run that measured it (None: unknown)
        if isinstance(kept, dict):
            kept.setdefault("provenance", None)
    results.pop("provenance", None)
    results = write_results(RESULTS, results)  # the top-level "provenance": this run's
    if "multilabel" in args.parts:
        r = results["multilabel"]
        print(f"multilabel ({r['seconds']} s)          at 0.5    fitted on OOF")
        for n in ("per_label_accuracy", "f1_macro", "f1_micro", "exact_match"):
            print(f"  OOF  {n:<20} {r['oof_at_0.5'][n]:.4f}    {r['oof_fitted'][n]:.4f}")
            print(f"  test {n:<20} {r['test'][n + '@0.5']:.4f}    {r['test'][n + '@fitted']:.4f}")
    if "multitask" in args.parts:
        print(f"multitask, {args.people} people  CV acc   test acc  test F1   mask   gender  age    seconds")
        for name, r in results[keys["multitask"]].items():
            if not isinstance(r, dict) or "test_per_task" not in r:
                continue
            t = r["test_per_task"]
            print(f"  {name:<18} {r['cv_accuracy']:.4f}   {r['test_accuracy']:.4f}    {r['test_f1_macro']:.4f}    "
                  f"{t['mask']:.3f}  {t['gender']:.3f}   {t['age']:.3f}  {r['seconds']}")
    for part in args.parts.split(","):
        r = results[keys[part]]
        print(f"{part}: load average {r['load_average_before']} -> {r['load_average_after']}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

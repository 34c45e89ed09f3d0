"""Ensembling and TTA on Fashion-MNIST: two backbones x 5 folds, each run alone, their mean and an OOF-fitted blend,
every one without and with hflip TTA, on OOF and on the official test set, measured side by side in one run.

Data: a label-stratified subset of the Fashion-MNIST training images (`data.subset`, default 10,000), one
stratified 5-fold split shared by both runs (so their OOF can be blended); the official 10,000 test images held
out (labels read only to score; --test-subset scores a stratified part). The sizes keep the whole benchmark near
15 minutes on 2 shared CPU cores: 2 models x 5 folds of training, then the test set predicted 3 times per fold
(plain, and 2 TTA views) and the OOF once more per extra view. Rows:

  <model>        one run: its 5 folds' OOF (each image predicted by the fold that never saw it); test = folds' mean
  mean           the two runs' probabilities averaged with equal weights
  blend          weights fitted on the joined OOF for accuracy (podium.ensemble.fit_weights, as
                 `podium ensemble --method weighted --optimize`), then applied to the test probabilities

Each row is scored without TTA and with each `--tta` setting (default hflip, and hflip,vflip: the runs train with
random horizontal flips only, so the vertical flip is a view they never saw); the OOF with TTA is what `podium
predict --tta` computes. The check that matters for a competitor: does an OOF gain predict a test gain, in sign?
Every difference comes with its paired standard error, so a sign flip can be told from noise.

    make fashion-mnist && .venv/bin/python benchmarks/ensemble.py [--epochs 4] [--subset 10000] \
        [--test-subset 10000] [--tta "hflip;hflip,vflip"] [--threads 1] [--reuse]

Writes benchmarks/results/ensemble.json: every score, the blend weights, the sign checks, seconds, load average and
the configs that made the runs.
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

from podium.commands.ensemble import METHODS, fit_weights
from podium.commands.predict import predict
from podium.commands.train import run_dir, train
from podium.config import from_dict
from podium.data.datasets import FASHION_CLASSES, make_dataset
from podium.data.splits import make_folds_file
from podium.metrics import METRICS
from podium.run.rundir import RunDir
from podium.tta import parse_tta, tta_key

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "ensemble.json"
ACC = METRICS["accuracy"].fn


def test_subset(data: Path, n: int) -> Path:
    """test.csv, sample_submission.csv and test_labels.csv for a label-stratified n of the official test images."""
    from podium.data.sources import stratified_subset

    out = HERE / "work" / f"ensemble-test{n}"
    labels = pd.read_csv(data / "test_labels.csv", dtype=str)
    keep = labels.iloc[np.sort(stratified_subset(labels["label"].to_numpy(), n, 0))] if n < len(labels) else labels
    out.mkdir(parents=True, exist_ok=True)
    keep[["id"]].to_csv(out / "test.csv", index=False)
    keep.to_csv(out / "test_labels.csv", index=False)
    keep.assign(label=FASHION_CLASSES[0]).to_csv(out / "sample_submission.csv", index=False)
    return out


def config(args, model: str, test: Path) -> dict:
    data = Path(args.data)
    return {
        "name": f"ens-{model}-s{args.subset}-e{args.epochs}", "output_dir": str(HERE / "work" / "runs"),
        "data": {"train_csv": str(data / "train.csv"), "test_csv": str(test / "test.csv"),
                 "image_dir": str(data / "images"), "sample_submission": str(test / "sample_submission.csv"),
                 "image_size": 28, "subset": args.subset, "cache_dir": str(HERE / "work" / "cache")},
        "cv": {"n_folds": 5, "folds_file": str(HERE / "work" / f"ensemble_folds_subset{args.subset}.csv")},
        "model": {"name": model, "pretrained": False},
        "augment": {"hflip": True, "shift": 0.0},
        "train": {"epochs": args.epochs, "batch_size": args.batch, "optimizer": "sgd", "lr": args.lr,
                  "weight_decay": 5e-4, "warmup_epochs": 1, "patience": 0, "eval_batch_size": 1024},
    }


def probs_of(path: Path, ids: np.ndarray) -> np.ndarray:
    return pd.read_csv(path, dtype={"id": str}).set_index("id").loc[ids, FASHION_CLASSES].to_numpy(dtype=np.float64)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(HERE / "work" / "fashion-mnist"), help="the fashion-mnist competition folder")
    ap.add_argument("--models", default="podium_cnn,podium_cnn_s")
    ap.add_argument("--subset", type=int, default=10000, help="training images (a stratified subset)")
    ap.add_argument("--test-subset", type=int, default=10000, help="official test images scored (a stratified subset)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--tta", default="hflip;hflip,vflip", help="TTA settings compared with none, separated by ';' "
                    "(the runs train with hflip only: vflip is a view they never saw)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default torch's: one per core); "
                    "on a machine shared with other jobs, 1 avoids oversubscription (4x faster training at load 11)")
    ap.add_argument("--reuse", action="store_true", help="keep runs already trained with the same config")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data)
    if not (data / "train.csv").exists():
        make_dataset("fashion-mnist", data)
    t_start, load_start = time.time(), os.getloadavg()
    test_dir = test_subset(data, args.test_subset)
    truth = pd.read_csv(test_dir / "test_labels.csv", dtype=str).set_index("id")["label"]
    index = {c: i for i, c in enumerate(FASHION_CLASSES)}
    models = args.models.split(",")
    settings = {tta_key(parse_tta(t)): t for t in ["none", *args.tta.split(";")]}  # key -> --tta text
    cfgs = {m: from_dict(config(args, m, test_dir)) for m in models}
    make_folds_file(cfgs[models[0]])  # one split for both runs: their OOF rows line up
    oof, test = {v: {} for v in settings}, {v: {} for v in settings}
    seconds, configs = {}, {}
    oof_ids = test_ids = y_oof = y_test = None
    for m, cfg in cfgs.items():
        if args.reuse:
            train(cfg, resume=True)  # finished folds of a run with this very config are kept
        else:
            train(cfg, overwrite=True)
        rd = run_dir(cfg)
        fold_seconds = [json.loads(p.read_text())["seconds"] for p in rd.glob("fold*/done.json")]
        seconds[m] = {"train_folds": round(sum(fold_seconds), 1)}
        plain = pd.read_csv(rd / "oof.csv", dtype={"id": str, "label": str})
        oof_ids = plain["id"].to_numpy() if oof_ids is None else oof_ids
        y_oof = plain.set_index("id").loc[oof_ids, "label"].map(index).to_numpy()
        for key, tta in settings.items():
            res = predict(rd, tta=tta)
            if test_ids is None:
                test_ids = pd.read_csv(res.test_probs, dtype={"id": str})["id"].to_numpy()
            test[key][m] = probs_of(res.test_probs, test_ids)
            oof_name = "oof.csv" if key == "none" else RunDir(rd).tta_oof_path(parse_tta(tta), "mean_probs").name
            oof[key][m] = probs_of(rd / oof_name, oof_ids)
            seconds[m][f"test_{key}"] = res.test_seconds
            if res.oof is not None:
                seconds[m][f"oof_{key}"] = res.oof.seconds
        configs[m] = cfg.model_dump(mode="json")
        y_test = truth.loc[test_ids].map(index).to_numpy()
        scores = [f"TTA {k}: OOF {ACC(y_oof, oof[k][m]):.4f}, test {ACC(y_test, test[k][m]):.4f}" for k in settings]
        print(f"{m}: 5 folds trained in {seconds[m]['train_folds']:.0f} s; " + "; ".join(scores), flush=True)
    rows, weights, preds = {}, {}, {}  # preds[(row, variant)] = (OOF probabilities, test probabilities)
    for variant in settings:
        so, st = np.stack([oof[variant][m] for m in models]), np.stack([test[variant][m] for m in models])
        equal = np.full(len(models), 1 / len(models))
        w = fit_weights(so, y_oof, "accuracy")
        weights[variant] = dict(zip(models, w.round(4).tolist()))
        for m in models:
            preds[m, variant] = oof[variant][m], test[variant][m]
        preds["mean", variant] = METHODS["mean"](so, equal), METHODS["mean"](st, equal)
        preds["blend", variant] = METHODS["weighted"](so, w), METHODS["weighted"](st, w)
        for row in [*models, "mean", "blend"]:
            p_oof, p_test = preds[row, variant]
            rows.setdefault(row, {})[variant] = {"oof": ACC(y_oof, p_oof), "test": ACC(y_test, p_test)}
    checks = sign_checks(rows, models, list(settings), preds, y_oof, y_test)
    best_single = {v: max(rows[m][v]["test"] for m in models) for v in settings}
    target = {v: rows["blend"][v]["test"] >= best_single[v] for v in settings}
    agree = sum(c["agree"] for c in checks)
    clear = [c for c in checks if abs(c["oof_gain"]) >= 2 * c["oof_se"]]
    out = {"benchmark": "ensemble", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": vars(args),
           "data": f"fashion-mnist: stratified subsets of {args.subset} training images (5 folds) and of "
                   f"{args.test_subset} official test images",
           "torch_threads": torch.get_num_threads(), "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
           "wall_seconds": round(time.time() - t_start, 1), "seconds": seconds, "accuracy": rows,
           "blend_weights": weights, "best_single_test": best_single, "sign_checks": checks,
           "sign_agreement": f"{agree} of {len(checks)}",
           "sign_agreement_where_oof_gain_exceeds_2_se": f"{sum(c['agree'] for c in clear)} of {len(clear)}",
           "target": {"blend_test_ge_best_single": target, "oof_gain_predicts_test_gain_in_sign": agree == len(checks)},
           "configs": configs}
    out = write_results(RESULTS, out)
    print_tables(out, list(settings))


def paired_se(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Standard error of accuracy(a) - accuracy(b) on the same images (from the images only one gets right)."""
    d = (a.argmax(1) == y).astype(float) - (b.argmax(1) == y).astype(float)
    return float(d.std(ddof=1) / np.sqrt(len(d)))


def sign_checks(rows: dict, models: list[str], variants: list[str], preds: dict, y_oof: np.ndarray,
                y_test: np.ndarray) -> list[dict]:
    """Each comparison a competitor would make on OOF (a TTA setting or none; the ensemble or the best run by OOF),
    with the OOF and test differences, their paired standard errors, and whether their signs agree."""
    pairs = [(f"{row}: TTA {v} vs none", (row, v), (row, "none"))
             for row in [*models, "mean", "blend"] for v in variants if v != "none"]
    for v in variants:
        best = max(models, key=lambda m: rows[m][v]["oof"])  # the run one would pick without the test labels
        pairs += [(f"mean vs best run ({best}), TTA {v}", ("mean", v), (best, v)),
                  (f"blend vs best run ({best}), TTA {v}", ("blend", v), (best, v))]
    out = []
    for name, (a, va), (b, vb) in pairs:
        d_oof, d_test = rows[a][va]["oof"] - rows[b][vb]["oof"], rows[a][va]["test"] - rows[b][vb]["test"]
        out.append({"comparison": name, "oof_gain": round(d_oof, 4), "test_gain": round(d_test, 4),
                    "oof_se": round(paired_se(y_oof, preds[a, va][0], preds[b, vb][0]), 4),
                    "test_se": round(paired_se(y_test, preds[a, va][1], preds[b, vb][1]), 4),
                    "agree": bool(np.sign(round(d_oof, 6)) == np.sign(round(d_test, 6)))})
    return out


def print_tables(out: dict, variants: list[str]) -> None:
    print("\n| accuracy | " + " | ".join(f"OOF, TTA {v}" for v in variants) + " | "
          + " | ".join(f"test, TTA {v}" for v in variants) + " |")
    print("|---" * (1 + 2 * len(variants)) + "|")
    for row, r in out["accuracy"].items():
        print(f"| {row} | " + " | ".join(f"{r[v]['oof']:.4f}" for v in variants) + " | "
              + " | ".join(f"{r[v]['test']:.4f}" for v in variants) + " |")
    print(f"\nblend weights: {out['blend_weights']}")
    print("\n| comparison | OOF gain (± s.e.) | test gain (± s.e.) | same sign |")
    print("|---|---|---|---|")
    for c in out["sign_checks"]:
        print(f"| {c['comparison']} | {c['oof_gain']:+.4f} ± {c['oof_se']:.4f} | {c['test_gain']:+.4f} ± "
              f"{c['test_se']:.4f} | {'yes' if c['agree'] else 'NO'} |")
    print(f"\nblend >= best single run on test: {out['target']['blend_test_ge_best_single']}; OOF gains predict test "
          f"gains in sign: {out['sign_agreement']} (where the OOF gain exceeds 2 s.e.: "
          f"{out['sign_agreement_where_oof_gain_exceeds_2_se']}); wall {out['wall_seconds']:.0f} s, load average "
          f"{out['loadavg_start'][0]:.1f} -> {out['loadavg_end'][0]:.1f}; wrote {RESULTS}")


if __name__ == "__main__":
    main()

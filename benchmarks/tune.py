"""`podium tune` on a fixed budget: the tuned config's OOF CV against the default config's, and the confirmed
winner's score on held-out test labels beside it; the time per trial and Optuna's own overhead.

Data: a stratified subset of Fashion-MNIST (`make fashion-mnist`), the official test images held out (their labels
only score the two final choices; nothing is selected on them). Both configs train podium_cnn on the same persisted
folds; the search runs on fold 0 (pruned per epoch), the best --confirm trials are trained on every fold and the one
with the best OOF CV wins.

    .venv/bin/python benchmarks/tune.py [--n 6000] [--trials 8] [--epochs 3] [--folds 3] [--confirm 2]

Run here (2 CPU cores shared with other jobs, load ~15): --n 600 --trials 4 --epochs 2 --confirm 2, 18.5 minutes
(10 of them in `podium tune`); on an idle machine a fraction of that.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import yaml
from provenance import write_results  # benchmarks/provenance.py: commit, machine, load, versions

from podium.commands.predict import predict
from podium.commands.train import train
from podium.commands.tune import tune
from podium.config import load_config
from podium.data.datasets import make_dataset

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "tune.json"
SPACE = {  # what S0 and S4 tuned by hand
    "train.lr": {"loguniform": [3.0e-4, 1.0e-2]},
    "train.batch_size": [32, 64, 128],
    "train.weight_decay": {"loguniform": [1.0e-5, 1.0e-1]},
    "augment.preset": ["none", "light", "medium"],
    "model.drop_rate": {"uniform": [0.0, 0.3]},
}


def write_config(args, work: Path) -> Path:
    raw = {"name": "default", "output_dir": str(work / "runs"),
           "data": {"train_csv": str(work / "data" / "train.csv"), "test_csv": str(work / "data" / "test.csv"),
                    "image_dir": str(work / "data" / "images"),
                    "sample_submission": str(work / "data" / "sample_submission.csv"), "image_size": 28,
                    "cache_dir": str(work / "cache")},
           "cv": {"n_folds": args.folds},
           "model": {"name": "podium_cnn", "pretrained": False},
           # no warm-up: at a few epochs a warm-up epoch would be a large share of the default's budget
           "train": {"epochs": args.epochs, "warmup_epochs": 0, "eval_batch_size": 1024},
           "tune": {"space": SPACE, "folds": [0], "confirm": args.confirm, "sampler": "tpe", "pruner": args.pruner}}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_accuracy(run: Path, work: Path) -> float:
    sub = pd.read_csv(predict(run, tta="none", overwrite=True, oof=False).submission, dtype=str)
    truth = pd.read_csv(work / "data" / "test_labels.csv", dtype=str).set_index("id")["label"]
    return float((sub["label"].to_numpy() == truth.loc[sub["id"]].to_numpy()).mean())


def optuna_overhead(trials: int) -> float:
    """Seconds per trial Optuna itself spends (TPE sampling this space + the journal file), with a free objective."""
    import tempfile

    import optuna

    from podium.config import TuneConfig
    from podium.tune.space import dimensions, suggest
    from podium.tune.study import StudyDir, make_sampler, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dims = dimensions(TuneConfig(space=SPACE))
    with tempfile.TemporaryDirectory() as tmp:
        study = optuna.create_study(storage=open_storage(None, StudyDir(Path(tmp))), sampler=make_sampler("tpe", 0),
                                    direction="maximize")
        t0 = time.perf_counter()
        study.optimize(lambda t: sum(hash(str(v)) % 100 for v in suggest(t, dims).values()) / 500, n_trials=trials)
        return (time.perf_counter() - t0) / trials


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6000, help="training images (a stratified subset of the 60,000)")
    ap.add_argument("--trials", type=int, default=8, help="search trials (on fold 0)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--folds", type=int, default=3, help="cv.n_folds")
    ap.add_argument("--confirm", type=int, default=2, help="finalists trained on every fold")
    ap.add_argument("--pruner", default="hyperband")
    args = ap.parse_args()
    work = HERE / "work" / f"tune-n{args.n}"
    if not (work / "data" / "train.csv").exists():
        make_dataset("fashion-mnist", work / "data", n=args.n)
    config = write_config(args, work)

    t0 = time.time()
    default = train(load_config(config), overwrite=True)  # the default config, every fold
    t_default = time.time() - t0
    default_test = test_accuracy(work / "runs" / "default", work)

    t0 = time.time()
    summary = tune(config, trials=args.trials, study_name=f"s{int(t0)}")
    t_tune = time.time() - t0
    winner = summary["confirmed"][0]
    winner_test = test_accuracy(Path(winner["run"]), work)
    trials = summary["trials"]
    trial_s = [t["seconds"] for t in trials if t["seconds"] is not None]
    confirm_s = sum(json.loads(p.read_text())["seconds"] for r in summary["confirmed"]
                    for p in Path(r["run"]).glob("fold*/done.json") if not p.parent.name.endswith("fold0"))
    per_trial_optuna = optuna_overhead(args.trials)
    result = {
        "benchmark": "tune", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": vars(args), "space": SPACE,
        "default": {"cv": default["cv"], "cv_fold_std": default["cv_fold_std"], "test_accuracy": default_test,
                    "seconds": round(t_default, 1)},
        "tuned": {"trial": winner["trial"], "params": winner["params"], "cv": winner["cv"],
                  "cv_fold_std": winner["cv_fold_std"], "test_accuracy": winner_test,
                  "search_value_fold0": winner["search_value"]},
        "trials": {"n": len(trials), "pruned": sum(t["state"] == "pruned" for t in trials),
                   "seconds_mean": round(sum(trial_s) / len(trial_s), 1), "seconds_total": round(sum(trial_s), 1)},
        "tune_seconds": round(t_tune, 1), "confirm_train_seconds": round(confirm_s, 1),
        "outside_training_seconds": round(t_tune - sum(trial_s) - confirm_s, 1),
        "optuna_seconds_per_trial": round(per_trial_optuna, 4),
    }
    write_results(RESULTS, result)
    d, w = result["default"], result["tuned"]
    print(f"{'':28}{'OOF CV (' + str(args.folds) + ' folds)':>22}{'test accuracy':>16}")
    print(f"{'default config':28}{d['cv']:>14.4f} ± {d['cv_fold_std']:.4f}{d['test_accuracy']:>16.4f}")
    print(f"{'tuned (trial ' + str(w['trial']) + ')':28}{w['cv']:>14.4f} ± {w['cv_fold_std']:.4f}"
          f"{w['test_accuracy']:>16.4f}")
    print(f"{args.trials} trials ({result['trials']['pruned']} pruned), {result['trials']['seconds_mean']} s each; "
          f"podium tune {t_tune:.0f} s in all ({confirm_s:.0f} s confirming, {result['outside_training_seconds']} s "
          f"outside training); Optuna itself {per_trial_optuna * 1000:.1f} ms per trial; wrote {RESULTS}")


if __name__ == "__main__":
    main()

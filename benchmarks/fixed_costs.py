"""Where the fixed time of small data goes: the digits demo's competition folder -> submission, fold 0, as a user runs
it (`podium train CONFIG --folds 0`, then `podium predict RUN`, each its own process).

Inside each command, timers wrap podium's stages (the process start and imports, the data and decode-cache check,
the model, Lightning's Trainer and its fit, checkpoint writes, metrics.csv, the OOF prediction, the merge, the
prediction's set-up and work); what no timer covers is "other". Stages nest (checkpoint writes happen inside the
fit), so the table lists the fit's parts under it. The same script runs on older code (a stage it does not find is
left out), which is how before/after figures are made: PYTHONPATH=<old src> python benchmarks/fixed_costs.py.

    python benchmarks/fixed_costs.py [--epochs 2] [--repeat 3] [--n 1797] [--out FILE]

Writes benchmarks/results/fixed_costs.json (or --out); medians over --repeat runs of each command.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "fixed_costs.json"

# (stage, module, attribute): the attribute is replaced by a timed wrapper where the command looks it up
STAGES = {
    "train": [
        ("data: table, folds, cache check", "podium.commands.train", "load_data"),
        ("run folder: config, folds, classes", "podium.commands.train", "_prepare_run"),
        ("fold: model and loss", "podium.engine.fold", "build_module"),
        ("fold: Lightning Trainer set-up", "podium.engine.fold", "make_trainer"),
        ("fold: trainer.fit", "lightning.pytorch.trainer.trainer", "Trainer.fit"),
        ("  fit: checkpoint files written (in a thread where async)", "podium.engine.callbacks",
         "AtomicCheckpointIO.save_checkpoint"),
        ("  fit: checkpoints handed to the writer thread", "lightning.pytorch.plugins.io",
         "AsyncCheckpointIO.save_checkpoint"),
        ("  fit: metrics.csv", "podium.engine.callbacks", "EpochMetricsCSV.on_train_epoch_end"),
        ("  fit: training_step (forward, loss)", "podium.engine.module", "Classifier.training_step"),
        ("  fit: validation_step", "podium.engine.module", "Classifier.validation_step"),
        ("fold: best checkpoint read back", "podium.engine.fold", "load_checkpoint"),
        ("fold: OOF prediction", "podium.engine.fold", "predict_probs"),
        ("merge OOF and metrics", "podium.commands.train", "merge_folds"),
        ("tracking (run log)", "podium.commands.train", "log_run"),
    ],
    "predict": [
        ("test table", "podium.commands.predict", "load_test"),
        ("test decode cache", "podium.commands.predict", "build_cache"),
        ("fold model from checkpoint", "podium.commands.predict", "load_fold_module"),
        ("test prediction", "podium.commands.predict", "predict_probs"),
        ("OOF with TTA (all of it)", "podium.commands.predict", "oof_with_tta"),
        ("submission", "podium.commands.predict", "align_submission"),
    ],
}


def _install(stages, totals: dict) -> None:
    for label, module_name, attr in stages:
        owner = importlib.import_module(module_name)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        real = getattr(owner, name, None) if owner is not None else None
        if real is None:
            continue  # older or newer code without this stage

        def timed(*args, _real=real, _label=label, **kwargs):
            t = time.perf_counter()
            try:
                return _real(*args, **kwargs)
            finally:
                totals[_label] = totals.get(_label, 0.0) + time.perf_counter() - t

        setattr(owner, name, timed)


def child(command: str, argv: list[str], report: Path) -> None:
    """Runs in the command's own process: imports, timers, then the CLI exactly as `podium ...` runs it."""
    t0 = time.perf_counter()
    totals: dict[str, float] = {}
    import podium.cli

    importlib.import_module(f"podium.commands.{command}")  # what the command imports before it starts working
    totals["imports (podium, torch, Lightning, ...)"] = time.perf_counter() - t0
    _install(STAGES[command], totals)
    sys.argv = ["podium", command, *argv]
    try:
        podium.cli.main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    totals["in process"] = time.perf_counter() - t0
    report.write_text(json.dumps(totals))


def run(command: str, argv: list[str], work: Path) -> dict:
    report = work / f"{command}-times.json"
    t = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--_child", command, "--_report", str(report), "--", *argv],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    times = json.loads(report.read_text())
    times["process start (interpreter)"] = wall - times["in process"]
    times["wall"] = wall
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n", type=int, default=None, help="digits images (default all 1,797)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--_child", default=None)
    ap.add_argument("--_report", type=Path, default=None)
    ap.add_argument("rest", nargs="*")
    args = ap.parse_args()
    if args._child:
        return child(args._child, args.rest, args._report)
    sys.path.insert(0, str(HERE))
    from provenance import write_results

    from podium.commands.demo import demo_config
    from podium.config import save_config
    from podium.data.scenarios.digits import write_digits_competition

    work = Path(tempfile.mkdtemp(prefix="podium-fixed-"))
    write_digits_competition(work / "data", n=args.n)
    config = work / "config.yaml"
    save_config(demo_config(work, args.epochs), config)
    runs: dict[str, list[dict]] = {"train": [], "predict": []}
    for r in range(args.repeat):
        if r:
            shutil.rmtree(work / "runs")  # the cache stays: a user's second run finds it
        runs["train"].append(run("train", [str(config), "--folds", "0"], work))
        runs["predict"].append(run("predict", [str(work / "runs" / "digits-cnn"), "--tta", "none"], work))
    medians = {cmd: {k: round(statistics.median(r[k] for r in rows if k in r), 3) for k in rows[-1]}
               for cmd, rows in runs.items()}
    for cmd, times in medians.items():
        covered = sum(v for k, v in times.items()
                      if not k.startswith("  ") and k not in ("wall", "in process"))
        times["other"] = round(times["wall"] - covered, 3)
        print(f"podium {cmd}: {times['wall']:.2f} s")
        for k, v in times.items():
            if k != "wall":
                print(f"  {k:<40} {v:6.2f} s")
    write_results(args.out, {"benchmark": "fixed_costs", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             "settings": {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "rest"},
                             "median_seconds": medians, "runs": runs})
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

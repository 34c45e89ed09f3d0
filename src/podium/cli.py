"""The `podium` command: a thin map from each command onto one library call.

Every user-fixable problem is a PodiumError: printed in one message, exit code 2, no traceback unless --debug.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from podium.errors import PodiumError

console = Console(stderr=True)
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="podium: from an image-classification competition folder to a trusted submission.")
config_app = typer.Typer(no_args_is_help=True, help="Inspect configs.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect and check the competition data.")
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
datasets_app = typer.Typer(no_args_is_help=True, help="Offline data sets written as competition folders.")
app.add_typer(datasets_app, name="datasets")
augment_app = typer.Typer(no_args_is_help=True, help="See the training augmentation.")
app.add_typer(augment_app, name="augment")
weights_app = typer.Typer(no_args_is_help=True, help="timm's pretrained weights in the local cache.")
app.add_typer(weights_app, name="weights")

_state = {"debug": False}
OVERRIDES = typer.Argument(None, help="dotted key=value overrides, e.g. train.epochs=3", show_default=False)


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show full tracebacks")):
    _state["debug"] = debug


def _cfg(config: Path, overrides: list[str] | None):
    from podium.config import load_config
    from podium.tasks.check import check_config

    return check_config(load_config(config, overrides or []))


@config_app.command("show")
def config_show(config: Optional[Path] = typer.Argument(None, help="YAML config (omit for the defaults)"),
                overrides: Optional[list[str]] = OVERRIDES):
    """Print the resolved config: file + overrides + defaults.

    Guide: README.md (Your own competition)
    """
    from podium.config import to_yaml

    if config is not None and "=" in str(config) and not config.exists():  # only overrides were given
        config, overrides = None, [str(config), *(overrides or [])]
    print(to_yaml(_cfg(config, overrides)), end="")


@data_app.command("check")
def data_check(config: Path, overrides: Optional[list[str]] = OVERRIDES,
               strict: bool = typer.Option(False, "--strict", help="also exit 2 on leakage findings and warnings"),
               near_dup_distance: Optional[int] = typer.Option(None, "--near-dup-distance", help="search radius for "
                                                               "near-duplicates: most differing bits of a 64-bit "
                                                               "perceptual hash (default 6; -1: off)")):
    """Read every image once and report counts, classes, sizes and every problem found (exit 2 if any).

    Guide: docs/data.md, docs/folds-and-leakage.md
    """
    from podium.data.check import check_data, print_check
    from podium.data.leakage import NEAR_DUP_DISTANCE

    distance = NEAR_DUP_DISTANCE if near_dup_distance is None else near_dup_distance
    report = check_data(_cfg(config, overrides), near_dup_distance=distance)
    print_check(report)
    if report.problems or (strict and (report.leakage or report.warnings)):
        raise typer.Exit(2)


@app.command("split")
def split(config: Path, overrides: Optional[list[str]] = OVERRIDES,
          overwrite: bool = typer.Option(False, "--overwrite", help="replace a folds file made differently")):
    """Write the persisted K-fold split (folds.csv) that every later command reuses.

    Guide: docs/folds-and-leakage.md
    """
    from podium.data.splits import make_folds_file

    path, frame, status = make_folds_file(_cfg(config, overrides), overwrite=overwrite)
    counts = frame["fold"].value_counts().sort_index()
    console.print(f"[green]{status}[/] {path}: {len(frame)} images in {len(counts)} folds "
                  f"({', '.join(str(c) for c in counts)})")


def _floats(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise PodiumError(f"--weights '{text}' must be numbers separated by commas, e.g. --weights 0.6,0.4") from None


@app.command("ensemble")
def ensemble(runs: Optional[list[Path]] = typer.Argument(None, help="run folders trained on the same folds"),
             method: str = typer.Option("mean", "--method", help="mean | vote | weighted | rank"),
             optimize: bool = typer.Option(False, "--optimize", help="fit weights on the joined OOF (weighted)"),
             weights: Optional[str] = typer.Option(None, "--weights", help="explicit weights, e.g. 0.6,0.4"),
             files: Optional[list[Path]] = typer.Option(None, "--files", help="combine these CSVs instead (repeat)"),
             out: Optional[Path] = typer.Option(None, "--out", help="output folder (runs) or CSV file (--files)"),
             overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out (an earlier "
                                            "ensemble folder, or the --files CSV)")):
    """Blend runs on their out-of-fold predictions (scored), then on test; or combine anyone's CSV files.

    Guide: docs/ensembles.md
    """
    from rich.table import Table

    from podium.commands.ensemble import ensemble_files, ensemble_runs
    from podium.run.files import OOF

    if files:
        if out is None:
            raise PodiumError("--files needs --out FILE.csv for the combined submission.")
        res = ensemble_files(files, out, _floats(weights), overwrite=overwrite)
        console.print(f"[green]wrote[/] {res.out}: {res.n} rows, {res.kind} of {len(files)} files")
        return
    res = ensemble_runs(runs or [], method=method, optimize=optimize, weights=_floats(weights), out=out,
                        overwrite=overwrite)
    table = Table(title=f"OOF {res.metric} ({res.method})")
    table.add_column("predictions")
    table.add_column(res.metric, justify="right")
    table.add_column("weight", justify="right")
    for name, score in res.oof_scores.items():
        table.add_row(name, f"{score:.4f}", f"{res.weights[name]:.3f}" if name in res.weights else "")
    Console().print(table)
    tta = {name: f for name, f in res.oof_files.items() if f != OOF}
    if tta:  # the OOF that matches each run's test_probs.csv (`podium predict --tta`)
        console.print("OOF with TTA, as the test probabilities: " + ", ".join(f"{n} ({f})" for n, f in tta.items()))
    console.print(f"[green]wrote[/] {res.out}" + ("" if res.submission is not None else
                  " (OOF only: run `podium predict` on every run to blend the test set too)"))


@app.command("diff")
def diff(a: Path, b: Path, out: Optional[Path] = typer.Option(None, "--out", help="also write the list as CSV"),
         overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out file")):
    """List the ids where two submissions (or probability files) disagree, with both labels.

    Guide: docs/ensembles.md
    """
    from rich.table import Table

    from podium.commands.ensemble import diff_submissions
    from podium.io import atomic_write_csv
    from podium.run.outputs import check_out

    if out is not None:  # refused before the work
        check_out(out, overwrite, {"file A": a, "file B": b})
    rows = diff_submissions(a, b)
    table = Table(title=f"{len(rows)} disagreement(s): a = {a}, b = {b}")
    for col in rows.columns:
        table.add_column(col)
    for r in rows.head(50).itertuples(index=False):
        table.add_row(*(str(v) for v in r))
    Console().print(table)
    if len(rows) > 50:
        console.print(f"(first 50 of {len(rows)}; --out FILE.csv writes them all)")
    if out is not None:
        atomic_write_csv(out, rows)


def _fold_list(text: str | None) -> list[int] | str | None:
    if not text:
        return None
    if text.strip() == "next":
        return "next"
    try:
        return [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise PodiumError(f"--folds '{text}' must be fold numbers separated by commas, e.g. --folds 0,2") from None


@app.command("train")
def train(config: Path, overrides: Optional[list[str]] = OVERRIDES,
          folds: Optional[str] = typer.Option(None, "--folds", help="folds to train, e.g. 0,2 (default: all); next: "
                                              "the next fold no machine has taken, until none is left (--mirror)"),
          resume: bool = typer.Option(False, "--resume", help="continue unfinished folds, skip finished ones"),
          overwrite: bool = typer.Option(False, "--overwrite", help="retrain folds that already exist"),
          mirror: Optional[str] = typer.Option(None, "--mirror", help="copy the run as it is written to URL/<name> "
                                               "(s3://..., file://...; default: the config's mirror)")):
    """Train the folds of the persisted split into <output_dir>/<name>, then merge out-of-fold predictions.

    Guide: docs/training.md
    """
    from podium.commands.train import train as run_training
    from podium.report.terminal import print_metrics

    cfg = _cfg(config, overrides)
    metrics = run_training(cfg, _fold_list(folds), resume=resume, overwrite=overwrite, config_path=config,
                           mirror=mirror)
    if metrics is not None:  # None: a process of a multi-device run other than rank 0, which prints them
        print_metrics(metrics, Path(cfg.output_dir) / cfg.name)


@app.command("tune")
def tune(config: Optional[Path] = typer.Argument(None, help="YAML config with a tune: section (omit with --show)"),
         overrides: Optional[list[str]] = OVERRIDES,
         trials: int = typer.Option(20, "--trials", help="trials in total, across every worker of the study"),
         timeout: Optional[float] = typer.Option(None, "--timeout", help="start no trial after this many seconds"),
         storage: Optional[str] = typer.Option(None, "--storage", help="postgresql://user:pw@host/db shared by many "
                                               "machines (default: a journal file in <output_dir>/tune-<study>/)"),
         study: Optional[str] = typer.Option(None, "--study", help="the study's name (default: the config's name)"),
         show: Optional[str] = typer.Option(None, "--show", help="print study STUDY (a tune-<study> folder or a name "
                                            "under --output-dir): leaderboard, importances, best config"),
         output_dir: Path = typer.Option(Path("runs"), "--output-dir", help="with --show NAME: where tune-NAME is")):
    """Search tune.space with Optuna on the persisted folds, then retrain the best on every fold (best.yaml).

    Guide: docs/tuning.md
    """
    from podium.commands.tune import show as show_study
    from podium.commands.tune import tune as run_tune
    from podium.report.terminal import print_study

    if show is not None:
        print_study(show_study(show, storage, output_dir))
        return
    if config is None:
        raise PodiumError("podium tune takes a CONFIG (with a tune: section), or --show STUDY.")
    print_study(run_tune(config, overrides or [], trials=trials, timeout=timeout, storage=storage, study_name=study))


@app.command("predict")
def predict(run: Path,
            tta: Optional[str] = typer.Option(None, "--tta", help="views added to the identity, e.g. hflip,vflip "
                                              "(`podium list tta`; none = no TTA; default: the run's tta.views)"),
            tta_combine: Optional[str] = typer.Option(None, "--tta-combine", help="mean_probs | mean_logits "
                                                      "(default: the run's tta.combine)"),
            no_oof: bool = typer.Option(False, "--no-oof", help="skip re-predicting the OOF images with TTA"),
            test_csv: Optional[Path] = typer.Option(None, "--test-csv", help="predict this test CSV instead"),
            out: Optional[Path] = typer.Option(None, "--out", help="submission path (default RUN/submission.csv)"),
            overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out file"),
            no_posthoc: bool = typer.Option(False, "--no-posthoc", help="ignore RUN/posthoc.json (`podium posthoc`)"),
            mirror: Optional[str] = typer.Option(None, "--mirror", help="pull RUN from URL/<RUN's name> if it is not "
                                                 "here, and mirror what predict writes there")):
    """Average every finished fold (with TTA) on the test set; write submission.csv aligned with the template.

    With TTA, each fold's OOF images are predicted again with the same views: OOF without vs with TTA is printed.

    Guide: docs/predict.md, docs/augmentation-and-tta.md
    """
    from podium.commands.predict import predict as run_predict

    res = run_predict(run, tta=tta, test_csv=test_csv, out=out, overwrite=overwrite, posthoc=not no_posthoc,
                      how=tta_combine, oof=not no_oof, mirror=mirror)
    if res.oof is not None:
        Console().print(_oof_tta_table(res))
    console.print(f"[green]wrote[/] {res.submission} ({res.n} rows; folds {res.folds}, TTA {res.tta}"
                  f" ({len(res.views)} views, {res.combine}, {res.test_seconds:.0f} s)"
                  f"{', post-hoc ' + res.posthoc if res.posthoc else ''}) and {res.test_probs}")


@app.command("pull")
def pull(url: str = typer.Argument(..., help="the run's mirror: <mirror>/<name>, e.g. s3://bucket/runs/baseline"),
         dest: Optional[Path] = typer.Argument(None, help="the run folder to write (default runs/<name>)")):
    """Restore a run from its mirror, every file checked against the manifest; a folder holding another run is refused.

    Guide: docs/mirror.md
    """
    from podium.commands.mirror import pull_run

    res = pull_run(url, dest, note=lambda text: console.print(text, highlight=False, markup=False))
    console.print(f"[green]pulled[/] {url} into {res['run']}: {res['files']} file(s) written; folds finished "
                  f"{res['folds_done'] or 'none'}, unfinished {res['folds_unfinished'] or 'none'}")


def _oof_tta_table(res: dict):
    from rich.table import Table

    oof = res.oof
    table = Table(title=f"OOF without and with TTA {res.tta} ({res.combine}; {oof.n} images, folds "
                        f"{oof.folds}; {oof.images_predicted} predictions in {oof.seconds:.0f} s)")
    for col in ("OOF score", "no TTA", f"TTA {res.tta}", "gain"):
        table.add_column(col, justify="left" if col == "OOF score" else "right")
    for name in dict.fromkeys([oof.metric, *(["accuracy"] if "accuracy" in oof.plain else [])]):
        before, after = oof.plain[name], oof.tta[name]
        table.add_row(name, f"{before:.4f}", f"{after:.4f}", f"{after - before:+.4f}")
    return table


@app.command("posthoc")
def posthoc(run: Path,
            method: Optional[str] = typer.Option(None, "--method", help="logit_adjust | prior (default: the run's "
                                                 "posthoc.method, else logit_adjust)"),
            tau: Optional[float] = typer.Option(None, "--tau", help="logit_adjust: use this tau instead of fitting it"),
            metric: Optional[str] = typer.Option(None, "--metric", help="metric to fit tau for (default: cv.metric)")):
    """Fit a long-tail correction on RUN's OOF (RUN/posthoc.json); `podium predict RUN` then applies it.

    Guide: docs/long-tails.md
    """
    from podium.posthoc import summary
    from podium.run.decisions import fit_run
    from podium.run.rundir import RunDir

    rd = RunDir(run)
    cfg = rd.load_config()
    method = method or (cfg.posthoc.method if cfg.posthoc.method != "none" else "logit_adjust")
    params = fit_run(run, method, metric or cfg.cv.metric, tau if tau is not None else cfg.posthoc.tau,
                     cfg.posthoc.tau_max)
    console.print(f"{summary(params)}; wrote {rd.posthoc_json}")


@app.command("demo")
def demo(data_only: Optional[Path] = typer.Option(None, "--data-only", help="only write the demo data to DIR"),
         out: Path = typer.Option(Path("demo"), "--out", help="folder for the demo's data and runs")):
    """Run the whole loop on scikit-learn's digits: data, folds, 5-fold training, TTA, submission, scores.

    Guide: README.md
    """
    from podium.data.scenarios.digits import write_digits_competition

    if data_only is not None:
        paths = write_digits_competition(data_only)
        console.print(f"[green]wrote[/] the digits competition to {data_only} ({', '.join(p.name for p in paths)})")
        return
    from podium.commands.demo import run_demo

    run_demo(out)


# `podium list WHAT`: the registries each WHAT shows, as "module:attribute", imported only when listed (most of
# them import torch). Every registry of the package is here (tests/test_registry.py checks).
LISTINGS: dict[str, tuple[str, ...]] = {
    "models": ("podium.models:PODIUM_MODELS", "podium.models:PRETRAINED"),
    "losses": ("podium.losses:LOSSES", "podium.losses:MULTILABEL_LOSSES"),
    "heads": ("podium.heads:HEADS",),
    "samplers": ("podium.samplers:SAMPLERS",),
    "augment": ("podium.augment:PRESETS",),
    "tta": ("podium.tta:TTA", "podium.tta:COMBINE"),
    "posthoc": ("podium.posthoc:POSTHOC",),
    "metrics": ("podium.metrics:METRICS_REGISTRY", "podium.metrics:MULTILABEL_METRICS_REGISTRY",
                "podium.tasks:MULTITASK_METRICS"),
    "strategies": ("podium.strategies:STRATEGIES",),
    "tasks": ("podium.tasks:TASKS",),
}


def registries(what: str):
    """The registries `podium list WHAT` shows; a PodiumError suggesting the closest WHAT."""
    import difflib
    import importlib

    if what not in LISTINGS:
        close = difflib.get_close_matches(what, list(LISTINGS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise PodiumError(f"podium list: no registry '{what}'.{hint} Known: {', '.join(LISTINGS)} "
                          "(`podium list` shows what each holds).")
    out = []
    for spec in LISTINGS[what]:
        module, attr = spec.split(":")
        out.append(getattr(importlib.import_module(module), attr))
    return out


def list_lines(what: str | None, pretrained: bool = False, pattern: str | None = None) -> list[str]:
    """What `podium list [WHAT]` prints: without WHAT one line per registry (what lists it, the config key that
    chooses from it, how many entries, when it applies); with WHAT each of its registries' entries, descriptions and
    parameters with their defaults. `podium list models --pretrained [FILTER]`: timm's pretrained weights (matching
    FILTER) and which are in the local cache (podium.hub)."""
    if pretrained or pattern is not None:
        if what != "models" or not pretrained:
            raise PodiumError("FILTER and --pretrained list timm's pretrained weights: `podium list models "
                              "--pretrained [FILTER]` (e.g. convnext_tiny, '*in22k*').")
        from podium.hub import listing

        return listing(pattern)
    if what is None:
        lines = [f"{'WHAT':<11} {'CONFIG KEY':<15} {'ENTRIES':>7}  WHEN"]
        for name in LISTINGS:
            lines += [f"{name:<11} {r.key:<15} {len(r):>7}  {r.scope}".rstrip() for r in registries(name)]
        return lines + ["", "`podium list WHAT` shows each entry, what it does, and its parameters with defaults.",
                        "`podium list models --pretrained [FILTER]`: timm's pretrained weights, and which are cached."]
    regs = registries(what)
    width = max(len(n) for r in regs for n in r.names()) + 2
    lines = []
    for r in regs:
        lines += ([""] if lines else []) + [f"{r.title()}:"] + [f"  {line}" for line in r.lines(width)]
    return lines


@app.command("list")
def list_registry(what: Optional[str] = typer.Argument(None, help=f"one of: {', '.join(LISTINGS)}; omit for the "
                                                       "list of registries", show_default=False, metavar="WHAT"),
                  pattern: Optional[str] = typer.Argument(None, help="with models --pretrained: an architecture, a "
                                                          "glob ('*in22k*') or any part of the weights' name",
                                                          show_default=False, metavar="FILTER"),
                  pretrained: bool = typer.Option(False, "--pretrained", help="models: timm's pretrained weights "
                                                  "(name.tag for model.name) and which are in the local cache")):
    """What a registry holds: every name a config key can take, what it does, its parameters and their defaults.

    Without WHAT: each registry, the config key that chooses from it, and how many entries it holds.
    `podium list models --pretrained [FILTER]`: timm's pretrained weights, their input size, which are cached.

    Guide: docs/layout.md, docs/training.md
    """
    for line in list_lines(what, pretrained, pattern):
        print(line)


@weights_app.command("fetch")
def weights_fetch(name: str = typer.Argument(..., help="timm's model name, with a tag (convnext_tiny.fb_in1k) or "
                                             "without (its default weights)", metavar="NAME"),
                  cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="the cache folder to download "
                                                           "into (default: HF_HUB_CACHE, ~/.cache/huggingface/hub)")):
    """Download timm's pretrained weights NAME into the local cache, for a machine without a network.

    Copy the cache folder to that machine, point HF_HUB_CACHE at it and set HF_HUB_OFFLINE=1: `podium train` then
    reads the weights from it without trying the network.

    Guide: docs/training.md
    """
    from podium.hub import cache_folder, cached_file, fetch, require_hub_weights

    w = require_hub_weights(name)
    found = cached_file(w, cache_dir)
    path = found or fetch(w, cache_dir)
    state = "already cached" if found else "[green]fetched[/]"
    folder = escape(str(cache_folder(w, cache_dir)))
    var = "HF_HUB_CACHE" if w.repo else "TORCH_HOME (its hub/checkpoints folder)"
    console.print(f"{state}: {w.name} -> {escape(str(path))}\nFor a machine without a network: copy the folder "
                  f"{folder} there, point {var} at it and set HF_HUB_OFFLINE=1.", soft_wrap=True)  # paths kept whole


@augment_app.command("preview")
def augment_preview(config: Path, overrides: Optional[list[str]] = OVERRIDES,
                    n: int = typer.Option(16, "--n", help="number of training images in the grid"),
                    out: Path = typer.Option(Path("augment_preview.png"), "--out", help="the PNG file written"),
                    seed: int = typer.Option(0, "--seed", help="which images, and their augmentation"),
                    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out file")):
    """Write a PNG grid of augmented training images: what the model sees while training.

    Guide: docs/augmentation-and-tta.md
    """
    from podium.commands.preview import write_preview

    res = write_preview(_cfg(config, overrides), out, n=n, seed=seed, overwrite=overwrite, config_path=config)
    console.print(f"[green]wrote[/] {res.out}: {res.n} training images, augment.preset={res.preset} "
                  f"({res.size[0]}x{res.size[1]} px)")


@datasets_app.command("list")
def datasets_list():
    """The data sets `podium datasets make` can write.

    Guide: docs/data.md
    """
    from podium.data.datasets import DATASETS

    for name, (_, description) in DATASETS.items():
        print(f"{name:16s} {description}")


@datasets_app.command("make")
def datasets_make(name: str, out: Path, n: Optional[int] = typer.Option(None, "--n", help="number of train images"),
                  seed: int = typer.Option(0, "--seed", help="seed of any sampling"),
                  imbalance: Optional[float] = typer.Option(None, "--imbalance", help="long-tailed sets: largest / "
                                                            "smallest class (fashion-lt: default 100)")):
    """Write data set NAME into folder OUT as a competition (images/, train.csv, test.csv, ...).

    Guide: docs/data.md
    """
    from podium.data.datasets import make_dataset

    paths = make_dataset(name, out, n, seed, imbalance=imbalance)
    console.print(f"[green]wrote[/] {name} to {out} ({', '.join(p.name for p in paths)})")


@app.command("report")
def report(runs: list[Path] = typer.Argument(..., help="a run folder; with --compare: two runs or prediction CSVs"),
           compare: bool = typer.Option(False, "--compare", help="compare two runs (or submission/OOF files)"),
           out: Optional[Path] = typer.Option(None, "--out", help="HTML file (default RUN/report.html)"),
           gallery: int = typer.Option(24, "--gallery", help="highest-loss OOF images shown"),
           gradcam: int = typer.Option(8, "--gradcam", help="of those, how many get Grad-CAM overlays (0 = off)"),
           overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out file")):
    """Write one self-contained HTML page on what a run gets wrong (or, with --compare, how two runs differ).

    Guide: docs/reports-and-tracking.md
    """
    if compare:
        if len(runs) != 2:
            raise PodiumError(f"--compare takes two runs or prediction files, got {len(runs)}.")
        from podium.report.compare import compare as run_compare

        res = run_compare(runs[0], runs[1], out=out, overwrite=overwrite)
        for name, scores in res.scores.items():
            console.print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if v == v))
        console.print(f"{res.n_differ} of {res.n} ids predicted differently; [green]wrote[/] {res.out}")
        return
    if len(runs) != 1:
        raise PodiumError(f"podium report takes one run folder (got {len(runs)}); to compare two, add --compare.")
    from podium.tune.study import StudyDir

    if StudyDir(runs[0]).info.exists():  # a `podium tune` study folder: its own page
        from podium.commands.tune import study_report

        console.print(f"[green]wrote[/] {study_report(runs[0], out)}")
        return
    from podium.report.build import build_report

    page = build_report(runs[0], out=out, gallery=gallery, gradcam=gradcam, overwrite=overwrite)
    console.print(f"[green]wrote[/] {page}")


@app.command("errors")
def errors(run: Path,
           out: Optional[Path] = typer.Argument(None, help="the folder of image copies (not with --suspect)"),
           all_images: bool = typer.Option(False, "--all", help="every OOF image, not only the misclassified"),
           overwrite: bool = typer.Option(False, "--overwrite", help="replace a folder written by an earlier call"),
           suspect: bool = typer.Option(False, "--suspect", help="list likely mislabels: the images the OOF gives "
                                        "most confidently to another class; write them as a CSV for data.exclude"),
           top: Optional[int] = typer.Option(None, "--top", help="--suspect: this many images"),
           fraction: Optional[float] = typer.Option(None, "--fraction",
                                                    help="--suspect: this share of the OOF images (default 0.02)"),
           csv: Optional[Path] = typer.Option(None, "--out", help="--suspect: the CSV (default RUN/suspects.csv)")):
    """Copy misclassified (or all) OOF images into OUT/<true>/<pred>/ to flip through in an image viewer; or, with
    --suspect, list the likely mislabels and write them as a CSV that data.exclude reads.

    Guide: docs/reports-and-tracking.md, docs/label-review.md
    """
    if suspect:
        if out is not None or all_images:
            raise PodiumError("--suspect writes a CSV, not image folders: name it with --out (drop OUT and --all).")
        _suspects(run, top, fraction, csv, overwrite)
        return
    if out is None or top is not None or fraction is not None or csv is not None:
        raise PodiumError("podium errors RUN OUT copies the mistakes into the folder OUT; --top, --fraction and "
                          "--out go with --suspect.")
    from podium.report.folders import export_errors

    res = export_errors(run, out, include_all=all_images, overwrite=overwrite)
    console.print(f"[green]wrote[/] {res.written} images ({res.wrong} misclassified) into {res.out}/<true>/"
                  f"<pred>/; index: {res.index}" + (f"; {res.missing} not found" if res.missing else ""))


def _suspects(run: Path, top: Optional[int], fraction: Optional[float], csv: Optional[Path], overwrite: bool) -> None:
    from rich.table import Table

    from podium.report.suspects import write_suspects

    res = write_suspects(run, top=top, fraction=fraction, out=csv, overwrite=overwrite)
    table = Table("#", "id", "fold", "given", "suspected", "confidence", title=f"{len(res.table)} likely mislabels of "
                  f"{res.n} OOF images (most confident first)")
    for i, r in enumerate(res.table.itertuples(index=False), 1):
        table.add_row(str(i), str(r.id), str(r.fold), str(r.given), str(r.suspected), f"{r.confidence:.3f}")
    console.print(table)
    console.print(f"[green]wrote[/] {res.out}: set each row's action to drop or relabel (to `suspected`), then train a "
                  f"new run with data.exclude={res.out}; `podium report {run}` shows their images.")


@app.command("pseudo")
def pseudo(source: Path = typer.Argument(..., help="a run, or a `podium ensemble` folder, with test predictions"),
           out: Path = typer.Option(..., "--out", help="the new folder: chosen images, record, config"),
           threshold: Optional[str] = typer.Option(None, "--threshold", help="keep images whose top probability "
                                                   "reaches this (default 0.9); per class: 0.9,cat=0.95"),
           top_fraction: Optional[float] = typer.Option(None, "--top-fraction", help="keep this share of each "
                                                        "predicted class, most confident first"),
           soft: bool = typer.Option(False, "--soft", help="train on the probabilities, not the top class (alone: "
                                     "every pool image)"),
           pool: Optional[Path] = typer.Option(None, "--pool", help="other unlabeled images (a folder, or a CSV of "
                                               "ids like data.test_csv), predicted by the SOURCE run"),
           name: Optional[str] = typer.Option(None, "--name", help="the new run's name (default <source>-pseudo)"),
           overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier `podium pseudo` --out")):
    """Pseudo-label unlabeled images: a config that trains on the labeled images plus the confident pool images,
    which join training folds only (validation, OOF and CV stay on the labeled images).

    Guide: docs/pseudo-labels.md
    """
    from podium.commands.pseudo import pseudo as make_pseudo
    from podium.commands.pseudo import summary

    res = make_pseudo(source, out, threshold, top_fraction, soft, pool, name, overwrite)
    for line in summary(res.record):
        console.print(line, highlight=False, markup=False)
    kind = "probabilities" if res.record["soft"] else "hard labels"
    console.print(f"[green]wrote[/] {res.out}: {res.record['kept']} of {res.record['pool_images']} pool images as "
                  f"{kind}; train them with `podium train {res.config}`", soft_wrap=True)


@app.command("runs")
def runs_leaderboard(output_dir: Path = typer.Argument(Path("runs"), help="the output_dir holding the runs"),
                     csv: Optional[Path] = typer.Option(None, "--csv",
                                                        help="CSV path (default OUTPUT_DIR/leaderboard.csv)"),
                     overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --csv file")):
    """A leaderboard of every run under OUTPUT_DIR, best CV first: printed, and written as CSV.

    Guide: docs/reports-and-tracking.md
    """
    from podium.report.runs import list_runs

    list_runs(output_dir, csv=csv, console=Console(), overwrite=overwrite)



@app.command("export")
def export(run: Path,
           folds: str = typer.Option("all", "--folds", help="folds in the graph: all (the finished ones) or e.g. 0,1"),
           tta: Optional[str] = typer.Option(None, "--tta", help="views inside the graph, e.g. hflip (`podium list "
                                             "tta`; none = no TTA; default: the run's tta.views)"),
           tta_combine: Optional[str] = typer.Option(None, "--tta-combine", help="mean_probs | mean_logits"),
           fmt: str = typer.Option("onnx", "--format", help="onnx"),
           out: Optional[Path] = typer.Option(None, "--out", help="export folder (default RUN/onnx_export)"),
           overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier export in --out"),
           no_posthoc: bool = typer.Option(False, "--no-posthoc", help="leave RUN/posthoc.json out of the graph")):
    """One ONNX graph (uint8 images in, the run's probabilities out: folds, TTA, normalisation inside) and
    manifest.json; checked against PyTorch on the run's images before it is written.

    Guide: docs/shipping.md
    """
    from podium.commands.ship import export as run_export

    res = run_export(run, None if folds == "all" else _fold_list(folds), tta, tta_combine, fmt, out, overwrite,
                     not no_posthoc)
    console.print(f"[green]wrote[/] {res.out} (folds {res.folds}, {len(res.tta)} view(s); ONNX Runtime vs PyTorch on "
                  f"{res.parity_images} images: max |diff| {res.max_diff:.1e}; {res.seconds:.0f} s)")



@app.command("package")
def package(run: Path,
            target: str = typer.Option("script", "--target", help="script | docker (adds a Dockerfile)"),
            out: Optional[Path] = typer.Option(None, "--out", help="package folder (default RUN/submission_package)"),
            overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier package in --out"),
            check: bool = typer.Option(False, "--check", help="run it in a fresh venv on the test images and compare "
                                       "with `podium predict`")):
    """A folder + zip that predicts test images into submission.csv without podium (code submission): predict.py,
    model.onnx, manifest.json, requirements.txt (onnxruntime, numpy, pillow, pandas), a Dockerfile.

    Guide: docs/shipping.md
    """
    from podium.commands.ship import check_package
    from podium.commands.ship import package as run_package

    res = run_package(run, target, out, overwrite)
    console.print(f"[green]wrote[/] {res.out} ({', '.join(res.files)}) and {res.zip}")
    if check:
        done = check_package(run, res.out)
        console.print(f"[green]checked[/]: {done.rows} rows, labels identical to `podium predict`, max |diff| "
                      f"{done.max_diff:.1e} ({done.venv}; {done.seconds:.0f} s)")



@app.command("serve")
def serve(target: Path = typer.Argument(..., help="a run folder (its export, written first if missing) or an export"),
          host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: every interface)"),
          port: int = typer.Option(8000, "--port"),
          token: Optional[str] = typer.Option(None, "--token", envvar="PODIUM_TOKEN",
                                              help="require 'Authorization: Bearer TOKEN' (or set PODIUM_TOKEN)"),
          max_body_mb: float = typer.Option(20.0, "--max-body-mb", help="largest request body (MiB)"),
          max_pixels: int = typer.Option(50_000_000, "--max-pixels", help="largest image, width x height"),
          max_images: int = typer.Option(64, "--max-images", help="most images in one request"),
          top_k: int = typer.Option(5, "--top-k", help="classes returned per image"),
          threads: Optional[int] = typer.Option(None, "--threads", help="ONNX Runtime threads (default: all cores)")):
    """HTTP server over the run's ONNX export: POST /predict, GET /health, GET /model, OpenAPI docs at /docs.

    Guide: docs/shipping.md
    """
    from podium.commands.ship import serve as run_serve
    from podium.ship.serve import Limits

    console.print(f"serving {target} on http://{host}:{port} (docs: /docs)")
    run_serve(target, host, port, token, Limits(max_body=int(max_body_mb * 1024 * 1024), max_pixels=max_pixels,
                                                max_images=max_images), top_k, threads)


# errno -> (what went wrong, how to fix it): the OS errors a user can fix
_OS_PROBLEMS = {
    errno.EACCES: ("permission denied", "check its permissions, or write elsewhere (output_dir=..., --out ...)"),
    errno.EPERM: ("operation not permitted", "check its permissions, or write elsewhere (output_dir=..., --out ...)"),
    errno.EROFS: ("the file system is read-only", "write to another disk (output_dir=..., --out ...)"),
    errno.ENOSPC: ("no space left on the disk", "free space there, or set output_dir=... (and data.cache_dir=...) "
                   "to a disk with room"),
    errno.EDQUOT: ("the disk quota is exceeded", "free space there, or set output_dir=... to another disk"),
    errno.ENAMETOOLONG: ("the file name is too long", "use a shorter name= or output_dir=..."),
    errno.ENOENT: ("no such file or folder", "check the path"),
}


def os_error_message(exc: OSError) -> str | None:
    """One line naming the file and the problem, for the OS errors a user can fix; None for the others (and for a
    missing file that the error does not name: nothing to tell the user)."""
    if exc.errno not in _OS_PROBLEMS or (exc.errno == errno.ENOENT and not exc.filename):
        return None
    problem, fix = _OS_PROBLEMS[exc.errno]
    files = " -> ".join(f"'{f}'" for f in (exc.filename, exc.filename2) if f)
    return f"{files}: {problem}. Fix: {fix}." if files else f"{problem[0].upper()}{problem[1:]}. Fix: {fix}."


def main() -> None:
    """Entry point: turn PodiumErrors (and the OS errors a user can fix) into one message and exit code 2."""
    try:
        rc = app(standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except PodiumError as exc:
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)  # messages may hold [brackets]
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except OSError as exc:  # last resort: a disk or permission problem a step of podium did not translate itself
        message = os_error_message(exc)
        if message is None or _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        sys.exit(2)
    except Exception as exc:  # usage errors from typer's click: they know how to show themselves
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        raise

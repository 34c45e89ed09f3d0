"""The `podium` command: a thin map from each command onto one library call.

Every user-fixable problem is a PodiumError: printed in one message, exit code 2, no traceback unless --debug.
"""

from __future__ import annotations

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
list_app = typer.Typer(no_args_is_help=True, help="List what a registry holds.")
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
datasets_app = typer.Typer(no_args_is_help=True, help="Offline data sets written as competition folders.")
app.add_typer(list_app, name="list")
app.add_typer(datasets_app, name="datasets")

_state = {"debug": False}
OVERRIDES = typer.Argument(None, help="dotted key=value overrides, e.g. train.epochs=3", show_default=False)


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="show full tracebacks")):
    _state["debug"] = debug


def _cfg(config: Path, overrides: list[str] | None):
    from podium.config import load_config

    return load_config(config, overrides or [])


@config_app.command("show")
def config_show(config: Optional[Path] = typer.Argument(None, help="YAML config (omit for the defaults)"),
                overrides: Optional[list[str]] = OVERRIDES):
    """Print the resolved config: file + overrides + defaults."""
    from podium.config import to_yaml

    if config is not None and "=" in str(config) and not config.exists():  # only overrides were given
        config, overrides = None, [str(config), *(overrides or [])]
    print(to_yaml(_cfg(config, overrides)), end="")


@data_app.command("check")
def data_check(config: Path, overrides: Optional[list[str]] = OVERRIDES,
               strict: bool = typer.Option(False, "--strict", help="also exit 2 on leakage findings and warnings")):
    """Read every image once and report counts, classes, sizes and every problem found (exit 2 if any)."""
    from podium.data.check import check_data, print_check

    report = check_data(_cfg(config, overrides))
    print_check(report)
    if report.problems or (strict and (report.leakage or report.warnings)):
        raise typer.Exit(2)


@app.command("split")
def split(config: Path, overrides: Optional[list[str]] = OVERRIDES,
          overwrite: bool = typer.Option(False, "--overwrite", help="replace a folds file made differently")):
    """Write the persisted K-fold split (folds.csv) that every later command reuses."""
    from podium.data.splits import make_folds_file

    path, frame, status = make_folds_file(_cfg(config, overrides), overwrite=overwrite)
    counts = frame["fold"].value_counts().sort_index()
    console.print(f"[green]{status}[/] {path}: {len(frame)} images in {len(counts)} folds "
                  f"({', '.join(str(c) for c in counts)})")


def _fold_list(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise PodiumError(f"--folds '{text}' must be fold numbers separated by commas, e.g. --folds 0,2") from None


@app.command("train")
def train(config: Path, overrides: Optional[list[str]] = OVERRIDES,
          folds: Optional[str] = typer.Option(None, "--folds", help="folds to train, e.g. 0,2 (default: all)"),
          resume: bool = typer.Option(False, "--resume", help="continue unfinished folds, skip finished ones"),
          overwrite: bool = typer.Option(False, "--overwrite", help="retrain folds that already exist")):
    """Train the folds of the persisted split into <output_dir>/<name>, then merge out-of-fold predictions."""
    from podium.report import print_metrics
    from podium.train import train as run_training

    cfg = _cfg(config, overrides)
    metrics = run_training(cfg, _fold_list(folds), resume=resume, overwrite=overwrite)
    print_metrics(metrics, Path(cfg.output_dir) / cfg.name)


@app.command("predict")
def predict(run: Path, tta: str = typer.Option("none", "--tta", help="none | hflip | hflip+vflip"),
            test_csv: Optional[Path] = typer.Option(None, "--test-csv", help="predict this test CSV instead"),
            out: Optional[Path] = typer.Option(None, "--out", help="submission path (default RUN/submission.csv)"),
            overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out file")):
    """Average every finished fold (with TTA) on the test set; write submission.csv aligned with the template."""
    from podium.predict import predict as run_predict

    res = run_predict(run, tta=tta, test_csv=test_csv, out=out, overwrite=overwrite)
    console.print(f"[green]wrote[/] {res['submission']} ({res['n']} rows; folds {res['folds']}, TTA {res['tta']}) "
                  f"and {res['test_probs']}")


@app.command("demo")
def demo(data_only: Optional[Path] = typer.Option(None, "--data-only", help="only write the demo data to DIR"),
         out: Path = typer.Option(Path("demo"), "--out", help="folder for the demo's data and runs")):
    """Run the whole loop on scikit-learn's digits: data, folds, 5-fold training, TTA, submission, scores."""
    from podium.demo import write_digits_competition

    if data_only is not None:
        paths = write_digits_competition(data_only)
        console.print(f"[green]wrote[/] the digits competition to {data_only} ({', '.join(p.name for p in paths)})")
        return
    from podium.demo import run_demo

    run_demo(out)


@list_app.command("models")
def list_models():
    """Architectures with offline pretrained weights, and podium's own small networks."""
    from podium.models import describe_models

    for line in describe_models():
        print(line)


@datasets_app.command("list")
def datasets_list():
    """The data sets `podium datasets make` can write."""
    from podium.datasets import DATASETS

    for name, (_, description) in DATASETS.items():
        print(f"{name:16s} {description}")


@datasets_app.command("make")
def datasets_make(name: str, out: Path, n: Optional[int] = typer.Option(None, "--n", help="number of train images"),
                  seed: int = typer.Option(0, "--seed", help="seed of any sampling")):
    """Write data set NAME into folder OUT as a competition (images/, train.csv, test.csv, ...)."""
    from podium.datasets import make_dataset

    paths = make_dataset(name, out, n, seed)
    console.print(f"[green]wrote[/] {name} to {out} ({', '.join(p.name for p in paths)})")


def main() -> None:
    """Entry point: turn PodiumErrors into one message and exit code 2."""
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
    except Exception as exc:  # usage errors from typer's click: they know how to show themselves
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        raise

"""`podium export`, `podium serve`, `podium package [--check]`: calls into podium.ship (docs/shipping.md).

The package check lives here, above podium.ship, because it compares the package with `podium predict` itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from podium.errors import PodiumError
from podium.io import read_csv
from podium.run.rundir import RunDir
from podium.ship.manifest import PARITY_TOL
from podium.ship.package import Packaged, package_run
from podium.ship.serve import Limits
from podium.ship.serve import serve as serve_export

# modules the package's predict.py must run without: importing one fails the check
BLOCKED = ("podium", "torch", "torchvision", "timm", "lightning", "cv2", "sklearn")
_GUARD = """import sys, runpy
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError(f'the package must run without {{name}}')
sys.meta_path.insert(0, Block())
sys.argv = ['predict.py', *sys.argv[1:]]
runpy.run_path({script!r}, run_name='__main__')
"""


def export(run: Path, folds: list[int] | None = None, tta: str | None = None, how: str | None = None,
           fmt: str = "onnx", out: Path | None = None, overwrite: bool = False, posthoc: bool = True):
    """The run as one checked ONNX graph + manifest.json (podium.ship.export)."""
    from podium.ship.export import export_run  # PyTorch: `podium serve` starts without it

    return export_run(run, folds=folds, tta=tta, how=how, fmt=fmt, out=out, overwrite=overwrite, posthoc=posthoc)


def package(run: Path, target: str = "script", out: Path | None = None, overwrite: bool = False) -> Packaged:
    return package_run(run, target=target, out=out, overwrite=overwrite)


def serve(target: Path, host: str, port: int, token: str | None, limits: Limits, top_k: int = 5,
          threads: int | None = None) -> None:
    """Serve RUN's export or an export folder until interrupted (podium.ship.serve)."""
    serve_export(target, host=host, port=port, token=token, limits=limits, top_k=top_k, threads=threads)


@dataclass(frozen=True)
class Checked:
    """What `podium package --check` compared."""

    venv: str  # how the fresh environment got its packages
    rows: int
    labels_equal: bool
    max_diff: float  # max |package - podium predict| over every probability
    seconds: float


def check_package(run: Path, pkg: Path, workdir: Path | None = None, install: bool = True) -> Checked:
    """Run the package's predict.py in a fresh venv built from its requirements.txt on the run's test images and
    compare with `podium predict` (same folds, TTA, post-hoc): identical labels, probabilities within PARITY_TOL.
    `install=False` skips pip (the offline path of _venv: this environment's copies, podium still blocked)."""
    t0 = time.time()
    rd = RunDir(run)
    cfg = rd.load_config()
    manifest = json.loads((pkg / "manifest.json").read_text())
    if manifest["inside"]["folds"] != rd.finished_folds():
        raise PodiumError(f"The package holds folds {manifest['inside']['folds']}, but `podium predict` averages the "
                          f"finished folds {rd.finished_folds()}: check a package of every finished fold.")
    work = Path(workdir or tempfile.mkdtemp(prefix="podium-package-check-"))
    work.mkdir(parents=True, exist_ok=True)
    from podium.commands.predict import predict  # PyTorch: `podium serve` starts without it

    ours = predict(run, tta=manifest["tta"]["names"], how=manifest["tta"]["combine"], out=work / "podium.csv",
                   overwrite=True, posthoc=manifest["posthoc"] is not None, oof=False)
    python, how = _venv(work / "venv", pkg / "requirements.txt", install)
    images = cfg.data.test_dir or cfg.data.image_dir
    args = ["--images", str(images), "--out", str(work / "package.csv"), "--probs", str(work / "probs.csv")]
    if cfg.data.test_csv is not None:
        args += ["--csv", str(cfg.data.test_csv)]
    if cfg.data.sample_submission is not None:
        args += ["--template", str(cfg.data.sample_submission)]
    guard = _GUARD.format(blocked=BLOCKED, script=str(pkg / "predict.py"))
    done = subprocess.run([str(python), "-c", guard, *args], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise PodiumError(f"The package's predict.py failed in '{work / 'venv'}':\n{done.stderr.strip()[-2000:]}")
    theirs, podium_sub = read_csv(work / "package.csv", "the package's submission"), read_csv(ours.submission, "")
    probs = read_csv(work / "probs.csv", "").set_index("id")
    expected = read_csv(ours.test_probs, "").set_index("id").loc[probs.index, probs.columns]
    max_diff = float(np.abs(probs.to_numpy(float) - expected.to_numpy(float)).max())
    labels_equal = _same_submission(theirs, podium_sub)
    if not labels_equal or not max_diff <= PARITY_TOL:
        raise PodiumError(f"The package disagrees with `podium predict`: labels "
                          f"{'equal' if labels_equal else 'differ'}, max |diff| of probabilities {max_diff:.2e} "
                          f"(tolerance {PARITY_TOL:g}); files in '{work}'.")
    return Checked(venv=how, rows=len(theirs), labels_equal=True, max_diff=max_diff, seconds=round(time.time() - t0, 1))


def _same_submission(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Same columns, ids and order; text columns equal, numeric ones within PARITY_TOL."""
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    for col in a.columns:
        x, y = a[col], b[col]
        numeric = pd.to_numeric(x, errors="coerce"), pd.to_numeric(y, errors="coerce")
        if numeric[0].notna().all() and numeric[1].notna().all() and col != a.columns[0]:
            if not np.abs(numeric[0].to_numpy(float) - numeric[1].to_numpy(float)).max() <= PARITY_TOL:
                return False
        elif not (x.astype(str) == y.astype(str)).all():
            return False
    return True


def _venv(folder: Path, requirements: Path, install: bool = True) -> tuple[Path, str]:
    """A fresh venv with requirements.txt installed by pip (its configured indexes); offline, when pip cannot get
    those versions, the venv sees this environment's installed copies instead (podium and PyTorch stay blocked by
    the guard either way). Returns (its python, how it got its packages)."""
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True, capture_output=True)
    python = folder / "bin" / "python"
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--retries", "0",
                          "--timeout", "10", "-r", str(requirements)], capture_output=True, text=True,
                         timeout=900) if install else None
    if pip is not None and pip.returncode == 0:
        return python, f"pip install -r {requirements.name} (fresh venv)"
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                          text=True, check=True).stdout.strip()
    numpy_site = str(Path(np.__file__).resolve().parents[1])
    Path(site, "_podium_check_offline.pth").write_text(numpy_site + "\n")
    why = "pip could not install them" if install else "pip skipped"
    return python, f"this environment's copies of {requirements.name}'s packages ({why}; the venv reads {numpy_site})"

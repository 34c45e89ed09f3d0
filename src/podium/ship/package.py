"""`podium package RUN --target script|docker`: a folder (and a zip of it) that predicts a folder of test images
into a submission without podium: predict.py (podium.ship.runtime, which never imports podium), model.onnx and
manifest.json (the run's export), requirements.txt (onnxruntime, numpy, pillow, pandas, pinned to the versions
podium was checked with), and with --target docker a Dockerfile (CPU; `--build-arg VARIANT=cuda` for a GPU).

`--check` builds a fresh virtual environment from requirements.txt, runs the package's predict.py on the run's test
images there, and compares its submission and probabilities with `podium predict`'s (podium.ship.check).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from podium.errors import PodiumError
from podium.io import atomic_path, atomic_write_text
from podium.run.outputs import check_out
from podium.run.rundir import RunDir
from podium.ship import runtime
from podium.ship.manifest import MANIFEST, file_sha256

TARGETS = ("script", "docker")
REQUIREMENTS = ("onnxruntime", "numpy", "pillow", "pandas")  # all predict.py imports

DOCKERFILE = """\
# CPU by default. GPU: docker build --build-arg VARIANT=cuda \\
#   --build-arg BASE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 .
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG VARIANT=cpu
RUN command -v python3 >/dev/null || (apt-get update && apt-get install -y --no-install-recommends python3 \\
    python3-pip python3-venv && rm -rf /var/lib/apt/lists/*)
WORKDIR /app
COPY requirements.txt .
# the CUDA variant swaps onnxruntime for onnxruntime-gpu at the same version (same API; CUDA provider first)
RUN if [ "$VARIANT" = cuda ]; then sed -i 's/^onnxruntime==/onnxruntime-gpu==/' requirements.txt; fi && \\
    python3 -m venv /venv && /venv/bin/pip install --no-cache-dir -r requirements.txt
COPY predict.py model.onnx manifest.json ./
# docker run --rm -v $PWD/test:/data/test -v $PWD/out:/out IMAGE --images /data/test --out /out/submission.csv
ENTRYPOINT ["/venv/bin/python", "/app/predict.py"]
"""

README = """\
{name}: a podium export packaged for code submission (no podium, no PyTorch).

  pip install -r requirements.txt
  python predict.py --images TEST_IMAGES/ [--csv test.csv] [--template sample_submission.csv] --out submission.csv

model.onnx takes uint8 images N x {size} x {size} x {channels} and returns the probabilities of the {n} outputs;
manifest.json says how images are read and resized, and the decision (task {kind}). Folds {folds}, TTA views
{views} are inside the graph.
"""


@dataclass(frozen=True)
class Packaged:
    out: Path  # the package folder
    zip: Path  # the same as one zip file, beside it
    files: list[str]


def requirements() -> str:
    """The four packages predict.py needs, pinned to the versions installed here (those the export was checked with)."""
    return "".join(f"{name}=={metadata.version(name)}\n" for name in REQUIREMENTS)


def package_run(run: Path, target: str = "script", out: Path | None = None, overwrite: bool = False,
                export: Path | None = None) -> Packaged:
    """The package folder `out` (default RUN/submission_package) and its zip; the model is `export` (an export
    folder) or else RUN's own export (`podium export` writes it first when there is none)."""
    if target not in TARGETS:
        raise PodiumError(f"--target {target}: choose one of {', '.join(TARGETS)}.")
    rd = RunDir(run)
    rd.load_config()  # a run folder, or a clear error
    export = Path(export) if export is not None else rd.export_dir
    if not (export / MANIFEST).is_file():
        from podium.ship.export import export_run  # PyTorch, only when the run has no export yet

        export = export_run(run, out=rd.export_dir).out
    manifest = _verified(export)
    out = Path(out) if out is not None else rd.package_dir
    check_out(out, True, {"the run's export": export}, what="--out", allowed=(rd.package_dir,), folder=True)
    zip_path = out.with_suffix(".zip")
    if out.exists() or zip_path.exists():
        if not overwrite:
            raise PodiumError(f"'{out}' (or its zip) already exists: pass --overwrite to replace that package, or "
                              "choose another --out.")
        if out.exists() and not (out / "predict.py").is_file():
            raise PodiumError(f"--out '{out}' is not a podium package (no predict.py): podium never writes over it.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        shutil.copyfile(runtime.__file__, tmp / "predict.py")
        for name in (manifest["model"], MANIFEST):
            shutil.copyfile(export / name, tmp / name)
        atomic_write_text(tmp / "requirements.txt", requirements())
        atomic_write_text(tmp / "README.txt", README.format(
            name=manifest["run"]["name"], size=manifest["input"]["size"], channels=manifest["input"]["channels"],
            n=len(manifest["output"]["columns"]), kind=manifest["task"]["kind"], folds=manifest["inside"]["folds"],
            views=", ".join(manifest["tta"]["views"])))
        if target == "docker":
            atomic_write_text(tmp / "Dockerfile", DOCKERFILE)
        if out.exists():
            shutil.rmtree(out)  # an earlier package, checked above and asked for with --overwrite
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    files = sorted(p.name for p in out.iterdir())
    with atomic_path(zip_path) as part:
        with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in files:
                zf.write(out / name, f"{out.name}/{name}")
    return Packaged(out=out, zip=zip_path, files=files)


def _verified(export: Path) -> dict:
    """The export's manifest, after checking every file's sha256 against it."""
    import json

    manifest = json.loads((export / MANIFEST).read_text())
    for name, digest in manifest["files"].items():
        if not (export / name).is_file() or file_sha256(export / name) != digest:
            raise PodiumError(f"'{export / name}' is missing or differs from the sha256 in '{export / MANIFEST}': "
                              "export the run again (`podium export RUN --overwrite`).")
    return manifest

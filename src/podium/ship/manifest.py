"""manifest.json: everything a program needs around model.onnx, without podium.

  input     tensor name, uint8 N x H x W x C, the size and channels, and how an image file becomes that array
            (decode as podium.data.images does, keep the central `center_crop` of each side, fit by `resize`)
  output    tensor name and its columns (classes.json: classes | labels | task:class), probabilities
  inside    what the graph already does: normalisation, the fold average, the TTA views, the post-hoc correction
  task      the decision after the probabilities: the top class; multi-label thresholds; multi-task per-task
            classes and the combination table (data.combine for every combination of the tasks' classes)
  submission the template's layout: id column and the other columns (data.sample_submission), else the defaults
  versions, files: podium / torch / opset / onnx versions, the sha256 of every other file of the folder
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from podium import __version__
from podium.config import Config
from podium.io import read_csv
from podium.tasks.combine import Combine

MANIFEST, MODEL = "manifest.json", "model.onnx"
INPUT, OUTPUT = "images", "probs"  # the graph's tensor names
PARITY_TOL = 1e-4  # max |ONNX Runtime (or a package) - podium's PyTorch path| per probability
OPSET = 18  # both of torch's exporters write it; ONNX Runtime 1.16+ runs it
FORMAT = 1  # bump when a reader of an older manifest would misread this one


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def task_decision(task, cfg: Config) -> dict:
    """The task's kind and its decision, as plain JSON (podium.tasks)."""
    out: dict = {"kind": task.kind, "label_sep": cfg.data.label_sep}
    if task.kind == "multilabel":
        out["thresholds"] = dict(zip(task.outputs, [float(t) for t in task.thresholds]))
    elif task.kind == "multitask":
        out["tasks"] = list(task.tasks)
        out["classes"] = {t: list(c) for t, c in task.classes.items()}
        out["combine"] = cfg.data.combine
        if cfg.data.combine is not None:
            table = Combine(cfg.data.combine, task.classes).full_table()
            out["combine_table"] = [[*(str(v) for v in row[:-1]), str(row[-1])]
                                    for row in table.itertuples(index=False)]
    return out


def submission_layout(task, cfg: Config) -> dict:
    """The template's id column and other columns (its header), or podium's default columns without one."""
    columns = task.default_columns()
    if cfg.data.sample_submission is not None and Path(cfg.data.sample_submission).is_file():
        header = list(read_csv(Path(cfg.data.sample_submission), "data.sample_submission").columns)
        columns = [c for c in header if c != cfg.data.id_col]
    return {"id_col": cfg.data.id_col, "columns": columns}


def make_manifest(cfg: Config, task, outputs: list[str], channels: int, folds: list[int], tta: list[str], how: str,
                  posthoc: dict | None, exporter: str, parity: dict, files: dict[str, str], torch_version: str) -> dict:
    import onnx

    from podium.tta import tta_views  # PyTorch: only when a manifest is made, never when one is read


    size = cfg.data.image_size
    return {
        "format": FORMAT,
        "model": MODEL,
        "input": {"name": INPUT, "dtype": "uint8", "layout": "NHWC", "shape": ["batch", size, size, channels],
                  "size": size, "channels": channels, "resize": cfg.data.resize, "center_crop": cfg.data.center_crop,
                  "path_col": cfg.data.path_col},
        "output": {"name": OUTPUT, "columns": list(outputs), "kind": "probabilities"},
        "inside": {"normalisation": "x / 255, minus mean, over std (as trained)", "folds": folds,
                   "fold_average": "mean of the folds' probabilities", "posthoc_in_graph": posthoc is not None},
        "tta": {"names": tta, "views": [label for label, _ in tta_views(tta)], "combine": how},
        "posthoc": None if posthoc is None else {"method": posthoc["method"], "tau": posthoc["tau"],
                                                 "folds": posthoc["folds"]},
        "task": task_decision(task, cfg),
        "submission": submission_layout(task, cfg),
        "run": {"name": cfg.name, "model": cfg.model.name, "metric": cfg.cv.metric},
        "versions": {"podium": __version__, "torch": torch_version, "onnx": onnx.__version__, "opset": OPSET,
                     "exporter": exporter},
        "parity": parity,
        "files": files,
    }

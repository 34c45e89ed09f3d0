"""Everything a report reads from a run folder, loaded once: config, scores, OOF, curves, timings, images.

Images are optional: a report made where the competition data is not reachable still has every number and
plot, and says why its galleries are empty. The images shown are what the model saw: decoded and fitted to
`data.image_size` exactly as the decode cache does it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from podium.config import Config
from podium.errors import PodiumError
from podium.run.rundir import RunDir


@dataclass
class Fold:
    k: int
    curves: pd.DataFrame  # fold<k>/metrics.csv: one row per epoch
    done: dict | None  # fold<k>/done.json (None while the fold is unfinished)


@dataclass
class Run:
    path: Path
    cfg: Config
    config_text: str
    classes: list[str]
    metrics: dict  # metrics.json
    oof: pd.DataFrame  # id, fold, label, one probability column per class
    y: np.ndarray  # OOF true class index per row
    probs: np.ndarray  # OOF probabilities, N x C
    folds: dict[int, Fold]
    channels: int
    test_probs: pd.DataFrame | None  # test_probs.csv after `podium predict`
    _paths: dict[str, dict[str, str]] = field(default_factory=dict)  # split -> id -> image file
    image_note: str = ""  # why images are missing, when they are

    @property
    def name(self) -> str:
        return self.path.name

    @cached_property
    def pred(self) -> np.ndarray:
        """OOF predicted class index per row."""
        return self.probs.argmax(1)

    def image_paths(self, split: str = "train") -> dict[str, str]:
        """id -> image file for the run's train (or test) data; empty (with image_note set) if unreachable."""
        if split not in self._paths:
            from podium.data.sources import load_test, load_train

            try:
                frame = load_train(self.cfg)[0] if split == "train" else load_test(self.cfg)
                self._paths[split] = {} if frame is None else dict(zip(frame["id"].astype(str), frame["path"]))
            except PodiumError as exc:
                self._paths[split] = {}
                self.image_note = f"Images not shown: the run's {split} data could not be read ({exc})."
        return self._paths[split]

    def find_image(self, ident: str, split: str = "train") -> str | None:
        """One id's image file. With a CSV and an image folder (no data.path_col), <folder>/<id>.<ext> is tried
        directly: a report needs ~100 of 60,000 images, and listing the folder costs seconds. Anything else
        (or a miss) resolves every path once, exactly as training did."""
        from podium.data.images import IMAGE_EXTENSIONS

        data = self.cfg.data
        csv = data.train_csv if split == "train" else data.test_csv
        folder = data.image_dir if split == "train" else (data.test_image_dir or data.image_dir)
        if split not in self._paths and csv is not None and folder is not None and not data.path_col:
            for ext in (*IMAGE_EXTENSIONS, *(e.upper() for e in IMAGE_EXTENSIONS), ""):
                path = Path(folder) / f"{ident}{ext}"
                if path.is_file():
                    return str(path.resolve())
        return self.image_paths(split).get(str(ident))

    def images(self, ids, split: str = "train") -> dict[str, np.ndarray]:
        """The model's view (uint8 H x W x C) of each id whose image can be read."""
        from podium.data.images import (
            ImageReadError,
            crop_center,
            fit_image,
            read_image,
        )

        out = {}
        for ident in ids:
            path = self.find_image(str(ident), split)
            if path is None:
                continue
            try:
                out[str(ident)] = fit_image(crop_center(read_image(path, self.channels), self.cfg.data.center_crop),
                                            self.cfg.data.image_size, self.cfg.data.resize)
            except (ImageReadError, ValueError):
                continue
        return out


def is_run(path: Path) -> bool:
    return RunDir(path).is_started()


def load_run(path: Path | str) -> Run:
    """Read a run folder; refuses one without merged OOF predictions (train a fold first). Every file is read
    through RunDir, whatever the task; the report's analyses are multiclass, so other tasks are refused here."""
    path = Path(path)
    rd = RunDir(path)
    if not rd.is_started():
        raise PodiumError(rd.not_a_run())
    if not rd.metrics_json.exists() or not rd.oof_csv.exists():
        raise PodiumError(f"Run '{path}' has no finished fold yet (no {rd.oof_csv.name} / {rd.metrics_json.name}). "
                          "Train at least one fold first (`podium train`).")
    cfg = rd.load_config()
    from podium.tasks import require_multiclass

    require_multiclass(cfg, "podium report / errors / compare")
    classes = rd.classes()
    oof = rd.oof(classes)
    index = {c: i for i, c in enumerate(classes)}
    y = oof["label"].map(index).to_numpy()
    folds = {k: Fold(k, rd.curves(k), rd.done(k)) for k in rd.started_folds()}
    info = rd.info()
    return Run(path=path, cfg=cfg, config_text=rd.config.read_text(), classes=classes,
               metrics=rd.metrics(), oof=oof, y=y,
               probs=oof[classes].to_numpy(dtype=np.float64), folds=folds, channels=info["channels"],
               test_probs=rd.test_probs(classes))

"""Bad input through the CLI, as a new user makes it (issue 11).

Every case runs `podium ...` (the real entry point, in this process) against a fresh copy of a trained tiny
competition and asserts the CLI's promise: exit code 2, no traceback, one message that names the culprit (file,
key, row, id), and every file that existed before the command byte-identical afterwards. A case breaks the copy
first (`setup`) or makes the machine misbehave (`patch`: a full disk, a read-only folder).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pathlib
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import write_tiny_competition


@dataclass(frozen=True)
class World:
    """A competition folder `comp/` (config.yaml, train.csv, images/, ...) with a trained, predicted run."""

    root: Path

    @property
    def comp(self) -> Path:
        return self.root / "comp"

    @property
    def cfg(self) -> str:
        return str(self.comp / "config.yaml")

    @property
    def run(self) -> Path:
        return self.comp / "runs" / "tiny"

    @property
    def run_b(self) -> Path:  # the same folds, another seed
        return self.comp / "runs" / "tiny-b"

    def edit_config(self, **sections) -> None:
        raw = yaml.safe_load((self.comp / "config.yaml").read_text())
        for key, value in sections.items():
            raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
        (self.comp / "config.yaml").write_text(yaml.safe_dump(raw))

    def edit_csv(self, name: str, row: int, column: str, value: str) -> None:
        frame = pd.read_csv(self.comp / name, dtype=str)
        frame.loc[row, column] = value
        frame.to_csv(self.comp / name, index=False)


@dataclass(frozen=True)
class Case:
    name: str
    argv: Callable[[World], list[str]]  # the command line after `podium`
    culprit: Callable[[World], str] | str  # what the message must name
    setup: Callable[[World], None] | None = None  # break the copy before the command
    patch: Callable[[World, pytest.MonkeyPatch], None] | None = None  # make the machine misbehave
    env: dict = field(default_factory=dict)
    code: int = 2


class Evil:
    """A checkpoint entry whose unpickling touches a file: proof that pickled code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def _evil_checkpoint(path: Path, marker: Path) -> None:
    good = torch.load(path, map_location="cpu", weights_only=True)
    good["evil"] = Evil(marker)
    torch.save(good, path)


def _path_column(w: World, name: str) -> None:
    frame = pd.read_csv(w.comp / name, dtype=str)
    frame.assign(file=frame["id"] + ".png").to_csv(w.comp / name, index=False)


def _hold_lock(run: Path, k: int, pid: int) -> None:
    """Fold k of `run` held by process `pid` of this host (pid 1 always lives), as a second `podium train` sees it."""
    import socket

    (run / "locks").mkdir(exist_ok=True)
    (run / "locks" / f"fold{k}.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": pid,
                                                            "started": "2026-11-27T00:00:00+00:00", "token": "x"}))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _read_only_below(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes under `folder` fail as on a read-only mount (Kaggle's /kaggle/input). The tests run as root, where
    chmod does not stop writes, so every way podium creates a file or folder is made to fail there."""
    import builtins
    import io
    import tempfile

    top = folder.resolve()

    def inside(path) -> bool:
        return Path(os.path.abspath(os.fspath(path))).resolve().is_relative_to(top)

    def refuse(path):
        raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))

    real_open, real_os_open, real_mkstemp, real_mkdir = builtins.open, os.open, tempfile.mkstemp, os.mkdir

    def open_(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+") and inside(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and inside(dir):
            refuse(dir)
        return real_mkstemp(*args, dir=dir, **kwargs)

    def mkdir(path, *args, **kwargs):
        if inside(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    for target, name, fake in ((builtins, "open", open_), (io, "open", open_), (os, "open", os_open),
                               (tempfile, "mkstemp", mkstemp), (os, "mkdir", mkdir)):
        monkeypatch.setattr(target, name, fake)


MARKER = "pickle-ran"

CASES = [
    # ------------------------------------------------------------------ config values and files
    Case("name-dotdot-overwrite", lambda w: ["train", w.cfg, "name=..", "--overwrite"], "name"),
    Case("name-absolute", lambda w: ["train", w.cfg, f"name={w.comp}", "--overwrite"], "name"),
    Case("name-with-slash", lambda w: ["train", w.cfg, "name=a/b"], "name"),
    Case("run-into-data-folder", lambda w: ["train", w.cfg, f"output_dir={w.comp}", "name=images", "--overwrite"],
         "images"),
    Case("run-into-competition-folder", lambda w: ["train", w.cfg, f"output_dir={w.root}", "name=comp",
                                                   "--overwrite"], "comp"),
    Case("epochs-zero", lambda w: ["train", w.cfg, "train.epochs=0"], "train.epochs"),
    Case("batch-size-zero", lambda w: ["train", w.cfg, "train.batch_size=0"], "train.batch_size"),
    Case("lr-negative", lambda w: ["train", w.cfg, "train.lr=-1"], "train.lr"),
    Case("eval-batch-negative", lambda w: ["train", w.cfg, "train.eval_batch_size=-5"], "train.eval_batch_size"),
    Case("unknown-key", lambda w: ["train", w.cfg, "train.epoch=3"], "train.epochs"),
    Case("config-missing", lambda w: ["train", str(w.comp / "nope.yaml")], "nope.yaml"),
    Case("config-not-mapping", lambda w: ["train", w.cfg],
         "config.yaml", setup=lambda w: (w.comp / "config.yaml").write_text("- a\n- b\n")),
    Case("yaml-duplicate-section", lambda w: ["config", "show", w.cfg], "train",
         setup=lambda w: (w.comp / "config.yaml").write_text(
             (w.comp / "config.yaml").read_text() + "train:\n  epochs: 2\n")),
    Case("yaml-alias-bomb", lambda w: ["config", "show", w.cfg], "config.yaml",
         setup=lambda w: (w.comp / "config.yaml").write_text(
             "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
             "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
             "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n")),
    Case("folds-not-in-split", lambda w: ["train", w.cfg, "--folds", "7", "name=other"], "7"),
    Case("folds-not-numbers", lambda w: ["train", w.cfg, "--folds", "a,b", "name=other"], "--folds"),
    Case("different-config-no-overwrite", lambda w: ["train", w.cfg, "train.epochs=2"], "--overwrite"),
    # ------------------------------------------------------------------ CSVs, ids, images
    Case("id-escapes-image-folder", lambda w: ["data", "check", w.cfg], "row 2",
         setup=lambda w: w.edit_csv("train.csv", 0, "id", "../../outside/x")),
    Case("id-escapes-image-folder-split", lambda w: ["split", w.cfg, "cv.folds_file=f2.csv"], "row 2",
         setup=lambda w: w.edit_csv("train.csv", 0, "id", "../train")),
    Case("path-col-absolute", lambda w: ["data", "check", w.cfg, "data.path_col=file"], "row 3",
         setup=lambda w: (_path_column(w, "test.csv"), _path_column(w, "train.csv"),
                          w.edit_csv("train.csv", 1, "file", str(w.comp / "train.csv")))),
    Case("symlink-out-of-image-folder", lambda w: ["data", "check", w.cfg], "row 2",
         setup=lambda w: ((w.comp / "images" / "000.png").unlink(),
                          (w.root / "elsewhere.png").write_bytes((w.comp / "images" / "001.png").read_bytes()),
                          (w.comp / "images" / "000.png").symlink_to(w.root / "elsewhere.png"))),
    Case("over-long-id", lambda w: ["data", "check", w.cfg], "row 2",
         setup=lambda w: w.edit_csv("train.csv", 0, "id", "x" * 400)),
    Case("label-column-missing", lambda w: ["train", w.cfg, "data.label_col=class", "name=other"], "class"),
    Case("train-csv-empty", lambda w: ["train", w.cfg, "name=other"], "train.csv",
         setup=lambda w: (w.comp / "train.csv").write_text("id,label\n")),
    Case("image-not-an-image", lambda w: ["data", "check", w.cfg], "003",
         setup=lambda w: (w.comp / "images" / "003.png").write_bytes(b"this is not a png")),
    Case("folds-file-id-twice", lambda w: ["train", w.cfg, "name=other"], "000",
         setup=lambda w: (pd.read_csv(w.comp / "folds.csv", dtype={"id": str})
                          .pipe(lambda f: pd.concat([f, f.iloc[[0]].assign(fold=(f["fold"].iloc[0] + 1) % 3)]))
                          .to_csv(w.comp / "folds.csv", index=False))),
    Case("folds-file-garbage", lambda w: ["train", w.cfg, "name=other"], "folds.csv",
         setup=lambda w: (w.comp / "folds.csv").write_bytes(b"\x00\xff\xfe garbage")),
    Case("read-only-data-folder", lambda w: ["split", w.cfg], "cv.folds_file",
         setup=lambda w: (w.comp / "folds.csv").unlink(), patch=lambda w, mp: _read_only_below(w.comp, mp)),
    Case("test-image-missing", lambda w: ["predict", str(w.run), "--out", str(w.root / "sub.csv")], "050",
         setup=lambda w: (w.comp / "images" / "050.png").unlink()),
    # ------------------------------------------------------------------ outputs that would replace files
    Case("predict-out-over-data", lambda w: ["predict", str(w.run), "--out", str(w.comp / "train.csv")],
         "train.csv"),
    Case("predict-out-into-run", lambda w: ["predict", str(w.run), "--out", str(w.run / "metrics.json"),
                                            "--overwrite"], "metrics.json"),
    Case("predict-out-exists", lambda w: ["predict", str(w.run), "--out", str(w.root / "mine.csv")], "mine.csv",
         setup=lambda w: (w.root / "mine.csv").write_text("id,label\nmine,1\n")),
    Case("report-out-over-data", lambda w: ["report", str(w.run), "--out", str(w.comp / "train.csv")], "train.csv"),
    Case("report-out-exists", lambda w: ["report", str(w.run), "--out", str(w.root / "notes.html")], "notes.html",
         setup=lambda w: (w.root / "notes.html").write_text("<p>my notes</p>")),
    Case("ensemble-out-is-a-run", lambda w: ["ensemble", str(w.run), str(w.run_b), "--out", str(w.run)],
         lambda w: str(w.run)),
    Case("ensemble-weights-garbage", lambda w: ["ensemble", str(w.run), str(w.run_b), "--weights", "a,b"],
         "--weights"),
    Case("ensemble-files-out-exists", lambda w: ["ensemble", "--files", str(w.run / "submission.csv"), "--files",
                                                 str(w.run / "submission.csv"), "--out", str(w.comp / "train.csv")],
         "train.csv"),
    Case("diff-out-exists", lambda w: ["diff", str(w.run / "submission.csv"), str(w.run / "submission.csv"),
                                       "--out", str(w.comp / "train.csv")], "train.csv"),
    Case("preview-out-exists", lambda w: ["augment", "preview", w.cfg, "--out", str(w.root / "mine.png")],
         "mine.png", setup=lambda w: (w.root / "mine.png").write_bytes(b"mine")),
    Case("runs-csv-over-data", lambda w: ["runs", str(w.comp / "runs"), "--csv", str(w.comp / "train.csv")],
         "train.csv"),
    Case("errors-out-is-data", lambda w: ["errors", str(w.run), str(w.comp / "images"), "--overwrite"], "images"),
    # ------------------------------------------------------------------ broken run folders
    Case("not-a-run", lambda w: ["predict", str(w.comp / "images")], "images"),
    Case("classes-json-tampered", lambda w: ["predict", str(w.run), "--out", str(w.root / "s.csv")], "classes.json",
         setup=lambda w: (w.run / "classes.json").write_text('{"not": "a list"}')),
    Case("classes-json-wrong-length", lambda w: ["predict", str(w.run), "--out", str(w.root / "s.csv")],
         "classes.json", setup=lambda w: (w.run / "classes.json").write_text('["a", "b"]')),
    Case("run-json-missing", lambda w: ["predict", str(w.run), "--out", str(w.root / "s.csv")], "run.json",
         setup=lambda w: (w.run / "run.json").unlink()),
    Case("best-ckpt-missing", lambda w: ["predict", str(w.run), "--out", str(w.root / "s.csv")], "best.ckpt",
         setup=lambda w: (w.run / "fold1" / "best.ckpt").unlink()),
    Case("best-ckpt-truncated", lambda w: ["predict", str(w.run), "--out", str(w.root / "s.csv")], "best.ckpt",
         setup=lambda w: _truncate(w.run / "fold0" / "best.ckpt")),
    Case("best-ckpt-truncated-report", lambda w: ["report", str(w.run), "--out", str(w.root / "r.html")],
         "best.ckpt", setup=lambda w: [_truncate(w.run / f"fold{k}" / "best.ckpt") for k in range(3)]),
    Case("last-ckpt-truncated-resume", lambda w: ["train", w.cfg, "--resume"], "last.ckpt",
         setup=lambda w: ((w.run / "fold2" / "done.json").unlink(), _truncate(w.run / "fold2" / "last.ckpt"))),
    Case("oof-csv-corrupt-posthoc", lambda w: ["posthoc", str(w.run)], "oof.csv",
         setup=lambda w: (w.run / "oof.csv").write_text("garbage\n\x00")),
    Case("oof-missing-ensemble", lambda w: ["ensemble", str(w.run), str(w.run), "--out", str(w.root / "ens")],
         "oof.csv", setup=lambda w: (w.run / "oof.csv").unlink()),
    Case("runs-metrics-json-corrupt", lambda w: ["runs", str(w.comp / "runs")], "metrics.json", code=0,
         setup=lambda w: (w.run / "metrics.json").write_text("{not json")),  # listed as broken; the others ranked
    Case("fold-locked-by-a-live-process", lambda w: ["train", w.cfg, "--resume"], "process 1",
         setup=lambda w: ((w.run / "fold2" / "done.json").unlink(), _hold_lock(w.run, 2, pid=1))),
    # ------------------------------------------------------------------ pickled code in checkpoints
    Case("evil-best-ckpt-predict", lambda w: ["predict", str(w.run), "--out", str(w.root / "s.csv")], "best.ckpt",
         setup=lambda w: _evil_checkpoint(w.run / "fold0" / "best.ckpt", w.root / MARKER),
         env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}),
    Case("evil-best-ckpt-report", lambda w: ["report", str(w.run), "--out", str(w.root / "r.html")], "best.ckpt",
         setup=lambda w: [_evil_checkpoint(w.run / f"fold{k}" / "best.ckpt", w.root / MARKER) for k in range(3)],
         env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}),
    Case("evil-last-ckpt-resume", lambda w: ["train", w.cfg, "--resume"], "last.ckpt",
         setup=lambda w: ((w.run / "fold2" / "done.json").unlink(),
                          _evil_checkpoint(w.run / "fold2" / "last.ckpt", w.root / MARKER)),
         env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}),
    Case("evil-init-from", lambda w: ["train", w.cfg, "name=crt", "train.stage=classifier",
                                      f"train.init_from={w.run}", "train.epochs=1"], "best.ckpt",
         setup=lambda w: _evil_checkpoint(w.run / "fold0" / "best.ckpt", w.root / MARKER),
         env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}),
    Case("init-from-not-a-run", lambda w: ["train", w.cfg, "name=crt", "train.stage=classifier",
                                           "train.init_from=images"], "images"),
    Case("sample-submission-mismatch", lambda w: ["predict", str(w.run), "--out", str(w.root / "s.csv")],
         "sample_submission.csv", setup=lambda w: pd.read_csv(w.comp / "sample_submission.csv", dtype=str)
         .iloc[1:].to_csv(w.comp / "sample_submission.csv", index=False)),
    Case("tta-unknown-view", lambda w: ["predict", str(w.run), "--tta", "hflp"], "hflp"),
    Case("posthoc-not-a-run", lambda w: ["posthoc", str(w.comp)], "comp"),
    Case("split-made-differently", lambda w: ["split", w.cfg, "cv.n_folds=4"], "folds.csv"),
    Case("datasets-make-into-competition", lambda w: ["datasets", "make", "digits", str(w.comp)], "comp"),
    Case("demo-data-into-competition", lambda w: ["demo", "--data-only", str(w.comp)], "comp"),
    # ------------------------------------------------------------------ the machine misbehaves
    Case("disk-full-at-checkpoint", lambda w: ["train", w.cfg, "name=full", "train.epochs=1", "--folds", "0"],
         "runs/full/fold0", patch=lambda w, mp: mp.setattr(torch, "save", _no_space)),
    Case("output-dir-read-only", lambda w: ["train", w.cfg, f"output_dir={w.root / 'ro'}", "train.epochs=1"],
         "output_dir", setup=lambda w: (w.root / "ro").mkdir(),
         patch=lambda w, mp: _read_only_below(w.root / "ro", mp)),
    Case("cache-dir-read-only", lambda w: ["train", w.cfg, "name=other", "data.cache_dir=ro", "train.epochs=1"],
         "data.cache_dir", setup=lambda w: (w.comp / "ro").mkdir(),
         patch=lambda w, mp: _read_only_below(w.comp / "ro", mp)),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """One tiny competition, split, trained (3 folds x 1 epoch) and predicted; each case copies it."""
    from podium.commands.predict import predict
    from podium.commands.train import train
    from podium.config import load_config
    from podium.data.splits import make_folds_file

    root = tmp_path_factory.mktemp("bad-input")
    config = write_tiny_competition(root / "comp")
    raw = yaml.safe_load(config.read_text())
    for key, folder in (("output_dir", "runs"),):  # paths relative to the competition folder, as users write them
        raw[key] = folder
    raw["data"] = {k: (Path(v).name if isinstance(v, str) and v.startswith(str(root)) else v)
                   for k, v in raw["data"].items()}
    raw["cv"]["folds_file"] = None
    raw["train"]["epochs"] = 1
    config.write_text(yaml.safe_dump(raw))
    cwd = os.getcwd()
    os.chdir(root / "comp")
    try:
        cfg = load_config(config)
        make_folds_file(cfg)
        for overrides in ([], ["name=tiny-b", "train.seed=7"]):  # tiny: exactly config.yaml, so --resume takes it
            cfg = load_config(config, overrides)
            train(cfg)
            predict(Path("runs") / cfg.name)
    finally:
        os.chdir(cwd)
    return root


def _snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    from podium.cli import main

    shutil.copytree(template, tmp_path / "w", symlinks=True)
    world = World(tmp_path / "w")
    monkeypatch.chdir(world.comp)  # the config's paths are relative to the competition folder
    if case.setup:
        case.setup(world)
    before = _snapshot(world.root)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    if case.patch:
        case.patch(world, monkeypatch)
    monkeypatch.setattr(sys, "argv", ["podium", *case.argv(world)])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    said = out.out + out.err
    assert exc.value.code == case.code, said
    assert "Traceback" not in said
    culprit = case.culprit(world) if callable(case.culprit) else case.culprit
    assert _flat(culprit) in _flat(said), said
    assert len(said) < 5000, f"message of {len(said)} characters"
    after = _snapshot(world.root)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"pre-existing files changed or removed: {changed[:10]}"
    assert not (world.root / MARKER).exists(), "pickled code in a checkpoint ran"


def test_the_suite_covers_enough_cases():
    assert len(CASES) >= 50 and len({c.name for c in CASES}) == len(CASES)

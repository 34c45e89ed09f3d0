"""`podium data check`: read every image once and report what the competition data holds and what is wrong.

One pass over the files gets each image's size, mode, readability and a hash of its decoded pixels. Findings
come in three lists: `problems` (errors the user must fix; any one makes the command exit 2), `warnings`
(worth knowing, harmless to training) and `leakage` (things that make the CV score lie: the same picture
twice inside train, or in train and test; groups and near-duplicate pictures across folds: data/leakage.py).
Structural errors (a missing column or folder, a file that is not a CSV) are raised by the sources as
PodiumError before any image is read.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table as RichTable
from rich.text import Text

from podium.config import Config
from podium.data.images import ImageReadError, decode_image
from podium.data.leakage import NEAR_DUP_DISTANCE, Sketch, leakage_findings, sketch
from podium.data.sources import Table, index_folder, test_table, train_table
from podium.errors import Problem, fmt_list
from podium.tasks import class_names, label_counts

# what to tell the user for each way a file can fail to decode
_READ_FIXES = {
    "zero-byte": "the file is empty (0 bytes): download it again or drop its row",
    "truncated": "the file is cut short (truncated): download it again or drop its row",
    "unreadable": "the file is not an image PIL can decode",
    "missing": "the file disappeared while it was being checked",
}


@dataclass
class CheckReport:
    counts: dict[str, int]  # 'train rows', 'test rows', 'images read', 'classes', ...
    classes: dict[str, int]  # class name → training images, in output order (declared classes first)
    sizes: Counter = field(default_factory=Counter)  # (width, height) after EXIF orientation → images
    modes: Counter = field(default_factory=Counter)  # the file's own PIL mode ('RGB', 'CMYK', 'I;16') → images
    problems: list[Problem] = field(default_factory=list)  # errors: any one makes `data check` exit 2
    warnings: list[Problem] = field(default_factory=list)  # notes that do not stop training
    leakage: list[Problem] = field(default_factory=list)  # findings that make CV scores optimistic


@dataclass
class _Probe:
    size: tuple[int, int] | None = None  # (width, height)
    mode: str | None = None
    digest: str | None = None  # blake2b of the decoded pixels and their shape
    sketch: Sketch | None = None  # perceptual hash + thumbnail, for near-duplicates across folds
    error: ImageReadError | None = None


def _probe(path: str, with_sketch: bool = True) -> _Probe:
    """Decode one file and summarise it; the pixels are dropped at once so memory stays flat."""
    try:
        img, mode = decode_image(path)
    except ImageReadError as exc:
        return _Probe(error=exc)
    arr = np.ascontiguousarray(np.asarray(img))
    # the shape goes into the hash so a 4x8 and an 8x4 picture with the same bytes stay apart
    digest = hashlib.blake2b(str(arr.shape).encode() + arr.tobytes(), digest_size=16).hexdigest()
    return _Probe(img.size, mode, digest, sketch(img) if with_sketch else None)


def _probe_all(paths: list[str], with_sketch: bool = True) -> dict[str, _Probe]:
    """Every file read once, on a few threads (PIL's decoders and hashlib release the GIL), with a progress bar."""
    out: dict[str, _Probe] = {}
    columns = (TextColumn("reading images"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("read", total=len(paths))
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for path, probe in zip(paths, pool.map(_probe, paths, [with_sketch] * len(paths))):
                out[path] = probe
                progress.advance(task)
    return out


def _shown(path: str | Path) -> str:
    """A path as the user would write it: relative to the working directory when it lies below it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _where(split: str, table: Table, row: int, path: str) -> str:
    return f"{table.source} row {row} ({_shown(path)})" if row else f"{split} {_shown(path)}"


def check_data(cfg: Config, near_dup_distance: int = NEAR_DUP_DISTANCE) -> CheckReport:
    """Read every listed image once and collect every finding; raise PodiumError only for structural errors.
    near_dup_distance: most differing bits of the 64-bit perceptual hash for two pictures to be compared as
    possible near-duplicates (negative: skip that search)."""
    train = train_table(cfg)
    test = test_table(cfg)
    tables = {"train": train} | ({"test": test} if test is not None else {})
    problems = [p for t in tables.values() for p in t.problems]  # missing files, duplicate ids, bad labels

    # every (split, row, path, label) whose file exists; a path listed twice is still read once
    entries = [
        (split, t, int(row), path, label)
        for split, t in tables.items()
        for path, row, label in zip(t.frame["path"], t.frame["row"], t.frame["label"])
        if isinstance(path, str)  # None (or NaN) when the file is missing: already a problem
    ]
    probes = _probe_all(sorted({e[3] for e in entries}), with_sketch=near_dup_distance >= 0)

    report = CheckReport(counts={}, classes={}, problems=problems)
    by_digest: dict[str, list[tuple]] = {}
    for split, t, row, path, label in entries:
        probe = probes[path]
        if probe.error is not None:
            fix = _READ_FIXES[probe.error.kind]
            detail = "" if probe.error.kind == "zero-byte" else f" ({probe.error.detail})"
            report.problems.append(Problem(probe.error.kind, _where(split, t, row, path), fix + detail))
            continue
        by_digest.setdefault(probe.digest, []).append((split, t, row, path, label))
    for probe in probes.values():
        if probe.error is None:
            report.sizes[probe.size] += 1
            report.modes[probe.mode] += 1

    _duplicates(by_digest, report)
    report.leakage += leakage_findings(cfg, train, {p: q.sketch for p, q in probes.items()},
                                       {p: q.digest for p, q in probes.items()}, near_dup_distance)
    _unlisted(cfg, {e[3] for e in entries}, report)
    _summarise(cfg, train, test, len(probes), report)
    return report


def _duplicates(by_digest: dict[str, list[tuple]], report: CheckReport) -> None:
    """The same decoded picture under two rows: leakage in train and train/test, an error if labels disagree."""
    for group in by_digest.values():
        # one file listed twice in a split is a duplicate id (already a problem): count it once here
        first: dict[tuple[str, str], tuple] = {}
        for g in group:
            first.setdefault((g[0], g[3]), g)
        group = list(first.values())
        if len(group) < 2:
            continue
        where = "; ".join(_where(split, t, row, path) for split, t, row, path, _ in group)
        train_labels = {label for split, *_, label in group if split == "train" and isinstance(label, str) and label}
        splits = {g[0] for g in group}
        n_train = sum(g[0] == "train" for g in group)
        if len(train_labels) > 1:
            report.problems.append(Problem(
                "conflicting-duplicate", where,
                f"the same picture has different labels ({fmt_list(sorted(train_labels))}): "
                "keep one row or fix the label",
            ))
        elif n_train > 1:
            report.leakage.append(Problem(
                "duplicate-image", where,
                "the same picture is in train more than once: it can land in two folds and inflate CV "
                "(drop the copies, or give them one cv.group_col value)",
            ))
        if splits == {"train", "test"}:
            report.leakage.append(Problem("train-test-duplicate", where, "the same picture is in train and in test"))
        elif splits == {"test"}:
            report.warnings.append(Problem("duplicate-image", where, "the same picture is in test more than once"))


def _unlisted(cfg: Config, listed: set[str], report: CheckReport) -> None:
    """Image files in the CSV sources' image folders that no train or test row points at."""
    data = cfg.data
    folders = {Path(f).resolve() for f in (data.image_dir, data.test_image_dir) if f is not None}
    if data.train_csv is None and data.test_csv is None:
        return  # folder sources list every image file they hold, by construction
    for folder in sorted(folders):
        if not folder.is_dir():
            continue  # not used by any source (e.g. image_dir set but train_dir used): nothing to compare
        for paths in index_folder(folder).values():
            for p in paths:
                if str(p.resolve()) not in listed:
                    report.warnings.append(Problem(
                        "unlisted-file", _shown(p), "image file in the image folder that no train or test row names"
                    ))


def _summarise(cfg: Config, train: Table, test: Table | None, n_read: int, report: CheckReport) -> None:
    labels = train.frame["label"]
    if cfg.data.task == "multiclass":
        names = class_names(labels, cfg.data.classes)
        counts = Counter(str(x) for x in labels.dropna())
        report.classes = {c: counts.get(c, 0) for c in names}
    else:  # images per label (multilabel) or per task:class (multitask)

        report.classes = label_counts(train.frame, cfg.data)
        names = list(report.classes)
    report.counts = {
        "train rows": len(train.frame),
        "test rows": 0 if test is None else len(test.frame),
        "images read": n_read,
        "classes": len(names),
    }
    for name, n in report.classes.items():
        if n == 0:
            report.warnings.append(
                Problem("empty-class", f"class '{name}'", "data.classes names it but no image has it")
            )
        elif n < cfg.cv.n_folds:
            report.warnings.append(Problem(
                "rare-class", f"class '{name}'", f"only {n} image(s): fewer than cv.n_folds={cfg.cv.n_folds}, "
                "so some validation folds will have none"
            ))


def print_check(report: CheckReport, console: Console | None = None) -> None:
    """Counts, class distribution with bars, sizes and modes, every finding, then a one-line verdict."""
    console = console or Console()
    counts = RichTable("what", "count", title="data")
    for key, value in report.counts.items():
        counts.add_row(key, str(value))
    console.print(counts)

    dist = RichTable("class", "images", "share", "", title="class distribution (train)")
    total, top = sum(report.classes.values()) or 1, max(report.classes.values(), default=0) or 1
    for name, n in report.classes.items():
        dist.add_row(Text(name), str(n), f"{100 * n / total:.1f}%", "█" * round(30 * n / top))
    console.print(dist)

    sizes = RichTable("size (w×h)", "images", "mode", "images", title="image sizes (top 10) and modes")
    size_rows = [(f"{w}×{h}", str(n)) for (w, h), n in report.sizes.most_common(10)]
    mode_rows = [(m, str(n)) for m, n in report.modes.most_common()]
    for i in range(max(len(size_rows), len(mode_rows))):
        s = size_rows[i] if i < len(size_rows) else ("", "")
        m = mode_rows[i] if i < len(mode_rows) else ("", "")
        sizes.add_row(*s, *m)
    console.print(sizes)

    # findings as plain lines, not a table: long paths stay whole (and greppable) instead of wrapping in cells
    for title, items, style in (("problems", report.problems, "red"), ("leakage", report.leakage, "yellow"),
                                ("warnings", report.warnings, "yellow")):
        if items:
            console.print(f"[bold {style}]{title} ({len(items)})[/]")
            for p in items:
                console.print(Text(f"  [{p.kind}] {p.where}: {p.message}"), soft_wrap=True)

    notes = f"{len(report.leakage)} leakage finding(s), {len(report.warnings)} warning(s)"
    if report.problems:
        console.print(f"[bold red]{len(report.problems)} problem(s)[/] and {notes}: fix the problems and run "
                      "`podium data check` again.", soft_wrap=True)
    else:
        console.print(f"[bold green]clean[/]: no problems ({notes}).", soft_wrap=True)

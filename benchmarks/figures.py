"""Tables in the docs, rendered from benchmarks/results/*.json, so that the prose and the results cannot disagree.

A markdown file (README.md, docs/*.md, or any file given) holds a rendered table between two markers:

    <!-- figures:NAME -->
    ... whatever figures.py rendered last: never edit by hand ...
    <!-- /figures -->

NAME is a renderer registered below (`--list` shows them all). Each rendered block ends with a line naming the
results file(s) it was made from, with the commit and date their provenance records (benchmarks/provenance.py).

    python benchmarks/figures.py                    # rewrite every block of README.md and docs/*.md
    python benchmarks/figures.py --check            # exit 1 listing blocks that differ from a fresh render;
                                                    #   stale results files are listed as warnings
    python benchmarks/figures.py --check --strict   # ... and stale results files fail too
    python benchmarks/figures.py --render NAME      # print one block (to paste the markers into a new file)
    python benchmarks/figures.py --list             # the renderers, their results files, what they measure
    python benchmarks/figures.py FILE.md ...        # other markdown files instead of README.md + docs/*.md

Stale: a results file (or the part of it a table reads) is stale when it records no provenance commit, when that
commit is not in the history of HEAD, or when the code it measures (`MEASURES`: src/podium and the benchmark's own
script, unless declared narrower) differs at HEAD from the code the run saw: the commit's files, plus the files the
run found modified in the working tree (provenance's `dirty_files` hold their content hashes). For clean runs that
is exactly "older than the last commit that changed the code it measures", and a run made on uncommitted code is
fresh only once that code is committed unchanged. Staleness depends on HEAD, so it is reported, never rendered.

No figure in these tables is chosen on a test set: where a table marks a winner it is the one the benchmark chose on
validation/OOF scores (noted per renderer), and test columns are reported for the choice.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(r"(<!-- figures:(?P<name>[A-Za-z0-9_.-]+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.S)
OPEN = re.compile(r"<!-- figures:([A-Za-z0-9_.-]+) -->")

# What each results file measures: the paths whose content its numbers depend on (relative to the repository root).
# Default for any file: all of podium plus the benchmark's own script (named by the file's "benchmark" key or stem).
MEASURES: dict[str, tuple[str, ...]] = {
    "podium_cnn.json": ("src/podium/models.py", "src/podium/config.py", "benchmarks/podium_cnn.py"),
    "letters-e10.json": ("src/podium", "benchmarks/letters.py"),
}


def measures(file: str, data: Any = None) -> tuple[str, ...]:
    if file in MEASURES:
        return MEASURES[file]
    bench = data.get("benchmark") if isinstance(data, dict) else None
    bench = bench or Path(file).stem.split("-")[0]
    return ("src/podium", f"benchmarks/{bench}.py")


# ----------------------------------------------------------------------------------------------- formatting


def f3(x: float) -> str:
    return f"{x:.3f}"


def f4(x: float) -> str:
    return f"{x:.4f}"


def num(x: float, sep: str = ",") -> str:
    """An integer with thousands separators, rounded half up (622.5 -> 623)."""
    return f"{int(x + 0.5) if x >= 0 else -int(-x + 0.5):,}".replace(",", sep)


def signed(x: float, digits: int = 4, minus: str = "-") -> str:
    text = f"{abs(x):.{digits}f}"
    return ("+" if x >= 0 or float(text) == 0 else minus) + text


def bold(text: str, on: bool = True) -> str:
    return f"**{text}**" if on else text


def lr_text(lr: float) -> str:
    """0.003 -> '3e-3'."""
    mantissa, exp = f"{lr:.0e}".split("e")
    return f"{mantissa}e{int(exp)}"


def table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


# ----------------------------------------------------------------------------------------------- results access


class Results:
    """The results files a renderer reads. `overrides` (file name -> parsed JSON) replace files on disk (tests).
    `cite(file, part)` loads and records what a table is made from: its footer names the file with the commit and
    date of that part's provenance, and the stale check looks at that part."""

    def __init__(self, overrides: dict[str, Any] | None = None, folder: Path = RESULTS):
        self.overrides, self.folder = dict(overrides or {}), folder
        self.cited: list[tuple[str, Any, str | None]] = []  # (file, the part read, its label; None: whole file)

    def load(self, file: str) -> Any:
        if file in self.overrides:
            return self.overrides[file]
        return json.loads((self.folder / file).read_text())

    def cite(self, file: str, key: str | None = None, part: Any = None, label: str | None = None) -> Any:
        """The file (or its part under `key`, or the `part` given, named `label`), recorded as cited."""
        data = self.load(file)
        if key is not None:
            part, label = data[key], key
        self.cited.append((file, data if part is None else part, label))
        return data if part is None else part


def own_provenance(part: Any) -> dict | None:
    return part.get("provenance") if isinstance(part, dict) and isinstance(part.get("provenance"), dict) else None


def all_provenance(part: Any) -> list[dict | None]:
    """Every value under a "provenance" key in `part`, nested ones included (None where one is recorded as null)."""
    found: list[dict | None] = []
    if isinstance(part, dict):
        for key, value in part.items():
            if key == "provenance":
                found.append(value if isinstance(value, dict) else None)
            elif key not in ("config", "configs"):
                found += all_provenance(value)
    elif isinstance(part, list):
        for value in part:
            found += all_provenance(value)
    return found


def footer(cited: list[tuple[str, Any, str | None]]) -> str:
    seen, names = set(), []
    for file, part, _ in cited:
        p = own_provenance(part)
        if p and p.get("commit"):
            what = f"commit {p['commit'][:7]}{' + uncommitted changes' if p.get('dirty') else ''}, {p['date'][:10]}"
        else:
            date = part.get("date") if isinstance(part, dict) else None
            what = "commit not recorded" + (f", {date[:10]}" if isinstance(date, str) else "")
        text = f"`benchmarks/results/{file}` ({what})"
        if text not in seen:
            seen.add(text)
            names.append(text)
    return ("<sub>Rendered by `benchmarks/figures.py` from " + "; ".join(names)
            + ". Edit the results, not this table.</sub>")


# ----------------------------------------------------------------------------------------------- the registry


@dataclass
class Renderer:
    name: str
    fn: Callable[[Results], str]
    files: tuple[str, ...]
    shows: str  # the table it renders, in words (where it stood in the README when this was written)
    notes: str = ""


RENDERERS: dict[str, Renderer] = {}


def renderer(name: str, files: tuple[str, ...], shows: str, notes: str = ""):
    def register(fn):
        RENDERERS[name] = Renderer(name, fn, files, shows, notes)
        return fn
    return register


def render(name: str, overrides: dict[str, Any] | None = None, folder: Path = RESULTS) -> tuple[str, Results]:
    """The block body for NAME (the table and its footer line, ending in a newline) and what it cited."""
    if name not in RENDERERS:
        raise KeyError(f"no renderer {name!r}; registered: {', '.join(sorted(RENDERERS))}")
    res = Results(overrides, folder)
    body = RENDERERS[name].fn(res).rstrip("\n")
    return body + "\n\n" + footer(res.cited) + "\n", res


# ----------------------------------------------------------------------------------------------- renderers


# The brief's reference rows (shared/BRIEF.md, "Where the bar is": Fashion-MNIST, full train set, official test set,
# 2 CPU cores). Measured by the brief's authors, not by podium's benchmarks: constants, with their source.
BRIEF_ROWS = [
    ["timm's `train.py`, resnet10t at 32 px, 3 epochs", "0.882", "~12 min"],
    ["fastai `vision_learner` resnet18 at 28 px, `fit_one_cycle` 3 epochs", "0.903", "~15 min"],
    ["a plain PyTorch loop, 4-conv CNN, 3 epochs, hflip TTA", "0.922", "~12 min"],
    ["a plain PyTorch loop, narrower 4-conv CNN, 5 epochs", "0.919", "~4.6 min"],
]


def minutes(seconds: float) -> str:
    return f"{num(seconds)} s ({seconds / 60:.1f} min)"


def bare_loop_entry(runs: list[dict], model: str = "podium_cnn") -> dict | None:
    """The latest podium_cnn.py run of `model` whose settings were chosen on validation (entries without
    "selection" chose model.drop_rate on the test set: never shown)."""
    chosen = [r for r in runs if r.get("config", {}).get("model") == model and "selection" in r]
    return chosen[-1] if chosen else None


@renderer("headline", ("fashion_mnist.json", "podium_cnn.json"),
          "README: the headline Fashion-MNIST table (podium against the brief's reference rows)",
          "the bare-loop row appears only once podium_cnn.py has run with validation-chosen settings")
def headline(res: Results) -> str:
    fm = res.cite("fashion_mnist.json")
    s = fm["settings"]
    folds = fm["folds_trained"]
    n_folds = fm["config"]["cv"]["n_folds"]
    if len(folds) == n_folds:
        trained = f"{n_folds} folds averaged"
    else:
        trained = f"fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))} of {n_folds} " \
                  f"({num(60000 * (n_folds - 1) / n_folds)} images)"
    tta = f", {s['tta']} TTA" if s.get("tta") and s["tta"] != "none" else ""
    rows = [[f"**podium** (`make bench-fashion`): `{s['model']}`, {trained}, {s['epochs']} epochs{tta}; "
             f"CV {f3(fm['cv_accuracy'])}", bold(f3(fm["test_accuracy"])),
             bold(minutes(fm["wall_seconds"])) + " end to end: decode cache, training, prediction"]]
    entry = bare_loop_entry(res.load("podium_cnn.json"))
    if entry is not None:
        res.cite("podium_cnn.json", part=entry, label="the entry shown")
        c, sel = entry["config"], entry["selection"]
        rows.append([f"`{c['model']}` alone in a bare PyTorch loop (`benchmarks/podium_cnn.py`), {c['epochs']} epochs, "
                     f"hflip TTA; drop rate {sel['chosen_drop_rate']} chosen on {sel['on'].split(';')[0]}",
                     f3(entry["test_acc_hflip_tta"]), minutes(entry["train_wall_s"]) + " training steps only"])
    return table(["who", "test accuracy", "wall time"], rows + BRIEF_ROWS)


@renderer("demo", ("demo.json",), "README's first screen: what `make demo` prints at the end")
def demo(res: Results) -> str:
    d = res.cite("demo.json")
    tta, acc = d["tta_checked"], d["test_accuracy_by_tta"]

    def line(label: str, value: str, note: str = "") -> str:
        return f" {label:<32} {value}" + (f"   <- {note}" if note else "")

    lines = [line("CV accuracy (OOF, 5 folds)", f"{d['cv']:.4f}")]
    if d.get("cv_tta") is not None:
        lines.append(line(f"CV accuracy (OOF, TTA {tta})", f"{d['cv_tta']:.4f}",
                          "digits are not mirror-symmetric: the OOF says so before any submission"
                          if d["cv_tta"] < d["cv"] else ""))
    for view, value in acc.items():
        agrees = view != "none" and value < acc.get("none", value) and d.get("cv_tta", 1) < d["cv"]
        lines.append(line(f"test accuracy (TTA {view})", f"{value:.4f}",
                          "... and the held-out labels agree" if agrees else ""))
    lines.append(line("wall time", f"{d['demo_seconds']:.0f} s"))
    lines.append(f" submission (TTA {d['submitted_tta']}, the better on OOF)")
    return "```\n" + "\n".join(lines) + "\n```"


@renderer("fashion_mnist", ("fashion_mnist.json",),
          "the Fashion-MNIST full-pipeline run (a row of the README's 'Measured' table), as its own table")
def fashion_mnist(res: Results) -> str:
    fm = res.cite("fashion_mnist.json")
    s, t = fm["settings"], fm["target"]
    met = fm["test_accuracy"] >= t["test_accuracy"] and fm["wall_seconds"] <= t["wall_seconds"]
    rows = [
        ["settings", f"`{s['model']}`, {s['epochs']} epochs, batch {s['batch']}, lr {s['lr']}, folds {s['folds']} of "
                     f"{fm['config']['cv']['n_folds']}, TTA {s['tta']}, {fm['torch_threads']} torch threads"],
        ["test accuracy, official 10,000 images", bold(f3(fm["test_accuracy"]))],
        ["CV accuracy (OOF of the trained folds)", f3(fm["cv_accuracy"])],
        ["wall time: cache + training / prediction / total",
         f"{fm['train_seconds']:.1f} s / {fm['predict_seconds']:.1f} s / **{fm['wall_seconds']:.1f} s**"],
        ["target", f"≥ {t['test_accuracy']} within {t['wall_seconds']} s: {'met' if met else 'missed'}"],
    ]
    return table(["what", "measured"], rows)


@renderer("near_duplicates", ("near_duplicates.json",),
          "README 'Data': near-duplicate search on Fashion-MNIST's 60,000 training images (step | measured)")
def near_duplicates(res: Results) -> str:
    d = res.cite("near_duplicates.json")
    (sketch_s, imagehash_s) = d["hash_seconds"].values()
    check = list(d["check_seconds"].values())
    search_key = [k for k in d["check_seconds"] if "<=" in k][0]
    dist = int(search_key.split("<=")[1])
    within = d["pairs_within"]
    planted = d["planted_proposed"]
    rows = [
        ["hashing, podium's sketch (pHash by PIL resize + two 8×32 matrix products with a DCT basis, + 16×16 "
         "thumbnail)", f"{sketch_s:.1f} s"],
        ["hashing, the `imagehash` package's `phash` (PIL resize + scipy DCT), same decoded images",
         f"{imagehash_s:.1f} s"],
        [f"all-pairs search within {dist} bits (numpy popcount over blocks of 256 rows) + thumbnail confirmation",
         f"{d['two_step_seconds_default']:.1f} s"],
        ["`podium data check` end to end (reads and decodes every file), without / with the search",
         f"{check[0]:.1f} s / {check[1]:.1f} s"],
        [f"pairs the hash alone proposes within {' / '.join(within)} bits",
         " / ".join(num(v) for v in within.values())],
        [f"of those within {dist} bits, pairs the thumbnails confirm (correlation ≥ 0.99)",
         f"{num(d['confirmed_pairs_default'])} ({num(d['check_near_duplicate_findings'][search_key])} of them across "
         f"folds)"],
        [f"1,000 planted copies (brightness +10–25 %, noise σ 6) proposed within {' / '.join(planted)} bits",
         " / ".join(f"{100 * v:.1f}" for v in planted.values()) + " %"],
        [f"planted copies reported with the defaults ({dist} bits, 0.99)", f"{100 * d['planted_reported']:.1f} %"],
    ]
    return table(["step", "measured"], rows)


NOISY_LABELS = {"none": "none", "medium": "medium", "documents": "documents"}


@renderer("noisy_test", ("noisy_test.json",),
          "README 'Augmentation': presets against a corrupted test set (fashion-noisy, S2)",
          "bold: the best corrupted-test score and the target row; the reference is `none` on the clean test")
def noisy_test(res: Results) -> str:
    d = res.cite("noisy_test.json")
    rows_in = d["rows"]
    best = max(rows_in, key=lambda k: rows_in[k]["corrupted"]["f1_macro"])
    ref = d["reference_clean_f1_macro"]
    rows = []
    for preset, r in rows_in.items():
        share = d["share_of_clean_f1_macro"][preset]
        clean = f3(r["clean"]["f1_macro"])
        clean = f"**{clean}** (reference)" if r["clean"]["f1_macro"] == ref and preset == "none" else clean
        share_text = f"{round(100 * share)}%"
        if preset == "documents":
            share_text = f"**{share_text}** (target >= 90%: {'met' if share >= 0.9 else 'missed'})"
        rows.append([preset, bold(f3(r["corrupted"]["f1_macro"]), preset == best), clean, share_text,
                     f3(r["oof_f1_macro"])])
    return table(["`augment.preset`", "macro-F1, corrupted test", "macro-F1, clean test", "corrupted / reference",
                  "OOF macro-F1"], rows)


PSEUDO_ROWS = {"baseline": "baseline (the labels only)", "pseudo": "+ pseudo-labels (`podium pseudo --threshold T`)",
               "distill": "+ OOF distillation (`train.soft_targets`, alpha A)", "both": "+ both",
               "seed": "baseline again, `train.seed=1` (training noise alone)"}


@renderer("pseudo", ("pseudo.json",),
          "docs/pseudo-labels.md: baseline vs pseudo-labels vs OOF distillation vs both (fashion-noisy, S2)",
          "test columns: the held-out corrupted test, each row's fold-0 model; +- is the paired standard error")
def pseudo_labels(res: Results) -> str:
    d = res.cite("pseudo.json")
    s, rows = d["settings"], []
    for name, r in d["rows"].items():
        label = PSEUDO_ROWS[name].replace("T`", f"{s['threshold']:g}`").replace("alpha A", f"alpha {s['alpha']:g}")
        diff = "" if name == "baseline" else (f"{signed(r['accuracy_diff'], 4)} +- {r['accuracy_diff_se']:.4f}")
        f1_diff = "" if name == "baseline" else (f"{signed(r['f1_macro_diff'], 4)} +- {r['f1_macro_diff_se']:.4f}")
        rows.append([label, f4(r["accuracy"]), diff, f4(r["f1_macro"]), f1_diff, f4(r["fold0_val_accuracy"]),
                     f"{r['train_seconds']:.0f}"])
    p = d["pseudo_labels"]
    note = (f"\n\n{num(s['n'])} labeled images, {s['folds']} folds, {s['epochs']} epochs, `{s['model']}`, "
            f"augment `{s['augment']}`; pseudo-labels: {num(p['kept'])} of {num(p['pool'])} pool images kept, "
            f"{p['accuracy_of_kept_labels']:.1%} of them right (held-out labels, not used to choose anything).")
    return table(["row", "test accuracy", "difference (paired SE)", "test macro-F1", "difference (paired SE)",
                  "fold-0 val accuracy", "train s"], rows) + note


@renderer("augment_speed", ("augment_speed.json",),
          "README 'Augmentation': what augmentation costs per step (per-image stage, ms/step)")
def augment_speed(res: Results) -> str:
    d = res.cite("augment_speed.json")
    rows = []
    for size, s in d["sizes"].items():
        images = f"{size} px {'gray' if s['channels'] == 1 else 'RGB'}, batch {s['batch']}"
        for preset, stage in s["image_stage_cpu_ms_per_image"].items():
            name = "light (default)" if preset == "light" else preset
            stage_text = "0 (batch ops only)" if preset == "light" else ("0" if stage == 0 else f"{stage:.3f}")
            added = "0" if stage == 0 else f"{num(stage * s['batch'])} ms"
            rows.append([images, name, stage_text, added,
                         f"{num(s['ms_per_step'][preset], sep='')} / {num(s['cpu_ms_per_step'][preset], sep='')}"])
    return table(["images", "preset", "per-image stage, CPU ms/image", "added per batch",
                  "ms/step measured (wall / CPU)"], rows)


LONG_TAIL_ROWS = {  # row key -> (method, what to set); `{tau}` and `{crt_epochs}` come from the results
    "ce": ("plain cross-entropy", "`train.loss=cross_entropy train.loss_args.label_smoothing=0`"),
    "weighted_ce": ("class-weighted cross-entropy", "`train.loss=weighted_ce` (inverse frequency)"),
    "focal": ("focal loss", "`train.loss=focal` (gamma 2)"),
    "balanced_softmax": ("balanced softmax", "`train.loss=balanced_softmax`"),
    "ldam_drw": ("LDAM-DRW", "`train.loss=ldam model.head=cosine`"),
    "logit_adjust": ("logit adjustment, post-hoc on the cross-entropy run",
                     "`podium posthoc RUN` (τ = {tau}, fitted on OOF)"),
    "class_balanced": ("class-balanced sampler", "`train.sampler=class_balanced`"),
    "crt": ("cRT: the cross-entropy run's backbones, classifier retrained {crt_epochs} epochs",
            "`train.stage=classifier train.init_from=RUN`"),
}


@renderer("long_tail", ("long_tail.json",),
          "README 'Long tails': every long-tail method on fashion-lt (imbalance 100), balanced test set",
          "bold method: the best on OOF (validation) balanced accuracy, the benchmark's choice; bold cells: the "
          "column's best")
def long_tail(res: Results) -> str:
    d = res.cite("long_tail.json")
    rows_in = d["rows"]
    chosen = max(rows_in, key=lambda k: rows_in[k]["oof_balanced_accuracy"])
    cols = ["balanced_accuracy", "f1_macro", "f1_weighted", "recall_rarest3"]
    best = {c: max(round(r[c], 3) for r in rows_in.values()) for c in cols}
    rows = []
    for key, r in rows_in.items():
        method, setting = LONG_TAIL_ROWS.get(key, (key, ""))
        fill = {"tau": r.get("tau"), "crt_epochs": d["settings"].get("crt_epochs")}
        rows.append([bold(method.format(**fill), key == chosen), setting.format(**fill)]
                    + [bold(f3(r[c]), round(r[c], 3) == best[c]) for c in cols])
    return table(["method", "what to set", "balanced acc", "macro-F1", "weighted-F1", "recall, 3 rarest"], rows)


@renderer("letters", ("letters.json", "letters-e10.json"),
          "README 'Multi-label, Measured': S0 letters at full size, the 20-epoch default and the 10-epoch first try")
def letters(res: Results) -> str:
    rows = []
    for file, label in (("letters.json", "the benchmark's default"), ("letters-e10.json", "first try")):
        d = res.cite(file)
        s, th, t = d["settings"], d["thresholds"], d["test"]
        test = f4(t["per_label_accuracy"])
        if file == "letters.json":
            goal = d["target"]["per_label_accuracy"]
            test = f"**{test}** (target ≥ {goal}: {'met' if d['target_met'] else 'missed'})"
        rows.append([f"{s['epochs']} epochs, lr {lr_text(s['lr'])} ({label})",
                     f"{f4(th['oof_before']['per_label_accuracy'])} → {f4(th['oof_after']['per_label_accuracy'])}",
                     test, f3(t["exact_match"]), f3(t["f1_micro"]), f"{num(d['seconds']['train'])} s"])
    return table(["run", "OOF per-label accuracy (0.5 → fitted thresholds)", "test per-label accuracy",
                  "test exact match", "test F1 micro", "train time"], rows)


@renderer("tasks_multilabel", ("tasks.json",),
          "README 'Multi-label, Measured': per-label thresholds fitted on OOF, S0 in miniature")
def tasks_multilabel(res: Results) -> str:
    d = res.cite("tasks.json", "multilabel")
    rows = []
    for key, label in (("per_label_accuracy", "per-label accuracy (S0's metric)"), ("f1_macro", "F1 macro"),
                       ("f1_micro", "F1 micro"), ("exact_match", "exact match")):
        at, fitted = d["test"][f"{key}@0.5"], d["test"][f"{key}@fitted"]
        rows.append([label, f4(d["oof_at_0.5"][key]), f4(d["oof_fitted"][key]), bold(f4(at), at > fitted),
                     bold(f4(fitted), fitted >= at)])
    return table(["score", "OOF at 0.5", "OOF, fitted thresholds", "test at 0.5", "test, thresholds fitted on OOF"],
                 rows)


@renderer("tasks_multitask", ("tasks.json",),
          "README 'Multi-task, Measured': three heads vs one 18-way head, 40 people (`--people 40 --epochs 40`)")
def tasks_multitask(res: Results) -> str:
    d = res.cite("tasks.json", "multitask_40_people")
    heads = {"three_heads": ("one backbone, three heads", "`data.task=multitask data.label_col=[mask,gender,age] "
                                                          "data.combine=\"6*mask + 3*gender + age\"`"),
             "one_head_18": ("one 18-way head", "`data.task=multiclass data.label_col=label`")}
    cols = ["cv_accuracy", "test_accuracy", "test_f1_macro"]
    best = {c: max(round(d[k][c], 3) for k in heads) for c in cols}
    rows = []
    for key, (label, setting) in heads.items():
        r = d[key]
        per_task = " / ".join(f3(r["test_per_task"][t]) for t in ("mask", "gender", "age"))
        rows.append([label, setting] + [bold(f3(r[c]), round(r[c], 3) == best[c]) for c in cols]
                    + [per_task, f"{num(r['seconds'])} s"])
    return table(["", "what to set", "CV accuracy (OOF)", "test accuracy", "test macro-F1", "test mask / gender / age",
                  "train time"], rows)


@renderer("leakage", ("leakage.json",),
          "README 'Leakage': CV by image vs CV by person on `profiles` (S1)")
def leakage(res: Results) -> str:
    d = res.cite("leakage.json")
    persons = d["settings"]["persons"]
    m = re.search(r"(\d+) new test persons", d.get("data", ""))
    new = int(m.group(1)) if m else persons
    labels = {"kfold": "`kfold`: split by image", "group": "`group`: split by person"}
    rows = []
    for key, r in d["rows"].items():
        gap = signed(r["gap"], 3, minus="−")
        found = r["data_check_group_findings"]
        rows.append([labels.get(key, f"`{key}`"), f3(r["cv"]["label"]), f3(r["test"]["label"]),
                     bold(gap, key == "kfold" and d.get("kfold_overstates", False)),
                     f"{found} of {persons}" if found else "0"])
    return table(["folds", "CV (OOF accuracy)", f"accuracy on {new} new persons", "CV − test",
                  "persons in > 1 fold (`data check`)"], rows)


ENSEMBLE_ROWS = {"mean": "mean of the two", "blend": "fitted blend"}


@renderer("ensemble", ("ensemble.json",),
          "README 'Ensembles and TTA on Fashion-MNIST': accuracy of each run, mean and blend, OOF and test, per TTA",
          "bold: the best single run on test (the target compares the blend with it)")
def ensemble(res: Results) -> str:
    d = res.cite("ensemble.json")
    acc = d["accuracy"]
    ttas = list(next(iter(acc.values())))
    suffix = {t: "" if t == "none" else f" {t}" for t in ttas}
    header = ["accuracy"] + [f"OOF{suffix[t]}" for t in ttas] + [f"test{suffix[t]}" for t in ttas]
    models = [k for k in acc if k not in ENSEMBLE_ROWS]
    rows = []
    for key, r in acc.items():
        is_run = key in models
        rows.append([ENSEMBLE_ROWS.get(key, key)] + [f4(r[t]["oof"]) for t in ttas]
                    + [bold(f4(r[t]["test"]), is_run and r[t]["test"] == d["best_single_test"][t]) for t in ttas])
    return table(header, rows)


def _comparison(text: str) -> str:
    """'podium_cnn: TTA hflip vs none' -> 'podium_cnn: hflip vs none'; 'mean vs best run (podium_cnn), TTA none'
    -> 'mean vs best run, no TTA'."""
    text = re.sub(r": TTA ", ": ", text)
    text = re.sub(r" \([^)]*\), TTA none$", ", no TTA", text)
    return re.sub(r" \([^)]*\), TTA ", ", ", text)


@renderer("ensemble_signs", ("ensemble.json",),
          "README 'Ensembles and TTA on Fashion-MNIST': does an OOF gain predict a test gain (with standard errors)")
def ensemble_signs(res: Results) -> str:
    d = res.cite("ensemble.json")
    rows = [[_comparison(c["comparison"]), f"{signed(c['oof_gain'])} ± {c['oof_se']:.4f}",
             f"{signed(c['test_gain'])} ± {c['test_se']:.4f}", "yes" if c["agree"] else "no"]
            for c in d["sign_checks"]]
    return table(["comparison", "OOF gain", "test gain", "same sign"], rows)


@renderer("data_loading", ("data_loading.json",),
          "the data-loading row of the README's 'Measured' table, as its own table")
def data_loading(res: Results) -> str:
    d = res.cite("data_loading.json")
    s, b, p = d["settings"], d["imagefolder_pil"], d["podium_cache"]
    workers = "/".join(str(w) for w in s["baseline_workers"])
    rows = [
        ["images", f"{num(s['n_images'])} {s['side_px']}×{s['side_px']}, {s['formats']}, batch {s['batch_size']}"],
        ["images/s into the training loop: podium's decode cache", bold(num(p["img_per_s"]))],
        [f"images/s: ImageFolder + PIL, best of {workers} workers ({b['best_workers']})", num(b["best_img_per_s"])],
        ["podium / ImageFolder", f"**{d['ratio_podium_over_imagefolder']:.0f}×** (target ≥ {d['target_ratio']}×)"],
        ["cache: one-time build / reuse", f"{p['build_s']:.0f} s / {1000 * p['reuse_s']:.0f} ms"],
        ["peak RSS while iterating (of which before: importing torch)",
         f"{num(p['peak_mb_while_iterating']['rss'])} MB ({num(p['rss_mb_before']['rss'])} MB)"],
        ["1-min load average, start → end",
         f"{d['machine']['loadavg_1min_start']:.1f} → {d['machine']['loadavg_1min_end']:.1f} "
         f"on {d['machine']['cpu_count']} CPUs"],
    ]
    return table(["what", "measured"], rows)


@renderer("train_overhead", ("train_overhead.json",),
          "the 'Lightning loop vs bare loop' row of the README's 'Measured' table, as its own table")
def train_overhead(res: Results) -> str:
    d = res.cite("train_overhead.json")
    s, ms = d["settings"], d["ms_per_step"]
    rounds = d["rounds"]
    rows = [
        ["settings", f"`{s['model']}`, {s['size']} px, batch {s['batch']}, {s['rounds']} alternating rounds of "
                     f"{s['steps']} steps, {d['torch_threads']} torch threads"],
        ["time per step, podium / bare (median of rounds)",
         f"{ms['podium']:.0f} / {ms['bare']:.0f} ms: **{d['ratio_podium_over_bare']:.2f}×**"],
        ["each round, podium / bare",
         ", ".join(f"{a:.0f} / {b:.0f}" for a, b in zip(rounds["podium_ms"], rounds["bare_ms"])) + " ms"],
        ["training GFLOP/s, podium / bare",
         f"{d['achieved_gflops']['podium']:.0f} / {d['achieved_gflops']['bare']:.0f}"],
        ["share of the fp32 matmul peak measured in the same run",
         f"{100 * d['share_of_peak']['podium']:.0f}% / {100 * d['share_of_peak']['bare']:.0f}% of "
         f"{d['fp32_matmul_peak_gflops']:.0f} GFLOP/s"],
    ]
    p = own_provenance(d)
    if p and p.get("loadavg_start"):
        rows.append(["load average (1 min), start → end",
                     f"{p['loadavg_start'][0]:.1f} → {p['loadavg_end'][0]:.1f} on {p['cpu_count']} CPUs"])
    return table(["what", "measured"], rows)


@renderer("mirror", ("mirror.json",), "docs/mirror.md: the mirror's cost on epoch time, side by side with no mirror")
def mirror(res: Results) -> str:
    d = res.cite("mirror.json")
    per, med = d["seconds_per_epoch"], d["median_seconds_per_epoch"]
    last = d["mirrored"][-1]
    rows = [
        ["settings", f"`{d['model']}` on digits ({num(d['n_train'])} training images), fold 0, {d['epochs']} epochs, "
                     f"{d['rounds']} alternating rounds; store: {d['store']}"],
        ["seconds per epoch, no mirror / `--mirror s3://...` (median of rounds)",
         f"{med['none']:.2f} / {med['s3']:.2f} s: **{100 * d['overhead']:+.1f}%** (target ≤ 2%)"],
        ["each round, no mirror / mirror", ", ".join(f"{a:.2f} / {b:.2f}" for a, b in zip(per["none"], per["s3"]))
         + " s"],
        ["mirrored per run", f"{last['files']} files, {last['bytes'] / 2**20:.1f} MiB"],
    ]
    p = own_provenance(d)
    if p and p.get("loadavg_start"):
        rows.append(["load average (1 min), start → end",
                     f"{p['loadavg_start'][0]:.1f} → {p['loadavg_end'][0]:.1f} on {p['cpu_count']} CPUs"])
    return table(["what", "measured"], rows)


@renderer("ddp_cpu", ("ddp_cpu.json",),
          "docs/multi-gpu.md: 2-process CPU DDP against 1 process on digits (a correctness check, not a speed figure)")
def ddp_cpu(res: Results) -> str:
    d = res.cite("ddp_cpu.json")
    s = d["settings"]
    rows = []
    for r in d["runs"]:
        threads = r.get("threads_per_process")
        rows.append([f"{r['devices']} process{'es' if r['devices'] > 1 else ''} × batch {r['batch_per_device']}"
                     + (f", {threads} thread{'s' if threads > 1 else ''} each" if threads else ""),
                     f"{r['median_epoch_seconds']:.2f} s", ", ".join(f"{x:.2f}" for x in r["epoch_seconds"]),
                     f"{r['wall_seconds']:.0f} s", f3(r["fold0_accuracy"])])
    p = own_provenance(d)
    load = (f"; load average (1 min) {p['loadavg_start'][0]:.1f} → {p['loadavg_end'][0]:.1f} on {p['cpu_count']} "
            "CPUs" if p and p.get("loadavg_start") else "")
    note = (f"\n\nDigits, {num(s['n'])} training images, fold 0 of 2, `{d['model']}` at {d['image_size']} px, "
            f"{s['epochs']} epochs, {s['batch']} images per optimizer step, `train.accelerator=cpu`; epoch time: "
            f"training and validation, first epoch left out (`python benchmarks/ddp_cpu.py --n {s['n']} --epochs "
            f"{s['epochs']} --batch {s['batch']}`){load}.")
    return table(["run", "epoch (median)", "each epoch after the first, s", "command", "fold 0 accuracy"], rows) + note


@renderer("report_speed", ("report_speed.json",),
          "the `podium report` row of the README's 'Measured' table, as its own table")
def report_speed(res: Results) -> str:
    d = res.cite("report_speed.json")
    rows = [
        ["run", f"{len(d['folds'])} folds, {num(d['oof_images'])} OOF images (CV {f3(d['cv_accuracy'])})"],
        ["seconds, fresh process each", ", ".join(f"{s:.1f}" for s in d["seconds"])],
        ["median", f"**{d['median_seconds']:.1f} s** (target < {d['target_seconds']:.0f} s)"],
        ["page", f"{d['html_bytes'] / 1e6:.1f} MB of HTML, {d['images_embedded']} images embedded"],
        ["1-min load average before each", ", ".join(f"{x:.1f}" for x in d["load_average_1min_before_each"])
         + f" on {d['cpu_count']} CPUs"],
    ]
    return table(["what", "measured"], rows)


LT_SHORT = {"ce": "plain cross-entropy", "weighted_ce": "weighted CE", "focal": "focal", "balanced_softmax":
            "balanced softmax", "ldam_drw": "LDAM-DRW", "logit_adjust": "post-hoc logit adjustment",
            "class_balanced": "class-balanced sampler", "crt": "cRT"}


def _measured_rows(res: Results) -> list[list[str]]:
    rows = []
    d = res.cite("data_loading.json")
    s, b, p = d["settings"], d["imagefolder_pil"], d["podium_cache"]
    rows.append([f"images/s into the training loop, {num(s['n_images'])} {s['side_px']}×{s['side_px']} PNG+JPEG, "
                 f"batch {s['batch_size']}",
                 f"podium cache **{num(p['img_per_s'])}** vs ImageFolder+PIL (best of "
                 f"{'/'.join(map(str, s['baseline_workers']))} workers) **{num(b['best_img_per_s'])}**: "
                 f"**{d['ratio_podium_over_imagefolder']:.0f}×** (1-min load average "
                 f"{d['machine']['loadavg_1min_start']:.1f} → {d['machine']['loadavg_1min_end']:.1f}); one-time build "
                 f"{p['build_s']:.0f} s ({num(s['n_images'])} images), reuse {1000 * p['reuse_s']:.0f} ms; peak RSS "
                 f"{num(p['peak_mb_while_iterating']['rss'])} MB, of which importing torch is "
                 f"{num(p['rss_mb_before']['rss'])} MB", "`make bench-data`"])
    d = res.cite("train_overhead.json")
    s, ms = d["settings"], d["ms_per_step"]
    rows.append([f"podium's Lightning loop vs a bare PyTorch loop, `{s['model']}`, {s['size']} px, batch {s['batch']}, "
                 f"alternating rounds",
                 f"**{d['ratio_podium_over_bare']:.2f}×** time per step ({ms['podium']:.0f} vs {ms['bare']:.0f} ms); "
                 f"training at {d['achieved_gflops']['podium']:.0f} GFLOP/s = "
                 f"{100 * d['share_of_peak']['podium']:.0f}% "
                 f"of the fp32 matmul peak measured in the same run ({d['fp32_matmul_peak_gflops']:.0f} GFLOP/s)",
                 "`make bench-train`"])
    d = res.cite("fashion_mnist.json")
    s, k = d["settings"], d["config"]["cv"]["n_folds"]
    folds = d["folds_trained"]
    trained = f"{k} folds" if len(folds) == k else \
        f"fold {', '.join(map(str, folds))} of {k} = {num(60000 * (k - 1) / k)} images"
    rows.append([f"Fashion-MNIST, full pipeline (cache, split, train {trained}, {s['epochs']} epochs, predict with "
                 f"{s['tta']} TTA), official 10,000 test images held out",
                 f"test accuracy **{f3(d['test_accuracy'])}** in **{num(d['wall_seconds'])} s** wall "
                 f"(CV {f3(d['cv_accuracy'])}); the brief's bars: timm `train.py` 0.882 in ~12 min, fastai 0.903 in "
                 f"~15 min, plain 4-conv CNN 0.922 in ~12 min", "`make bench-fashion`"])
    entry = bare_loop_entry(res.load("podium_cnn.json"))
    if entry is not None:
        res.cite("podium_cnn.json", part=entry, label="the entry shown")
        c, sel = entry["config"], entry["selection"]
        per_epoch = entry["train_wall_s"] / len(entry["epochs"])
        rows.append([f"`{c['model']}` alone, bare loop, {sel['on'].split(';')[0]} held out to choose the drop rate "
                     f"({sel['chosen_drop_rate']})",
                     f"{f3(entry['test_acc'])} test after {c['epochs']} epochs of ~{per_epoch:.0f} s "
                     f"({f4(entry['test_acc_hflip_tta'])} with hflip TTA)", "`make bench-cnn`"])
    d = res.cite("long_tail.json")
    r = d["rows"]
    chosen = max(r, key=lambda key: r[key]["oof_balanced_accuracy"])
    others = sorted((key for key in r if key not in ("ce", chosen)), key=lambda key: -r[key]["balanced_accuracy"])
    gain = 100 * (round(r[chosen]["balanced_accuracy"], 3) - round(r["ce"]["balanced_accuracy"], 3))  # as shown
    rows.append([f"long tails: fashion-lt (imbalance 100), fold 0, `{d['settings']['model']}` "
                 f"{d['settings']['epochs']} epochs, balanced 10,000-image test set",
                 f"balanced accuracy: plain cross-entropy **{f3(r['ce']['balanced_accuracy'])}** → "
                 f"{LT_SHORT.get(chosen, chosen)} **{f3(r[chosen]['balanced_accuracy'])}** ({gain:+.1f} points; "
                 + ", ".join(f"{LT_SHORT.get(key, key)} {f3(r[key]['balanced_accuracy'])}" for key in others)
                 + f"); {LT_SHORT.get(chosen, chosen)} is the best on OOF balanced accuracy", "`make bench-long-tail`"])
    d = res.cite("report_speed.json")
    loads = d["load_average_1min_before_each"]
    rows.append([f"`podium report` on a {len(d['folds'])}-fold Fashion-MNIST run, {num(d['oof_images'])} OOF images "
                 f"(galleries sampled: {d['images_embedded']} images, {d['html_bytes'] / 1e6:.1f} MB of HTML; "
                 f"Grad-CAM from the real fold checkpoints)",
                 f"median **{d['median_seconds']:.1f} s** of {len(d['seconds'])} in a fresh process "
                 f"({', '.join(f'{x:.1f}' for x in d['seconds'])} s; 1-min load average "
                 f"~{sum(loads) / len(loads):.0f} on {d['cpu_count']} cores), target < {d['target_seconds']:.0f} s",
                 "`make bench-report`"])
    d = res.cite("noisy_test.json")
    nr, k = d["rows"], d["rows"]["none"]["config"]["cv"]["n_folds"]
    share = d["share_of_clean_f1_macro"]["documents"]
    rows.append([f"augmentation for a corrupted test set (S2): fashion-noisy, `{d['settings']['model']}` "
                 f"{d['settings']['epochs']} epochs on {num(d['settings']['n'] * (k - 1) / k)} images, macro-F1 on the "
                 f"corrupted 10,000",
                 ", ".join(f"`{p}` " + bold(f3(v["corrupted"]["f1_macro"]), p in ("none", "documents"))
                           for p, v in nr.items())
                 + f" = {100 * share:.0f}% of the clean-test reference {f3(d['reference_clean_f1_macro'])} "
                   f"(target ≥ 90%: {'met' if share >= 0.9 else 'missed'}); {num(d['wall_seconds'])} s",
                 "`make bench-noisy`"])
    d = res.cite("augment_speed.json")
    sizes = d["sizes"]
    names = " / ".join(f"{size} px {'gray' if v['channels'] == 1 else 'RGB'}" for size, v in sizes.items())
    stage = {size: v["image_stage_cpu_ms_per_image"] for size, v in sizes.items()}
    presets = [p for p in next(iter(stage.values())) if any(st[p] for st in stage.values())]
    rows.append([f"per-image augmentation cost (CPU ms per image, {names})",
                 ", ".join(f"`{p}` " + " / ".join(f"{st[p]:.2f}" for st in stage.values()) for p in presets)
                 + "; the default `light` has no per-image stage", "`make bench-augment`"])
    d = res.cite("ensemble.json")
    st = d["settings"]
    n_test = st["test_subset"]
    best = d["best_single_test"]
    diffs = {t: round((d["accuracy"]["blend"][t]["test"] - best[t]) * n_test) for t in best}
    tta_checks = [c for c in d["sign_checks"] if ": TTA " in c["comparison"]]
    rows.append([f"ensembles and TTA: {len(st['models'].split(','))} backbones × 5 folds, Fashion-MNIST "
                 f"{num(st['subset'])}-image subset, {st['epochs']} epochs, official test",
                 f"fitted blend {f4(d['accuracy']['blend']['none']['test'])} vs best run {f4(best['none'])} on test "
                 f"(target \"blend ≥ best run\": met with {sum(n >= 0 for n in diffs.values())} of {len(diffs)} TTA "
                 "settings; blend − best run in test images: "
                 + ", ".join(f"{'no TTA' if t == 'none' else t} {'±0' if n == 0 else signed(n, 0, '−')}"
                             for t, n in diffs.items())
                 + f"); OOF predicted the sign of test gains in {sum(c['agree'] for c in tta_checks)} of "
                   f"{len(tta_checks)} TTA comparisons, {d['sign_agreement']} overall; {num(d['wall_seconds'])} s",
                 "`make bench-ensemble`"])
    d = res.cite("tasks.json", "multilabel")
    t = d["test"]
    errors = (1 - t["per_label_accuracy@fitted"]) / (1 - t["per_label_accuracy@0.5"]) - 1
    rows.append([f"multi-label thresholds fitted on OOF ({len(d['config']['data']['label_col'])} glyphs, 1,200 train / "
                 f"600 test)",
                 f"test per-label accuracy {f4(t['per_label_accuracy@0.5'])} → "
                 f"**{f4(t['per_label_accuracy@fitted'])}** "
                 f"({signed(errors * 100, 0, '−')}% errors), exact match {f3(t['exact_match@0.5'])} → "
                 f"{f3(t['exact_match@fitted'])}", "`make bench-tasks`"])
    d, e10 = res.cite("letters.json"), res.cite("letters-e10.json")
    rows.append([f"S0 letters: 5,000 / 1,000 256×256 images, pretrained `{d['settings']['model']}` at "
                 f"{d['settings']['size']} px, fold {d['settings']['folds']}",
                 f"test per-label accuracy **{f4(d['test']['per_label_accuracy'])}** (target ≥ "
                 f"{d['target']['per_label_accuracy']}: {'met' if d['target_met'] else 'missed'}), exact match "
                 f"{f3(d['test']['exact_match'])}; {d['settings']['epochs']} epochs, {num(d['seconds']['train'])} s "
                 f"training ({e10['settings']['epochs']} epochs: {f3(e10['test']['per_label_accuracy'])}, too short)",
                 "`make bench-letters`"])
    d = res.cite("leakage.json")
    kf, gr, persons = d["rows"]["kfold"], d["rows"]["group"], d["settings"]["persons"]
    rows.append([f"leakage (S1): profiles, 18 classes, {persons} persons × 7, CV vs {persons} new persons",
                 f"`kfold` CV {f3(kf['cv']['label'])} vs test {f3(kf['test']['label'])} "
                 f"(**{signed(kf['gap'], 3, '−')}**{', overstated' if d.get('kfold_overstates') else ''}); `group` CV "
                 f"{f3(gr['cv']['label'])} vs test {f3(gr['test']['label'])} ({signed(gr['gap'], 3, '−')})",
                 "`make bench-leakage`"])
    d = res.cite("near_duplicates.json")
    hs = list(d["hash_seconds"].values())
    rows.append([f"near-duplicate search in `podium data check`, {num(d['n_images'])} Fashion-MNIST images",
                 f"hashing {hs[0]:.1f} s" + (f" (`imagehash` {hs[1]:.1f} s)" if len(hs) > 1 else "")
                 + ", all-pairs search + confirmation "
                 f"{d['two_step_seconds_default']:.1f} s; {100 * d['planted_reported']:.1f}% of planted copies found",
                 "`make bench-near-dup`"])
    d = res.cite("gpu.json")
    if "throughput" in d:  # benchmarks/gpu.py since issue 13: podium vs a bare loop, then Fashion-MNIST end to end
        rows.append(_gpu_row(d))
        return rows
    g, s = d["efficientnet_lite0_fold0"], d["settings"]
    rows.append([f"the GPU path, {d['device']} (torch {d['torch']}): digits at {s['size']} px, pretrained "
                 f"`efficientnet_lite0`, fold 0, {s['epochs']} epochs, batch {s['batch']}",
                 f"fp32 **{num(g['32']['train_images_per_second'])}** vs bf16 mixed "
                 f"**{num(g['bf16']['train_images_per_second'])}** training images/s (**{d['bf16_speedup']:.2f}×**; "
                 f"peak GPU memory {g['32']['peak_gpu_memory_gb']:.1f} → {g['bf16']['peak_gpu_memory_gb']:.1f} GB); "
                 f"bf16 CV {f3(g['bf16']['cv_accuracy'])} vs fp32 {f3(g['32']['cv_accuracy'])} at this budget; "
                 f"`podium demo` on the GPU: {num(d['demo']['wall_seconds'])} s, CV {f4(d['demo']['cv'])} and test "
                 f"{f3(d['demo']['test_accuracy'])}", "`make bench-gpu` (needs a GPU)"])
    return rows


def _gpu_row(d: dict) -> list[str]:
    s, parts = d["settings"], []
    for model, by_aug in d["throughput"].items():
        light = by_aug.get("light")
        if light:
            podium, bare = light["podium"]["train_images_per_second"], light["bare"]["train_images_per_second"]
            parts.append(f"`{model}` light: podium **{num(podium)}** vs bare loop {num(bare)} images/s "
                         f"(**{light['podium_over_bare']:.2f}×**)")
        if "heavy_over_light" in by_aug:
            parts.append(f"heavy/light {by_aug['heavy_over_light']['podium']:.2f}")
    fm = d["fashion_mnist_fold0"]
    if "seconds" in fm:
        parts.append(f"Fashion-MNIST fold 0, competition folder → submission: **{fm['seconds']:.0f} s**, test "
                     f"{f3(fm['test_accuracy'])}")
    return [f"the GPU path, {d['device']} (torch {d['torch']}): {s['size']} px, {num(s['n_train'])} training images, "
            f"batch {s['batch']}, bf16, steady state", "; ".join(parts), "`make bench-gpu` (needs a GPU)"]


@renderer("label_review", ("label_review.json",),
          "docs/label-review.md: planted mislabels found by --suspect; test accuracy with data.exclude and "
          "train.finetune_size", "vs noisy: the test difference on the same images, ± its paired standard error")
def label_review(res: Results) -> str:
    d = res.cite("label_review.json")
    s, r = d["settings"], d["review"]
    found = table(["planted mislabels", "--suspect lists", "of them planted", "recall", "precision",
                   f"recall / precision at the top {s['noise']:.0%}", "suspected = the true label"],
                  [[num(r["planted"]), f"{num(r['listed'])} (top {s['fraction']:.0%})", num(r["planted_listed"]),
                    f3(r["recall"]), f3(r["precision"]),
                    f"{f3(r['recall_at_noise_rate'])} / {f3(r['precision_at_noise_rate'])}",
                    f3(r["suspected_is_true_label"])]])
    names = {"noisy": "noisy labels as given", "cleaned": f"+ `data.exclude` of the top {s['fraction']:.0%} (drop)",
             "finetune": f"+ `train.finetune_size={s['finetune_size']}` (last {s['finetune_epochs']} epochs)"}
    rows = []
    for key, run in d["runs"].items():
        vs = run.get("vs_noisy")
        rows.append([names.get(key, key), num(run["n_train"]), f4(run["cv"]), f4(run["test_accuracy"]),
                     f"{signed(vs['difference'])} ± {f4(vs['se'])}" if vs else ""])
    runs = table(["run", "images trained", "CV (its own labels)", f"test accuracy ({num(d['n_test'])})", "vs noisy"],
                 rows)
    return (f"Fashion-MNIST, {num(s['n'])} training images, {s['noise']:.0%} of labels flipped (seed {s['seed']}), "
            f"podium_cnn 28 px, {s['folds']} folds x {s['epochs']} epochs:\n\n{found}\n\n{runs}")


@renderer("measured", ("data_loading.json", "train_overhead.json", "fashion_mnist.json", "podium_cnn.json",
                       "long_tail.json", "report_speed.json", "noisy_test.json", "augment_speed.json", "ensemble.json",
                       "tasks.json", "letters.json", "letters-e10.json", "leakage.json", "near_duplicates.json",
                       "gpu.json"),
          "README 'Measured': one row per benchmark (what | figure | command); rows with no results file (make demo, "
          "the test suite) stay outside the block",
          "asides measured outside the results files (quieter reruns, import times) are left out")
def measured(res: Results) -> str:
    return table(["what", "figure", "command"], _measured_rows(res))


@renderer("tune", ("tune.json",), "docs/tuning.md: `podium tune` against the default config, and its costs")
def tune(res: Results) -> str:
    t = res.cite("tune.json")
    s, d, w, tr = t["settings"], t["default"], t["tuned"], t["trials"]
    params = ", ".join(f"`{k}={v:.3g}`" if isinstance(v, float) else f"`{k}={v}`" for k, v in w["params"].items())
    rows = [
        [f"default config ({s['epochs']} epochs, podium's defaults)", f"{f4(d['cv'])} ± {f4(d['cv_fold_std'])}",
         f4(d["test_accuracy"]), f"{d['seconds']:.0f} s"],
        [f"**tuned**: trial {w['trial']} of {tr['n']} ({tr['pruned']} pruned), best of {s['confirm']} confirmed: "
         f"{params}", f"**{f4(w['cv'])}** ± {f4(w['cv_fold_std'])}", f"**{f4(w['test_accuracy'])}**",
         f"{t['tune_seconds']:.0f} s"],
        ["time per trial (fold 0) / confirming the finalists on the other folds",
         f"{tr['seconds_mean']:.1f} s / {t['confirm_train_seconds']:.0f} s", "", ""],
        ["the rest of `podium tune` (Optuna, storage, the summary) / Optuna alone per trial (TPE, journal)",
         f"{t['outside_training_seconds']:.1f} s / {t['optuna_seconds_per_trial'] * 1000:.0f} ms", "", ""],
    ]
    head = [f"Fashion-MNIST, {num(s['n'])} training images, podium_cnn", f"OOF CV ({s['folds']} folds)",
            "held-out test", "wall"]
    return table(head, rows)


# ----------------------------------------------------------------------------------------------- staleness


def git(*args: str) -> str | None:
    out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def blob(rev: str, path: str) -> str | None:
    return git("rev-parse", "--verify", "-q", f"{rev}:{path}")


def staleness(prov: dict | None, paths: tuple[str, ...], head: str = "HEAD") -> str | None:
    """Why results with this provenance are stale for code under `paths` at `head`, or None when fresh."""
    if not prov or not prov.get("commit"):
        return "no provenance commit recorded"
    commit = prov["commit"]
    if git("cat-file", "-e", f"{commit}^{{commit}}") is None:
        return f"its commit {commit[:7]} is not in this repository"
    if subprocess.run(["git", "merge-base", "--is-ancestor", commit, head], cwd=ROOT).returncode != 0:
        return f"its commit {commit[:7]} is not in the history of {head}"
    changed = set((git("diff", "--name-only", commit, head, "--", *paths) or "").splitlines())
    dirty = {p: h for p, h in (prov.get("dirty_files") or {}).items()
             if any(p == root or p.startswith(root.rstrip("/") + "/") for root in paths)}
    differ = []
    for path in sorted(changed | set(dirty)):
        seen = dirty[path] if path in dirty else blob(commit, path)
        seen = None if seen == "deleted" else seen
        if seen != blob(head, path):
            differ.append(path)
    if not differ:
        return None
    last = git("log", "-1", "--format=%h %ad", "--date=short", f"{commit}..{head}", "--", *differ)
    where = f"; last changed by {last}" if last else " (uncommitted at measurement)"
    more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
    return f"measured at {commit[:7]}, code changed since: {', '.join(differ[:3])}{more}{where}"


def stale_report(folder: Path = RESULTS) -> list[str]:
    """A line per stale results file, or stale part of one: every file in `folder` (a list-shaped file: its latest
    entry), and every part a renderer cites, each with the renderers that show it."""
    units: dict[tuple[str, str], dict] = {}  # (file, part label) -> {"part", "data", "shown_by"}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        label = "latest entry" if isinstance(data, list) else ""
        part = (data[-1] if data else None) if isinstance(data, list) else data
        units[(path.name, label)] = {"part": part, "data": data, "shown_by": []}
    for name in RENDERERS:
        try:
            _, res = render(name, folder=folder)
        except Exception:  # noqa: BLE001 - a renderer that cannot render is reported by --check
            continue
        for file, part, label in res.cited:
            unit = units.setdefault((file, label or ""), {"part": part, "data": res.load(file), "shown_by": []})
            unit["shown_by"].append(name)
    lines = []
    for (file, label), unit in units.items():
        provs = all_provenance(unit["part"]) or [None]
        paths = measures(file, unit["data"])
        reasons = sorted({r for r in (staleness(p, paths) for p in provs) if r})
        shown = f" (shown by {', '.join(unit['shown_by'])})" if unit["shown_by"] else " (not rendered anywhere)"
        for reason in reasons:
            lines.append(f"stale: benchmarks/results/{file}{f' [{label}]' if label else ''}: {reason}{shown}")
    return lines


# ----------------------------------------------------------------------------------------------- markdown files


def default_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def rewrite(text: str, folder: Path = RESULTS) -> tuple[str, list[str], list[str]]:
    """(text with every block rendered afresh, names of blocks that changed, problems: unknown names, markers
    without an end)."""
    changed, problems = [], []

    def fresh(m: re.Match) -> str:
        name = m.group("name")
        if name not in RENDERERS:
            problems.append(f"unknown renderer {name!r} (registered: {', '.join(sorted(RENDERERS))})")
            return m.group(0)
        body = render(name, folder=folder)[0]
        body = "\n" + body
        if body != m.group("body"):
            changed.append(name)
        return m.group(1) + body + m.group(4)

    new = BLOCK.sub(fresh, text)
    opened = len(OPEN.findall(text))
    closed = len(BLOCK.findall(text))
    if opened != closed:
        problems.append(f"{opened - closed} `<!-- figures:NAME -->` marker(s) without a matching `<!-- /figures -->`")
    return new, changed, problems


@renderer("serve", ("serve.json",),
          "docs/shipping.md: podium serve under load; ONNX Runtime vs PyTorch on CPU")
def serve(res: Results) -> str:
    d = res.cite("serve.json")
    rows = []
    for name, r in d["runtimes"].items():
        rows.append([f"{name} ({r['image_size']} px, {r['threads']} thread)",
                     f"{r['pytorch_single_ms']:.2f} / {r['onnxruntime_single_ms']:.2f} ms ({r['speedup_single']:.1f}x)",
                     f"{num(r['pytorch_batch32_images_per_s'])} / {num(r['onnxruntime_batch32_images_per_s'])} "
                     f"({r['speedup_batch32']:.1f}x)", f"{r['max_abs_diff']:.0e}"])
    out = table(["network", "1 image: PyTorch / ONNX Runtime", "batch 32, images/s: PyTorch / ONNX Runtime",
                 "max abs diff"], rows)
    s = d["serve"]
    if s:
        out += "\n\n" + table(["`podium serve` on loopback", "value"], [
            ["requests sent (asked; bound)", f"{num(s['requests'])} ({num(s['asked'])}; {s['max_seconds']:g} s)"],
            ["concurrent clients", str(s["concurrency"])],
            ["errors (non-200 or another label than podium predict's)", str(s["errors"])],
            ["requests/s", f"{s['req_per_s']:.1f}"],
            ["latency p50 / p99", f"{s['p50_ms']:.0f} / {s['p99_ms']:.0f} ms"],
            ["server RSS before / after the load", f"{s['rss_before_mb']:.0f} / {s['rss_after_mb']:.0f} MB"],
            ["images per model call (micro-batching)", f"{s['mean_batch']:.2f}"],
        ])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help="markdown files (default: README.md and docs/*.md)")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if any block differs")
    ap.add_argument("--strict", action="store_true", help="with --check (or alone): stale results fail too")
    ap.add_argument("--render", metavar="NAME", help="print one block, markers included")
    ap.add_argument("--list", action="store_true", help="list the renderers")
    ap.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.list:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `--list | head` ends quietly
        for r in RENDERERS.values():
            files = ", ".join(f"{f} ({' + '.join(measures(f))})" for f in r.files)
            print(f"{r.name}\n    shows: {r.shows}\n    from: {files}" + (f"\n    note: {r.notes}" if r.notes else ""))
        return 0
    if args.render:
        print(f"<!-- figures:{args.render} -->\n" + render(args.render, folder=args.results)[0] + "<!-- /figures -->")
        return 0
    failed = False
    for path in args.files or default_files():
        text = path.read_text()
        new, changed, problems = rewrite(text, args.results)
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        for problem in problems:
            print(f"{shown}: {problem}", file=sys.stderr)
            failed = True
        if changed and args.check:
            for name in changed:
                print(f"{shown}: block figures:{name} differs from benchmarks/results (run benchmarks/figures.py)",
                      file=sys.stderr)
            failed = True
        elif changed:
            path.write_text(new)
            print(f"{shown}: rewrote {', '.join(changed)}")
    stale = stale_report(args.results)
    for line in stale:
        print(("error: " if args.strict else "warning: ") + line, file=sys.stderr)
    if args.check and not failed:
        print(f"figures: every block matches its results ({len(stale)} stale warning(s))")
    return 1 if failed or (args.strict and stale) else 0


if __name__ == "__main__":
    sys.exit(main())

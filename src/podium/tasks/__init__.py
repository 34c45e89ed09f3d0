"""Task kinds (`data.task`, `podium list tasks`): what one image's label is, and everything that follows from it.

  multiclass  one class per image: a softmax over the classes (podium's default)
  multilabel  any set of labels per image (S0: which of 26 letters appear): one sigmoid per label, decided by a
              per-label threshold fitted on the OOF (RUN/thresholds.json)
  multitask   one class per task (S1: mask x gender x age): one backbone, one softmax per task over its slice of
              the classifier's outputs, mapped back to one submission class by `data.combine`

A task reads the training table's labels, names the network's outputs (classes.json: classes | labels |
task:class), turns logits into probabilities, encodes targets (class index N | multi-hot N x K | class index per
task N x T), scores predictions with its own metric registry, fits and applies its decision, and fills the
submission. The training loop, prediction and the folds ask the task instead of branching on the kind.

In tables and OOF files a multi-label set is written as its labels joined by `data.label_sep` and a multi-task
label as each task's class in data.label_col order joined the same way ("1 0 2"), so they stay one text column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podium.config import Config, DataConfig, TrainConfig
from podium.errors import PodiumError, Problem, fmt_list
from podium.metrics import METRICS, MULTILABEL_METRICS, Metric, score_all
from podium.registry import Entry, Registry
from podium.tasks.combine import Combine
from podium.thresholds import fit_thresholds

# ------------------------------------------------------------------------------------------ helpers


def sorted_names(values) -> list[str]:
    """Sorted unique non-empty texts, numerically when every one is an integer."""
    uniq = sorted({str(x) for x in values if isinstance(x, str) and x != ""})
    try:
        return sorted(uniq, key=int)
    except ValueError:
        return uniq


def _problem(kind: str, where: str, message: str):
    return Problem(kind, where, message)


def _f1_macro(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, average="macro", zero_division=0))


def _split(text, sep: str) -> tuple[str, ...]:
    """A delimited label text as a tuple of stripped, non-empty labels (NaN and '' are the empty set)."""
    if not isinstance(text, str):
        return ()
    return tuple(dict.fromkeys(p.strip() for p in text.split(sep) if p.strip()))


# ------------------------------------------------------------------------------------------- multiclass


class Multiclass:
    """One class per image (the class names are the outputs)."""

    kind = "multiclass"

    def __init__(self, data: DataConfig, outputs: list[str]):
        self.data, self.outputs = data, list(outputs)

    # ---- reading the training table
    @staticmethod
    def read_labels(frame: pd.DataFrame, data: DataConfig, csv) -> tuple[pd.Series, pd.Series | None, list]:
        """(label text per row, label tuples or None, problems) from the CSV's label column(s)."""
        return frame[data.label_col].str.strip(), None, []

    @staticmethod
    def outputs_of(frame: pd.DataFrame, data: DataConfig) -> list[str]:
        return class_names(frame["label"], data.classes)

    def stratify_key(self, frame: pd.DataFrame) -> pd.Series:
        return frame["label"]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        return self.parse(frame["label"])

    def parse(self, text: pd.Series) -> np.ndarray:
        """Targets from label texts (a table's or an OOF file's `label` column)."""
        return text.map({c: i for i, c in enumerate(self.outputs)}).to_numpy().astype(int)

    def key(self, targets: np.ndarray) -> np.ndarray:
        """One class index per image: what samplers balance and what stratification keys on."""
        return np.asarray(targets)

    def counts(self, targets: np.ndarray) -> dict[str, int]:
        """Images per output, in output order."""
        return dict(zip(self.outputs, np.bincount(targets, minlength=len(self.outputs)).tolist()))

    # ---- the network
    def activation(self, logits):
        return logits.softmax(1)

    def build_loss(self, train: TrainConfig, train_targets: np.ndarray, logit_scale: float | None):
        """train.loss with its train.loss_args, fitted to the fold's training targets (class counts)."""
        from podium.losses import LossContext, create_loss

        counts = np.bincount(train_targets, minlength=len(self.outputs))  # the fold's training rows only
        return create_loss(train.loss, train.loss_args, LossContext(counts, train.epochs, logit_scale))

    # ---- scores and decisions
    @property
    def metrics(self) -> dict[str, Metric]:
        return METRICS

    def score(self, y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
        return score_all(y, probs)

    def fit_decision(self, y: np.ndarray, probs: np.ndarray, metric: str) -> dict | None:
        return None  # the top class

    def set_decision(self, decision: dict | None) -> None:
        """Multiclass has no decision to set."""

    def fill(self, sub: pd.DataFrame, columns: list[str], probs: np.ndarray, where: str) -> pd.DataFrame:
        """The template's non-id `columns` filled from `probs` (rows in template order)."""
        if set(columns) == set(self.outputs):  # one probability column per class
            for c in columns:
                sub[c] = probs[:, self.outputs.index(c)]
        elif len(columns) == 1:
            sub[columns[0]] = np.asarray(self.outputs, dtype=object)[probs.argmax(1)]
        else:
            raise PodiumError(f"Cannot tell how to fill '{where}': besides the id it has columns {fmt_list(columns)}, "
                              "which are neither one label column nor the classes.")
        return sub

    def default_columns(self) -> list[str]:
        """Submission columns without a template."""
        return [self.data.label_col]


# ------------------------------------------------------------------------------------------- multilabel


class Multilabel(Multiclass):
    """Any set of labels per image: one 0/1 column per label, or one column of labels joined by data.label_sep."""

    kind = "multilabel"

    def __init__(self, data: DataConfig, outputs: list[str]):
        super().__init__(data, outputs)
        self.thresholds = np.full(len(self.outputs), 0.5)  # until fitted on the OOF

    @staticmethod
    def read_labels(frame, data, csv):
        sep, problems = data.label_sep, []
        if isinstance(data.label_col, list):  # one 0/1 column per label
            for c in data.label_col:
                if sep in c:
                    problems.append(_problem("bad-label", f"{csv} column '{c}'", f"the label name holds data.label_sep "
                                             f"{sep!r}: set data.label_sep to a character no label name holds"))
            bits = np.zeros((len(frame), len(data.label_col)), dtype=bool)
            for j, c in enumerate(data.label_col):
                text = frame[c].fillna("").str.strip().str.lower()
                ok = text.isin(["0", "1", "0.0", "1.0", "true", "false"])
                for i in np.flatnonzero(~ok.to_numpy()):
                    problems.append(_problem("bad-label", f"{csv} row {i + 2}", f"column '{c}' holds "
                                             f"{frame[c].iloc[i]!r}: one 0/1 column per label takes 0 or 1"))
                bits[:, j] = text.isin(["1", "1.0", "true"]).to_numpy()
            labels = [tuple(c for c, b in zip(data.label_col, row) if b) for row in bits]
        else:
            labels = [_split(t, sep) for t in frame[data.label_col]]
            if data.classes is not None:
                known = set(data.classes)
                for i, tup in enumerate(labels):
                    bad = [x for x in tup if x not in known]
                    if bad:
                        problems.append(_problem("unknown-label", f"{csv} row {i + 2}", f"label(s) {fmt_list(bad)} "
                                                 f"not in data.classes ({fmt_list(data.classes)})"))
        labels = pd.Series(labels, index=frame.index, dtype=object)
        return labels.map(sep.join), labels, problems

    @staticmethod
    def outputs_of(frame, data):
        if isinstance(data.label_col, list):
            if data.classes is not None and sorted(data.classes) != sorted(data.label_col):
                raise PodiumError(f"data.classes {fmt_list(data.classes)} must list the same labels as the 0/1 columns "
                                  f"of data.label_col ({fmt_list(data.label_col)}), or be left out.")
            return list(data.classes or data.label_col)
        if data.classes is not None:
            return [str(c) for c in data.classes]
        return sorted_names(x for tup in frame["labels"] for x in tup)

    def stratify_key(self, frame):
        """The rarest label (over the whole table) each image holds, '' for none: one class per image for the
        stratified and stratified_group strategies, so rare labels are spread over the folds first."""
        counts = self.counts(self.encode(frame))
        return frame["labels"].map(lambda tup: min(tup, key=lambda x: (counts[x], x)) if tup else "")

    def encode(self, frame):
        return self._hot(frame["labels"])

    def _hot(self, labels) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.outputs)}
        out = np.zeros((len(labels), len(self.outputs)), dtype=np.float32)
        for i, tup in enumerate(labels):
            out[i, [index[x] for x in tup if x in index]] = 1.0
        return out

    def parse(self, text):
        return self._hot([_split(t, self.data.label_sep) for t in text])

    def key(self, targets):
        counts = targets.sum(0)
        rank = np.where(targets > 0, counts[None, :], np.inf)
        return np.where(targets.any(1), rank.argmin(1), targets.shape[1])

    def counts(self, targets):
        return dict(zip(self.outputs, targets.sum(0).astype(int).tolist()))

    def activation(self, logits):
        return logits.sigmoid()

    def build_loss(self, train, train_targets, logit_scale):
        from podium.losses import LossContext, create_loss

        ctx = LossContext(train_targets.sum(0), train.epochs, logit_scale, n_images=len(train_targets))
        return create_loss(train.loss, train.loss_args, ctx)

    @property
    def metrics(self):
        return {name: Metric(lambda y, p, fn=m.fn: fn(y, p, self.thresholds), m.higher_is_better)
                for name, m in MULTILABEL_METRICS.items()}

    def score(self, y, probs):
        return {name: m.fn(y, probs) for name, m in self.metrics.items()}

    def fit_decision(self, y, probs, metric):
        thr = fit_thresholds(y, probs, metric)
        return {"thresholds": dict(zip(self.outputs, thr.tolist()))}

    def set_decision(self, decision):
        self.thresholds = np.array([decision["thresholds"][c] for c in self.outputs]) if decision else \
            np.full(len(self.outputs), 0.5)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        return probs >= self.thresholds[None, :]

    def fill(self, sub, columns, probs, where):
        hot = self.decide(probs)
        if set(columns) == set(self.outputs):  # one 0/1 column per label
            for c in columns:
                sub[c] = hot[:, self.outputs.index(c)].astype(int)
        elif len(columns) == 1:  # one column of delimited labels
            names = np.asarray(self.outputs, dtype=object)
            sub[columns[0]] = [self.data.label_sep.join(names[row]) for row in hot]
        else:
            raise PodiumError(f"Cannot tell how to fill '{where}': besides the id it has columns {fmt_list(columns)}, "
                              f"which are neither the labels ({fmt_list(self.outputs)}) nor one column of "
                              "delimited labels.")
        return sub

    def default_columns(self):
        return list(self.outputs) if isinstance(self.data.label_col, list) else [self.data.label_col]


# -------------------------------------------------------------------------------------------- multitask


class Multitask(Multiclass):
    """One class per task (data.label_col lists the tasks' columns); outputs are named task:class."""

    kind = "multitask"

    def __init__(self, data: DataConfig, outputs: list[str]):
        super().__init__(data, outputs)
        self.tasks = data.label_columns()
        self.classes: dict[str, list[str]] = {t: [o[len(t) + 1:] for o in outputs if o.startswith(t + ":")]
                                              for t in self.tasks}
        self.sizes = [len(self.classes[t]) for t in self.tasks]
        if outputs and sum(self.sizes) != len(outputs):
            raise PodiumError(f"Outputs {fmt_list(outputs)} are not task:class names of the tasks "
                              f"{fmt_list(self.tasks)}.")
        self.combine: Combine | None = None

    @staticmethod
    def read_labels(frame, data, csv):
        sep, problems = data.label_sep, []
        cols = data.label_columns()
        values = pd.DataFrame({c: frame[c].str.strip() for c in cols})
        for c in cols:
            for i in np.flatnonzero(values[c].isna().to_numpy() | (values[c] == "").to_numpy()):
                problems.append(_problem("empty-label", f"{csv} row {i + 2}", f"task column '{c}' is empty; give "
                                         "every image a class for every task"))
            for i in np.flatnonzero(values[c].fillna("").str.contains(sep, regex=False).to_numpy()):
                problems.append(_problem("bad-label", f"{csv} row {i + 2}", f"task column '{c}' holds "
                                         f"{values[c].iloc[i]!r}, which contains data.label_sep {sep!r}: set "
                                         "data.label_sep to a character no class holds"))
        labels = pd.Series([tuple(r) for r in values.fillna("").itertuples(index=False)], index=frame.index,
                           dtype=object)
        return labels.map(sep.join), labels, problems

    @staticmethod
    def outputs_of(frame, data):
        return [f"{t}:{c}" for i, t in enumerate(data.label_columns())
                for c in sorted_names(tup[i] for tup in frame["labels"])]

    def stratify_key(self, frame):
        return frame["label"]  # the combination of the tasks' classes (S1: the 18 classes)

    def encode(self, frame):
        return self._index(frame["labels"])

    def _index(self, labels) -> np.ndarray:
        maps = [{c: i for i, c in enumerate(self.classes[t])} for t in self.tasks]
        return np.array([[m.get(v, -1) for m, v in zip(maps, tup)] for tup in labels], dtype=np.int64).reshape(
            len(labels), len(self.tasks))

    def parse(self, text):
        return self._index([tuple(str(t).split(self.data.label_sep)) for t in text])

    def key(self, targets):
        """The combination's index in mixed radix (task sizes): one class per combination of the tasks' classes."""
        return np.ravel_multi_index(tuple(targets.T), self.sizes)

    def counts(self, targets):
        return {f"{t}:{c}": int((targets[:, j] == i).sum()) for j, t in enumerate(self.tasks)
                for i, c in enumerate(self.classes[t])}

    def slices(self, array):
        """Per task, its columns of an N x sum(sizes) array (logits or probabilities)."""
        bounds = np.cumsum([0, *self.sizes])
        return [array[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def activation(self, logits):
        import torch

        return torch.cat([part.softmax(1) for part in logits.split(self.sizes, dim=1)], dim=1)

    def build_loss(self, train, train_targets, logit_scale):
        from podium.losses import LossContext, MultiTaskLoss, create_loss

        losses = [create_loss(train.loss, train.loss_args,
                              LossContext(np.bincount(train_targets[:, j], minlength=n), train.epochs, logit_scale))
                  for j, n in enumerate(self.sizes)]
        return MultiTaskLoss(losses, self.sizes, train.task_weights or [1.0] * len(self.tasks))

    @property
    def metrics(self):
        out: dict[str, Metric] = {}
        for entry in MULTITASK_METRICS.entries:
            out.update(entry.build(self))
        return out

    def score(self, y, probs):
        return {name: m.fn(y, probs) for name, m in self.metrics.items()}

    def _pred(self, probs) -> np.ndarray:
        return np.stack([part.argmax(1) for part in self.slices(probs)], axis=1)

    def set_decision(self, decision):
        """`decision` unused: the combination comes from data.combine."""

    def submission_classes(self, probs: np.ndarray) -> np.ndarray:
        """The combined class of each row (data.combine over each task's top class)."""
        if self.combine is None:
            if self.data.combine is None:
                raise PodiumError("The submission has one label column but data.combine is not set: give the formula "
                                  "or table that maps the tasks' classes to it (e.g. data.combine='6*mask + 3*gender "
                                  "+ age').")
            self.combine = Combine(self.data.combine, self.classes)
        pred = self._pred(probs)
        return self.combine.apply({t: np.asarray(self.classes[t], dtype=object)[pred[:, j]]
                                   for j, t in enumerate(self.tasks)})

    def fill(self, sub, columns, probs, where):
        if set(columns) == set(self.tasks):  # one column per task
            pred = self._pred(probs)
            for j, t in enumerate(self.tasks):
                sub[t] = np.asarray(self.classes[t], dtype=object)[pred[:, j]]
        elif len(columns) == 1:
            sub[columns[0]] = self.submission_classes(probs)
        else:
            raise PodiumError(f"Cannot tell how to fill '{where}': besides the id it has columns {fmt_list(columns)}, "
                              f"which are neither one label column nor the tasks ({fmt_list(self.tasks)}).")
        return sub

    def default_columns(self):
        return ["label"] if self.data.combine is not None else list(self.tasks)


# ---------------------------------------------------------------------------------------- registries


def _mt_accuracy(task: Multitask) -> dict[str, Metric]:
    return {"accuracy": Metric(lambda y, p: float(np.mean((task._pred(p) == y).all(1))), True)}


def _mt_f1_macro(task: Multitask) -> dict[str, Metric]:
    return {"f1_macro": Metric(lambda y, p: _f1_macro(task.key(y), task.key(task._pred(p))), True)}


def _mt_logloss(task: Multitask) -> dict[str, Metric]:
    return {"logloss": Metric(lambda y, p: float(np.mean([METRICS["logloss"].fn(y[:, j], part)
                                                          for j, part in enumerate(task.slices(p))])), False)}


def _per_task(name: str):
    """The single-label metric `name` on each task's slice alone: one metric `<name>_<task>` per task."""
    def build(task: Multitask) -> dict[str, Metric]:
        return {f"{name}_{t}": Metric(lambda y, p, j=j, m=METRICS[name]: m.fn(y[:, j], task.slices(p)[j]), True)
                for j, t in enumerate(task.tasks)}

    return build


# build: (a Multitask) -> {cv.metric name: Metric}; the <task> entries make one metric per task (accuracy_mask, ...)
MULTITASK_METRICS = Registry("metrics", "cv.metric", [
    Entry("accuracy", "share of images whose every task is right (accuracy of the combined class)", None, _mt_accuracy),
    Entry("f1_macro", "macro-F1 of the combined class (over the combinations in the truth or the predictions)", None,
          _mt_f1_macro),
    Entry("logloss", "mean over tasks of each task's cross-entropy (lower is better)", None, _mt_logloss),
    Entry("accuracy_<task>", "accuracy of one task alone (one metric per column of data.label_col)", None,
          _per_task("accuracy")),
    Entry("f1_macro_<task>", "f1_macro of one task alone", None, _per_task("f1_macro")),
], noun="metric", scope="data.task=multitask")

# build: the task's class, (DataConfig, outputs) -> task; its static read_labels / outputs_of read the training table
TASKS = Registry("tasks", "data.task", [
    Entry("multiclass", "one class per image: softmax over the classes (default)", None, Multiclass),
    Entry("multilabel", "any set of labels per image: one sigmoid per label, per-label thresholds fitted on OOF", None,
          Multilabel),
    Entry("multitask", "one class per task (e.g. mask, gender, age): one backbone, one softmax head per task", None,
          Multitask),
], noun="task")


def task_class(kind: str) -> type[Multiclass]:
    """The class of the task `kind` (data.task) names."""
    return TASKS.get(kind).build


def make_task(data: DataConfig, outputs: list[str]) -> Multiclass:
    """The task data.task names, for a network with these outputs (classes.json)."""
    return task_class(data.task)(data, outputs)


def metric_names(data: DataConfig) -> list[str]:
    """The metrics cv.metric can name for this data (multitask adds accuracy_<task> and f1_macro_<task>)."""
    return list(make_task(data, []).metrics)


def require_multiclass(cfg: Config, what: str) -> None:
    """Refuse a command that only makes sense for one softmax over classes."""
    if cfg.data.task != "multiclass":
        raise PodiumError(f"{what} supports data.task=multiclass runs only; this run is data.task={cfg.data.task}.")


def label_counts(frame: pd.DataFrame, data: DataConfig) -> dict[str, int]:
    """Training images per output (class, label or task:class) of a training table."""
    task = make_task(data, task_class(data.task).outputs_of(frame, data))
    return task.counts(task.encode(frame))


def class_names(labels: pd.Series, declared: list[str] | None) -> list[str]:
    """The declared classes, else the sorted unique labels (numerically when every label is an integer)."""
    if declared:
        return [str(c) for c in declared]
    uniq = sorted({str(x) for x in labels.dropna() if str(x) != ""})
    try:
        return sorted(uniq, key=int)
    except ValueError:
        return uniq

"""`data.combine`: a multi-task run's per-task classes -> the one class a submission wants
(S1: 6*mask + 3*gender + age).

Either an integer formula over the task names, parsed with `ast` and evaluated node by node (never `eval`), or a
CSV table with one column per task and one for the class. `full_table` lists every combination and its class.
"""

from __future__ import annotations

import ast
import operator
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from podium.errors import PodiumError, fmt_list
from podium.io import read_csv

_OPS: dict[type, Callable] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
                              ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}


class Combine:
    """data.combine: the tasks' classes -> one submission class, by an integer formula or a CSV table.

    Formula: + - * // % ** over the task names, integer constants and parentheses (parsed, never eval'ed); the
    tasks' classes must be integers. Table: a CSV with one column per task and one more for the class."""

    def __init__(self, spec: str, classes: dict[str, list[str]]):
        self.spec, self.classes, self.tasks = spec, classes, list(classes)
        self.table: dict[tuple, str] | None = None
        self.tree = None
        if spec.strip().lower().endswith(".csv") or Path(spec).is_file():
            self._read_table(Path(spec))
        else:
            self._parse(spec)

    def _read_table(self, path: Path) -> None:
        frame = read_csv(path, "data.combine")
        missing = [t for t in self.tasks if t not in frame.columns]
        rest = [c for c in frame.columns if c not in self.tasks]
        if missing or len(rest) != 1:
            raise PodiumError(f"data.combine table '{path}' must have one column per task ({fmt_list(self.tasks)}) and "
                              f"one for the class; its columns: {fmt_list(frame.columns)}.")
        self.table = {}
        for i, row in enumerate(frame.itertuples(index=False)):
            values = dict(zip(frame.columns, (str(v).strip() for v in row)))
            key = tuple(values[t] for t in self.tasks)
            if key in self.table and self.table[key] != values[rest[0]]:
                raise PodiumError(f"data.combine table '{path}' row {i + 2}: {dict(zip(self.tasks, key))} is mapped "
                                  f"twice ({self.table[key]!r} and {values[rest[0]]!r}).")
            self.table[key] = values[rest[0]]

    def _parse(self, spec: str) -> None:
        try:
            tree = ast.parse(spec, mode="eval").body
        except SyntaxError:
            raise PodiumError(f"data.combine '{spec}' is neither a formula over the tasks ({fmt_list(self.tasks)}, "
                              "e.g. '6*mask + 3*gender + age') nor the path of a .csv table.") from None
        for node in ast.walk(tree):
            ok = isinstance(node, (ast.BinOp, ast.UnaryOp, ast.USub, ast.UAdd, ast.Load, *_OPS)) or (
                isinstance(node, ast.Constant) and isinstance(node.value, int)) or (
                isinstance(node, ast.Name) and node.id in self.tasks)
            if not ok:
                what = node.id if isinstance(node, ast.Name) else type(node).__name__
                raise PodiumError(f"data.combine '{spec}': '{what}' is not allowed; a formula takes the task names "
                                  f"({fmt_list(self.tasks)}), integers, + - * // % ** and parentheses.")
        for t in self.tasks:
            bad = [c for c in self.classes[t] if not c.lstrip("-").isdigit()]
            if bad:
                raise PodiumError(f"data.combine formula needs integer classes, but task '{t}' has {fmt_list(bad)}: "
                                  "give a CSV table (one column per task + the class) instead.")
        self.tree = tree

    def _eval(self, node, env: dict[str, np.ndarray]):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, env)
            return -value if isinstance(node.op, ast.USub) else value
        return _OPS[type(node.op)](self._eval(node.left, env), self._eval(node.right, env))

    def apply(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """The class (text) of each row, given each task's class (text) per row."""
        if self.tree is not None:
            env = {t: np.asarray(values[t]).astype(np.int64) for t in self.tasks}
            result = np.broadcast_to(self._eval(self.tree, env), len(next(iter(values.values()))))
            return np.asarray([str(int(v)) for v in result], dtype=object)
        keys = list(zip(*(np.asarray(values[t]).astype(str) for t in self.tasks)))
        missing = sorted({k for k in keys if k not in self.table})
        if missing:
            raise PodiumError(f"data.combine table '{self.spec}' has no row for "
                              f"{fmt_list([dict(zip(self.tasks, k)) for k in missing][:5])}: "
                              "add one row per combination of the tasks' classes.")
        return np.asarray([self.table[k] for k in keys], dtype=object)

    def full_table(self) -> pd.DataFrame:
        """Every combination of the tasks' classes and its class (for checks and round trips)."""
        grid = pd.MultiIndex.from_product([self.classes[t] for t in self.tasks], names=self.tasks).to_frame(index=False)
        grid["class"] = self.apply({t: grid[t].to_numpy() for t in self.tasks})
        return grid

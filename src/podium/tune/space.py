"""The search space of `tune.space`: dotted config keys, each a list of choices or a {kind: [lo, hi]} range.

Every key and every value is checked against the config schema (and the registries) before any trial runs, so a
misspelt key or a value the schema refuses is one error naming it, not a crash in trial 17.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from podium.config import Config, TuneConfig, _check_keys, _nest, _set_dotted, from_dict
from podium.errors import PodiumError, short_repr
from podium.tasks.check import check_config

# Keys a trial may not change: the folds and the objective must stay the same for every trial (else the scores are
# not comparable, or validation images leak into training), and where runs go is podium tune's to decide.
FIXED = {
    "name": "each trial's run name is podium tune's (trial-<n>)",
    "output_dir": "trials go under <output_dir>/tune-<study>/",
    "cv": "every trial must be scored on the same persisted folds and metric",
    "tune": "the search cannot search itself",
    "track": "tracking does not change the score",
    "tta": "`podium tune` scores the folds without TTA",
    "posthoc": "post-hoc corrections are fitted after training, on the confirmed winner",
}
DATA_KEYS = ("data.image_size", "data.resize", "data.center_crop", "data.channels")  # the data.* keys a trial may vary
SCALARS = (str, int, float, bool, type(None))  # what Optuna stores as a categorical choice


@dataclass(frozen=True)
class Dimension:
    """One searched key: a categorical (`choices`) or a range (`kind` loguniform | uniform | int, `low`, `high`)."""

    key: str
    kind: str
    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0

    def extremes(self) -> list:
        """The values that must each be valid: every choice, or both ends of the range."""
        if self.kind == "categorical":
            return list(self.choices)
        return [int(self.low), int(self.high)] if self.kind == "int" else [self.low, self.high]


def dimensions(tune: TuneConfig) -> list[Dimension]:
    """tune.space as Dimensions, in the order written (the shape was checked by the schema)."""
    dims = []
    for key, value in tune.space.items():
        if isinstance(value, list):
            dims.append(Dimension(key, "categorical", choices=tuple(value)))
        else:
            kind, (low, high) = next(iter(value.items()))
            dims.append(Dimension(key, kind, low=float(low), high=float(high)))
    return dims


def base_tree(cfg: Config) -> dict:
    """The keys the user set (file + overrides), as the nested dict a trial's values are written into. Keys left
    unset stay unset, so a trial that changes model.name still gets that model's own default data.image_size."""
    return cfg.model_dump(mode="json", exclude_unset=True)


def trial_config(base: dict, values: dict[str, Any], source: str = "config") -> Config:
    """`base` with each dotted key set to its value, validated by the schema and the registries."""
    tree = copy.deepcopy(base)
    for key, value in values.items():
        _set_dotted(tree, key, value)
    return check_config(from_dict(tree, source=source))


def _check_key(key: str) -> None:
    _check_keys(_nest(key, 0), Config)  # unknown: "did you mean ..."
    section = key.split(".", 1)[0]
    if section in FIXED:
        raise PodiumError(f"tune.space.{key}: {section}.* cannot be searched ({FIXED[section]}).")
    if section == "data" and key not in DATA_KEYS:
        raise PodiumError(f"tune.space.{key}: a trial may vary {', '.join(DATA_KEYS)} only; the other data.* keys "
                          "choose the data itself, which every trial must share.")


def check_space(cfg: Config) -> list[Dimension]:
    """Every key of tune.space checked against the schema, and every choice (or both ends of every range) checked in
    the user's config, before any trial runs; returns the Dimensions. Errors name the key and the value."""
    dims = dimensions(cfg.tune)
    if not dims:
        raise PodiumError("tune.space is empty: give at least one key to search, e.g. "
                          "tune: {space: {train.lr: {loguniform: [1.0e-4, 3.0e-3]}}}")
    base = base_tree(cfg)
    for dim in dims:
        _check_key(dim.key)
        for value in dim.extremes():
            if dim.kind == "categorical" and not isinstance(value, SCALARS):
                raise PodiumError(f"tune.space.{dim.key}: choice {short_repr(value)} is a list or mapping; choices are "
                                  "single values (text, numbers, true/false, null)")
            try:
                trial_config(base, {dim.key: value}, source=f"tune.space.{dim.key}={short_repr(value)}")
            except PodiumError as exc:
                raise PodiumError(f"tune.space.{dim.key}: the value {short_repr(value)} is refused:\n{exc}") from None
    bad = [k for k in cfg.tune.folds if k >= cfg.cv.n_folds]
    if bad:
        raise PodiumError(f"tune.folds {bad} are not folds of cv.n_folds={cfg.cv.n_folds} (0 to {cfg.cv.n_folds - 1}).")
    return dims


def suggest(trial, dims: list[Dimension]) -> dict[str, Any]:
    """Each dimension's value for this Optuna trial (a retried trial gets its first try's values back)."""
    values = {}
    for dim in dims:
        if dim.kind == "categorical":
            values[dim.key] = trial.suggest_categorical(dim.key, list(dim.choices))
        elif dim.kind == "int":
            values[dim.key] = trial.suggest_int(dim.key, int(dim.low), int(dim.high))
        else:
            values[dim.key] = trial.suggest_float(dim.key, dim.low, dim.high, log=dim.kind == "loguniform")
    return values

"""One record shape for every registry: named `Entry`s (name, description, params, build) in a `Registry`.

A registry holds what one config key chooses from (train.loss, model.head, cv.strategy, ...). Each leaf module
defines its registries as one literal list of entries, so one screen shows every choice: nothing is registered
into a registry from elsewhere, at import or later, and a name given twice is refused when the module loads.
`podium list` prints them (`title`, `lines`), and `podium.tasks.check_config` checks a config's names and
parameters against them (`get`, `params`), which the config schema cannot do: it sits below the leaves.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from pydantic import BaseModel, ConfigDict, ValidationError

from podium.errors import PodiumError, short_repr, short_text


class Params(BaseModel):
    """Base of an entry's params model: unknown parameters refused (with the closest named), floats finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True)
class Entry:
    name: str  # what the config key takes
    description: str  # one line: what it does, when to pick it
    params: type[BaseModel] | None = None  # its parameters, each with a default and a comment; None: it has none
    build: Callable | None = None  # what the name makes (its registry says how it is called); None: nothing to make


@dataclass(frozen=True)
class Row:
    """One entry as `podium list` shows it."""

    name: str
    description: str
    params: dict[str, Any]  # parameter -> default, in the params model's order ({} without parameters)


REQUIRED = "<required>"  # what a listing shows for a parameter without a default


def defaults(params: type[BaseModel] | None) -> dict[str, Any]:
    """Each parameter of a params model with its default."""
    if params is None:
        return {}
    return {k: REQUIRED if f.is_required() else f.get_default(call_default_factory=True)
            for k, f in params.model_fields.items()}


class Registry:
    """The entries one config key (`key`) chooses from, in the order given.

    name: the listing that shows it (`podium list NAME`; registries may share one, e.g. the single- and multi-label
    losses); noun: one entry in messages ("unknown loss 'x'"); scope: when this registry applies (e.g.
    "data.task=multilabel"); params_key: where an entry's parameters are set (train.loss_args); note: line(s)
    listed after the entries.
    """

    def __init__(self, name: str, key: str, entries: Iterable[Entry], *, noun: str, scope: str = "",
                 params_key: str = "", note: str = ""):
        self.name, self.key, self.noun, self.scope, self.params_key, self.note = (
            name, key, noun, scope, params_key, note)
        self.entries: tuple[Entry, ...] = tuple(entries)
        seen: set[str] = set()
        for entry in self.entries:
            if not isinstance(entry, Entry):
                raise TypeError(f"registry {name} ({key}): {entry!r} is not an Entry")
            if entry.name in seen:  # timm warns and overwrites; a literal list has no reason to say a name twice
                raise ValueError(f"registry {name} ({key}): the name '{entry.name}' is registered twice")
            seen.add(entry.name)

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {self.key!r}, {self.names()})"

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: object) -> bool:
        return any(e.name == name for e in self.entries)

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def builds(self) -> dict[str, Callable | None]:
        """name -> what it builds, for code that looks names up many times (a metric table)."""
        return {e.name: e.build for e in self.entries}

    def unknown(self, name: object) -> str:
        """The message for a name this registry lacks: the key, the closest name, every name, where to look."""
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return (f"{self.key}: unknown {self.noun} '{short_text(name, 100)}'.{hint} Known: {', '.join(self.names())} "
                f"(`podium list {self.name}`)")

    def get(self, name: str) -> Entry:
        """The entry named `name`, or a PodiumError naming the config key, the closest name and every name."""
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise PodiumError(self.unknown(name))

    def params(self, name: str, values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        """`values` checked against entry `name`'s parameters, every default filled in (JSON types); a PodiumError
        names each bad key as `prefix` + key (prefix: where they are set, e.g. 'train.loss_args.')."""
        model = self.get(name).params
        if model is None:
            if not values:
                return {}
            key = next(iter(values))
            have = [e.name for e in self.entries if e.params is not None and key in e.params.model_fields]
            where = f": it applies to {self.key}={'|'.join(have)}" if have else ""
            raise PodiumError(f"{prefix}{key}: {self.noun} '{name}' has no parameters{where} "
                              f"(`podium list {self.name}`)")
        try:
            return model.model_validate(values).model_dump(mode="json")
        except ValidationError as exc:
            valid = ", ".join(model.model_fields) or "none"
            problems = []
            for err in exc.errors():
                key = ".".join(str(p) for p in err["loc"][:1])
                if err["type"] == "extra_forbidden":
                    close = difflib.get_close_matches(key, list(model.model_fields), n=1)
                    hint = f" Did you mean '{close[0]}'?" if close else ""
                    problems.append(f"{prefix}{key}: {self.noun} '{name}' has no parameter '{short_text(key, 100)}'."
                                    f"{hint} Its parameters: {valid} (`podium list {self.name}`)")
                else:
                    message = err["msg"].removeprefix("Value error, ")  # a validator's own message
                    problems.append(f"{prefix}{key}: {message} (got {short_repr(err.get('input'))})")
            raise PodiumError("; ".join(dict.fromkeys(problems))) from None

    # ------------------------------------------------------------------------------------------ listing

    def describe(self) -> list[Row]:
        """Each entry with its description and its parameters' defaults."""
        return [Row(e.name, e.description, defaults(e.params)) for e in self.entries]

    def title(self) -> str:
        """'train.loss (data.task=multilabel)': the key that chooses, and when."""
        return f"{self.key} ({self.scope})" if self.scope else self.key

    def lines(self, width: int | None = None) -> list[str]:
        """The listing: one line per entry (name padded to `width`, then its description), a line of parameters
        with their defaults under an entry that has some, and the note."""
        width = width or max((len(n) for n in self.names()), default=0) + 2
        out = []
        for row in self.describe():
            out.append(f"{row.name:<{width}} {row.description}")
            if row.params:
                shown = ", ".join(f"{k}={v!r}" if v is not REQUIRED else f"{k}={v}" for k, v in row.params.items())
                out.append(f"{'':<{width}} {self.params_key + ': ' if self.params_key else ''}{shown}")
        return out + self.note.splitlines()

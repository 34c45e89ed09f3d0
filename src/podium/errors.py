"""One exception type for every problem a user can fix: the CLI prints it and exits with code 2."""

from __future__ import annotations

from dataclasses import dataclass

MAX_MESSAGE = 4000  # characters: a longer message keeps its head and tail, with a note of what was cut
_TAIL = 800  # characters kept from the end of a cut message (the fix is often said last)


def bounded(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` if it is at most `limit` characters, else its head and tail around a note saying how much was cut."""
    if len(text) <= limit:
        return text
    tail = min(_TAIL, limit // 4)
    cut = len(text) - (limit - tail)
    return f"{text[:limit - tail]}\n[... {cut:,} characters cut ...]\n{text[-tail:]}"


def short_repr(value, limit: int = 200) -> str:
    """repr(value), cut to `limit` characters with '...' (a 10 MB value in a message helps no one)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}... ({len(text):,} characters)"


def short_text(value, limit: int = 200) -> str:
    """str(value) for quoting inside a message: control characters escaped, cut to `limit` characters with '...'."""
    text = str(value)
    cut = f"{text[:limit - 3]}..." if len(text) > limit else text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in cut)


class PodiumError(Exception):
    """A problem with the user's input (config, data, run folder), with a message saying how to fix it.

    The message is bounded (MAX_MESSAGE characters, head and tail kept): a value of megabytes quoted in it
    must not flood the terminal."""

    exit_code = 2

    def __init__(self, message: object = "", *args: object):
        super().__init__(bounded(str(message)), *args)


def fmt_list(items, limit: int = 10) -> str:
    """'a, b, c (+7 more)': a short, readable rendering of a possibly long list."""
    items = [str(i) for i in items]
    head = ", ".join(items[:limit])
    return head + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


@dataclass
class Problem:
    kind: str  # short machine-readable kind, e.g. 'missing-file'
    where: str  # the file, CSV row or column it is about
    message: str  # what is wrong and how to fix it

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"

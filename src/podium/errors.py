"""One exception type for every problem a user can fix: the CLI prints it and exits with code 2."""

from __future__ import annotations


class PodiumError(Exception):
    """A problem with the user's input (config, data, run folder), with a message saying how to fix it."""

    exit_code = 2


def fmt_list(items, limit: int = 10) -> str:
    """'a, b, c (+7 more)': a short, readable rendering of a possibly long list."""
    items = [str(i) for i in items]
    head = ", ".join(items[:limit])
    return head + (f" (+{len(items) - limit} more)" if len(items) > limit else "")

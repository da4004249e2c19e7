"""Labelled counters: the one place a node counts what it sends, receives and drops."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable


class Counters:
    """Monotonic counters keyed by ``(name, label)``, e.g. ``("rejects", "replay")``.

    Labels come only from our own vocabulary (registered message kinds, reject reasons),
    never from peer-supplied strings, so the number of keys stays bounded.
    """

    __slots__ = ("_on_change", "_values")

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._values: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._on_change = on_change  # told of every add (the node wakes whoever waits on it)

    def add(self, name: str, label: str = "", amount: int = 1) -> None:
        self._values[(name, label)] += amount
        if self._on_change is not None:
            self._on_change()

    def get(self, name: str, label: str = "") -> int:
        return self._values.get((name, label), 0)

    def total(self, name: str) -> int:
        return sum(v for (n, _), v in self._values.items() if n == name)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{name: {label: value}}``, sorted, ready for JSON."""
        out: dict[str, dict[str, int]] = {}
        for (name, label), value in sorted(self._values.items()):
            out.setdefault(name, {})[label] = value
        return out

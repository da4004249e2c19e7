"""Labelled counters: the one place a node counts what it sends, receives and drops."""

from __future__ import annotations

from collections import defaultdict


class Counters:
    """Monotonic counters keyed by ``(name, label)``, e.g. ``("rejects", "replay")``.

    Labels come only from our own vocabulary (registered message kinds, reject reasons),
    never from peer-supplied strings, so the number of keys stays bounded.
    """

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: defaultdict[tuple[str, str], int] = defaultdict(int)

    def add(self, name: str, label: str = "", amount: int = 1) -> None:
        self._values[(name, label)] += amount

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

"""Waiting on a node's state: ``edgeswarm wait`` and every other "block until" of the control API.

A script, test or SDK call that needs "until a peer is in my view" or "until 3 shuffles
succeeded" asks the daemon once and blocks; it never polls the control socket with sleeps.
Inside the daemon, waiters sleep until the node changes (``Ticks.touch``: every counter the
node adds, so every message in or out, every shuffle, click and round), then check together
at the next tick of the node's clock against one shared status snapshot; what changes
without a counter (a connection dropped, a gossip mesh grown) is caught by a check once a
second. A thousand idle waiters cost a thousand cheap checks a second, not a thousand status
snapshots ten times a second. ``unmet`` is the pure part: which conditions of a ``Wait`` a
status does not meet yet, in words (what a timed-out wait reports).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

import trio

if TYPE_CHECKING:
    from edgeswarm.node.control.requests import Wait

T = TypeVar("T")

TICK = 0.1
"""Seconds between checks of what waiters wait for, at most (on the node's clock)."""

IDLE = 1.0
"""Seconds a waiter sleeps without a change before it checks anyway."""


class Ticks:
    """Shared ticks: waiters wake on a change (``touch``), or after ``idle`` seconds without
    one, and check together at the next multiple of ``every`` seconds against one snapshot a
    tick (``snapshot``), so a thousand waits cost little more than one."""

    def __init__(self, every: float = TICK, idle: float = IDLE) -> None:
        self.every = every
        self.idle = idle
        self._tick = -1
        self._memo: dict[str, object] = {}
        self._changed: trio.Event | None = None  # made only while someone waits

    def touch(self) -> None:
        """Something a waiter may wait for has changed: wake them (cheap when none waits)."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def snapshot(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()``, computed at most once per tick for ``key``."""
        tick = math.floor(trio.current_time() / self.every)
        if tick != self._tick:
            self._tick, self._memo = tick, {}
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]  # type: ignore[return-value]

    async def until(self, check: Callable[[], T | None]) -> T:
        """Return the first value of ``check()`` that is not None, checked after each change
        (at the next tick) and at least every ``idle`` seconds.

        Bounded by the caller's cancel scope (``with trio.move_on_after(...)``).
        """
        while True:
            value = check()
            if value is not None:
                return value
            if self._changed is None:
                self._changed = trio.Event()
            with trio.move_on_after(self.idle) as idle:
                await self._changed.wait()
            if not idle.cancelled_caught:  # woken by a change: check with the others at the next tick
                await trio.sleep_until((math.floor(trio.current_time() / self.every) + 1) * self.every)


def counter_value(path: str, counters: Mapping[str, Mapping[str, int]], transport: Mapping[str, int]) -> int:
    """The value of a counter named ``group.label`` as ``status`` shows it.

    ``group`` alone sums its labels; ``transport.<name>`` reads the transport's counters.
    """
    group, _, label = path.partition(".")
    if group == "transport":
        return transport.get(label, 0)
    values = counters.get(group, {})
    return values.get(label, 0) if label else sum(values.values())


def unmet(
    request: Wait,
    *,
    peers: set[str],
    view: set[str],
    heard_from: int,
    counters: Mapping[str, Mapping[str, int]],
    transport: Mapping[str, int],
    gossip: Mapping[str, int],
) -> list[str]:
    """What ``request`` waits for that does not hold yet, one phrase per condition."""
    missing = []
    if request.peer is not None and request.peer not in peers:
        missing.append(f"{request.peer} not connected")
    if len(peers) < request.peers:
        missing.append(f"{len(peers)} peers connected (want {request.peers})")
    if heard_from < request.heard_from:
        missing.append(f"heard from {heard_from} (want {request.heard_from})")
    missing += [f"{p} neither in the view nor connected" for p in request.known if p not in view | peers]
    missing += [f"{p} not in the view" for p in request.in_view if p not in view]
    missing += [f"{p} still in the view" for p in request.not_in_view if p in view]
    missing += [f"{p} still connected" for p in request.disconnected if p in peers]
    for path, least in request.counters.items():
        value = counter_value(path, counters, transport)
        if value < least:
            missing.append(f"{path} = {value} (want {least})")
    if request.gossip_peers:
        missing += [
            f"gossip on {topic} reaches {n} peers (want {request.gossip_peers})"
            for topic, n in gossip.items()
            if n < request.gossip_peers
        ]
    return missing

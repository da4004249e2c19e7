"""Everything a simulation needs to give the same result for the same seed.

Randomness is split into named streams derived from the scenario seed, so one component's
draws never shift another's. Trio reverses its run batch at random (to shake out ordering
bugs); for a reproducible run that choice is seeded too. And trio wakes timers that expire
at the same instant in the order of their cancel scopes' memory addresses (``id``), which
differ from run to run: in virtual time many timers expire together, so the simulator has
them wake in the order they were set instead (``seed_trio_scheduler``).
"""

from __future__ import annotations

import hashlib
import itertools
import random
from heapq import heappush

VIRTUAL_EPOCH = 1_767_225_600.0
"""2026-01-01T00:00:00Z: the wall-clock time at virtual second 0 of every simulation."""


def derive_seed(seed: int, *parts: object) -> int:
    """A 64-bit seed for the stream named by ``parts`` (independent of PYTHONHASHSEED)."""
    text = "/".join([str(seed), *map(str, parts)]).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def derive_rng(seed: int, *parts: object) -> random.Random:
    return random.Random(derive_seed(seed, *parts))


def derive_bytes(seed: int, *parts: object, size: int = 32) -> bytes:
    text = "/".join([str(seed), *map(str, parts)]).encode()
    return hashlib.blake2b(text, digest_size=size).digest()


def seed_trio_scheduler(seed: int) -> None:
    """Make trio's scheduling order reproducible for the next ``trio.run``.

    Uses trio's internal scheduler RNG (``trio._core._run._r``); ``tests/test_determinism``
    fails loudly if a trio release moves it.
    """
    from trio._core import _run

    rng = getattr(_run, "_r", None)
    if not isinstance(rng, random.Random):
        # a missing trio internal, not a caller's wrong type
        raise RuntimeError("this trio release has no seedable scheduler RNG (trio._core._run._r)")  # noqa: TRY004
    rng.seed(derive_seed(seed, "trio-scheduler"))
    # libraries that draw from the global RNG (Flower samples clients with random.sample)
    random.seed(derive_seed(seed, "global-random"))
    _order_timer_ties(_run)


def _order_timer_ties(run_module) -> None:
    """Break ties between equal deadlines by the order they were set, not by ``id``.

    trio keeps ``(deadline, id(cancel_scope), cancel_scope)`` in a heap: two tasks sleeping
    until the same virtual instant woke in an order that moved with memory addresses, and
    with it which of them drew first from a shared RNG (the virtual network's latencies).
    """
    deadlines = getattr(run_module, "Deadlines", None)
    if deadlines is None or not hasattr(deadlines, "add"):
        raise RuntimeError("this trio release has no Deadlines heap to order (trio._core._run.Deadlines)")
    order = itertools.count()

    def add(self, deadline: float, cancel_scope) -> None:
        heappush(self._heap, (deadline, next(order), cancel_scope))
        self._active += 1

    deadlines.add = add

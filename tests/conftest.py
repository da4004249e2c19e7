"""Shared test helpers: seeded identities and a small virtual swarm harness."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from edgeswarm.node.identity import Identity

REPO = Path(__file__).resolve().parent.parent


def identity(n: int) -> Identity:
    """The n-th deterministic test identity."""
    return Identity.from_seed(random.Random(n).randbytes(32))


@pytest.fixture
def repo() -> Path:
    return REPO


def run_virtual(async_fn, *args):
    """Run ``async_fn`` under trio with a virtual clock starting at 0 (autojump)."""
    import trio
    import trio.testing

    return trio.run(async_fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))

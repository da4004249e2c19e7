"""Shared test helpers: seeded identities and a small virtual swarm harness."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from edgeswarm.node.identity import Identity

REPO = Path(__file__).resolve().parent.parent

try:  # property tests judge inputs, never how fast this machine generates or checks them
    from hypothesis import HealthCheck, settings

    settings.register_profile("any-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("any-machine")
except ImportError:  # a core-only venv without the test extras: those tests are skipped
    pass


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


@pytest.fixture
def small_fl():
    """Run the shipped fedpub scenario shrunk to 3 rounds over ``clients`` (default 4) clients.

    Keyword arguments replace fields of its ``[fl]`` table; returns the report.
    """
    import msgspec

    from edgeswarm.sim.runner import run_scenario
    from edgeswarm.sim.scenario import load_scenario

    def run(**fl):
        loaded = load_scenario(REPO / "configs/sim/fedpub.toml")
        workload = msgspec.structs.replace(loaded.scenario.fl, rounds=3, **{"clients": 4, **fl})
        scenario = msgspec.structs.replace(loaded.scenario, nodes=workload.clients + 1, fl=workload)
        return run_scenario(msgspec.structs.replace(loaded, scenario=scenario), out_dir=None)

    return run


FAST = """
[membership]
shuffle_interval = 1.0
request_timeout = 3.0
[presence]
interval = 1.0
[store]
persist_interval = 1.0
[network]
eclipse_protection = false
"""


FAILURE_BOUND = 120.0
"""Seconds a wait in a real-network test may take before the test fails: only a hang gets
there, so it is far above what the slowest machine needs (the wait ends at the event)."""


async def until(check, *, limit: float = FAILURE_BOUND):
    """Wait, in a trio test on the real clock, until ``check()`` is truthy; return it.

    The node's own waiting (``Ticks``, as ``edgeswarm wait`` does): checked once per tick of
    the trio clock, bounded by ``limit`` seconds that only a hang reaches.
    """
    import trio

    from edgeswarm.node.control.waits import Ticks

    with trio.fail_after(limit):
        return await Ticks().until(lambda: check() or None)


@pytest.fixture
def group(tmp_path):
    """Real daemons with fast timers under ``tmp_path``; afterwards none runs and no log has a traceback."""
    from edgeswarm.sim.processes import DaemonGroup

    config = tmp_path / "fast.toml"
    config.write_text(FAST)
    with DaemonGroup(tmp_path / "swarm", extra_args=["--config", str(config)]) as g:
        yield g
    for daemon in g.daemons:
        log = daemon.log()
        assert "Traceback" not in log, log
    assert all(not d.running for d in g.daemons)

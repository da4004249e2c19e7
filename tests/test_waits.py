"""Waiting on a node's state (``edgeswarm wait``): the conditions, and the shared ticks, on virtual time."""

import trio
import trio.testing

from edgeswarm.node.control.requests import BadRequest, Wait, decode_request
from edgeswarm.node.control.waits import Ticks, counter_value, unmet

COUNTERS = {"membership": {"shuffle_ok": 3, "shuffle_failed": 1}, "msgs_in": {"presence.announce": 7}}
TRANSPORT = {"offences": 2}


def state(**changes):
    now = {
        "peers": {"a", "b"},
        "view": {"b", "c"},
        "heard_from": 2,
        "counters": COUNTERS,
        "transport": TRANSPORT,
        "gossip": {"presence": 2, "ranking": 1},
    }
    return {**now, **changes}


def test_counters_are_named_as_status_shows_them():
    assert counter_value("membership.shuffle_ok", COUNTERS, TRANSPORT) == 3
    assert counter_value("membership", COUNTERS, TRANSPORT) == 4  # a group alone: its total
    assert counter_value("msgs_in.presence.announce", COUNTERS, TRANSPORT) == 7  # labels may hold dots
    assert counter_value("transport.offences", COUNTERS, TRANSPORT) == 2
    assert counter_value("nothing.here", COUNTERS, TRANSPORT) == 0


def test_every_condition_met_leaves_nothing_unmet():
    request = Wait(
        peer="a",
        peers=2,
        heard_from=2,
        known=["a", "c"],
        in_view=["c"],
        not_in_view=["a"],
        disconnected=["c"],
        counters={"membership.shuffle_ok": 3, "transport.offences": 1},
        gossip_peers=1,
    )
    assert unmet(request, **state()) == []


def test_each_unmet_condition_is_named():
    request = Wait(
        peer="z",
        peers=3,
        heard_from=5,
        known=["z"],
        in_view=["a"],
        not_in_view=["b"],
        disconnected=["a"],
        counters={"membership.shuffle_ok": 4},
        gossip_peers=2,
    )
    assert unmet(request, **state()) == [
        "z not connected",
        "2 peers connected (want 3)",
        "heard from 2 (want 5)",
        "z neither in the view nor connected",
        "a not in the view",
        "b still in the view",
        "a still connected",
        "membership.shuffle_ok = 3 (want 4)",
        "gossip on ranking reaches 1 peers (want 2)",
    ]


def test_a_wait_request_is_checked_on_decode():
    assert decode_request(b'{"cmd": "wait", "counters": {"msgs_in.fl.announce": 1}}').counters == {
        "msgs_in.fl.announce": 1
    }
    for bad in (
        b'{"cmd": "wait", "counters": {"Not A Counter!": 1}}',
        b'{"cmd": "wait", "counters": {"a.b": -1}}',
        b'{"cmd": "wait", "in_view": ' + b'["x"]' * 1 + b', "timeout": 0}',
    ):
        try:
            decode_request(bad)
        except BadRequest:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_waiters_wake_on_changes_and_share_one_snapshot_a_tick():
    ticks = Ticks(every=0.1, idle=1.0)
    state = {"x": 0}
    snapshots, woke = [], {}

    def snapshot():
        snapshots.append(trio.current_time())
        return dict(state)

    async def waiter(name, least):
        await ticks.until(lambda: ticks.snapshot("state", snapshot)["x"] >= least or None)
        woke[name] = round(trio.current_time(), 6)

    async def changes():
        for at in (0.25, 0.52, 0.77):
            await trio.sleep_until(at)
            state["x"] += 1
            ticks.touch()

    async def main():
        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(waiter, i, 1 if i % 2 else 3)
            nursery.start_soon(changes)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    # each change wakes them at the next tick, where they all share one snapshot
    assert set(woke.values()) == {0.3, 0.8}
    assert [round(t, 6) for t in snapshots] == [0.0, 0.3, 0.6, 0.8]


def test_a_change_no_counter_announces_is_seen_within_the_idle_check():
    ticks = Ticks(every=0.1, idle=1.0)
    state = {"connected": True}
    checks = []

    def check():
        checks.append(round(trio.current_time(), 6))
        return None if state["connected"] else trio.current_time()

    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticks.until, check)
            await trio.sleep(2.35)
            state["connected"] = False  # a connection dropped: no touch

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert checks == [0.0, 1.0, 2.0, 3.0]  # once a second while nothing changes, however many wait

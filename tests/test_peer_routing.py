"""A peer that moved (a laptop on another network, a phone with a new carrier address) is
found where it is now: its signed presence announcements carry its current addresses."""

import pytest

from edgeswarm.node.control import ControlError


def test_a_peer_that_moved_is_reached_at_its_new_address_just_after_its_old_one_failed(group):
    """b restarts with the same identity on a new port. a's dial of the old address has just
    failed, and py-libp2p would refuse to dial b again for 60 s; b's announcement, gossiped
    by c, replaces what a knew, and a reaches b at once."""
    c = group.spawn("c")
    c_addr = c.status()["addresses"][0]
    a = group.spawn("a", bootstrap=[c_addr])
    b = group.spawn("b", bootstrap=[c_addr])
    b_id = b.status()["peer_id"]
    old = b.status()["addresses"]
    a.wait(heard_from=2)
    assert a.request({"cmd": "ping", "peer": b_id, "bytes": 64, "timeout": 30})["intact"]

    b.stop()
    with pytest.raises(ControlError):
        a.request({"cmd": "ping", "peer": b_id, "bytes": 64, "timeout": 30})  # gone from there
    b = group.restart(b)  # a new free port, the same key and store
    assert b.status()["addresses"] != old
    replaced = a.status()["transport"].get("addrs_replaced", 0)
    a.wait(counters={"transport.addrs_replaced": replaced + 1})  # its announcement reached a
    assert a.request({"cmd": "ping", "peer": b_id, "bytes": 64, "timeout": 30})["intact"]

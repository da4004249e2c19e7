"""A peer that moved (a laptop on another network, a phone with a new carrier address) is
found where it is now: its signed presence announcements carry its current addresses."""

import pytest

from edgeswarm.node.control.client import ControlError


def test_a_peer_that_moved_is_reached_at_its_new_address_just_after_its_old_one_failed(group):
    """b restarts with the same identity on a new port. a's dial of the old address has just
    failed (py-libp2p alone would refuse to dial b again for 60 s); b's signed announcements,
    gossiped by c, replace what a knew, and the two are connected again and a reaches b."""
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
    a.wait(peer=b_id)  # a dialled it where it is now, or it dialled a from its stored view
    assert a.request({"cmd": "ping", "peer": b_id, "bytes": 64, "timeout": 30})["intact"]

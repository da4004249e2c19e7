"""Cyclon transitions, checked against hand-worked views."""

import random

import pytest

from edgeswarm.protocols.membership.cyclon import Cyclon, CyclonParams
from edgeswarm.protocols.membership.messages import Descriptor

from conftest import identity

P = [identity(n).peer_id for n in range(40)]


def d(i: int, age: int = 0) -> Descriptor:
    return Descriptor(P[i], (), age)


def cyclon(me: int, view: list[Descriptor], size=4, length=2, seed=0) -> Cyclon:
    c = Cyclon(d(me), CyclonParams(view_size=size, shuffle_length=length), random.Random(seed))
    c.add(view)
    return c


def test_add_skips_self_duplicates_and_overflow():
    c = cyclon(0, [d(0), d(1), d(1), d(2), d(3), d(4), d(5)])
    assert [x.peer for x in c.view()] == [P[1], P[2], P[3], P[4]]


def test_shuffle_targets_the_oldest_and_sends_self_fresh():
    c = cyclon(0, [d(1, 3), d(2, 7), d(3, 1)], length=2)
    target, entries = c.start_shuffle()
    assert target == d(2, 8)  # the oldest, aged once more
    assert P[2] not in c
    assert entries[0] == d(0, 0)
    assert len(entries) == 2 and entries[1].peer in (P[1], P[3])
    assert {x.peer: x.age for x in c.view()} == {P[1]: 4, P[3]: 2}  # everyone aged by one


def test_reply_fills_free_slots_then_replaces_what_was_sent():
    c = cyclon(0, [d(1, 5), d(2), d(3), d(4)], size=4, length=2, seed=1)
    target, entries = c.start_shuffle()
    assert target.peer == P[1]
    sent = entries[1].peer
    # one free slot (target removed): the first new entry fills it, the second replaces `sent`
    c.on_reply(P[1], (d(10), d(11), d(0)))
    peers = [x.peer for x in c.view()]
    assert P[10] in peers and P[11] in peers and sent not in peers
    assert P[0] not in peers and len(peers) == 4


def test_responder_replies_without_the_requester_and_integrates():
    c = cyclon(5, [d(1), d(2), d(3), d(4)], size=4, length=2, seed=3)
    reply = c.on_request(P[1], (d(1), d(9)))
    assert len(reply) == 2 and all(x.peer != P[1] for x in reply)
    peers = [x.peer for x in c.view()]
    assert len(peers) == 4
    # P[1] was already known; P[9] replaced one of the entries we sent
    assert P[9] in peers and P[1] in peers
    assert sum(x.peer in peers for x in reply) == 1


def test_known_peer_keeps_its_youngest_age():
    c = cyclon(0, [d(1, 6)])
    c.on_request(P[2], (d(1, 2),))
    assert {x.peer: x.age for x in c.view()}[P[1]] == 2
    c.on_request(P[2], (d(1, 9),))
    assert {x.peer: x.age for x in c.view()}[P[1]] == 2


def test_unanswered_target_stays_out():
    c = cyclon(0, [d(1, 2), d(2)])
    target, _ = c.start_shuffle()
    c.on_failure(target.peer)
    assert target.peer not in c and len(c) == 1


def test_empty_view_has_nothing_to_shuffle():
    assert cyclon(0, []).start_shuffle() is None


def test_parameters_are_validated():
    with pytest.raises(ValueError):
        CyclonParams(view_size=4, shuffle_length=5)


def test_a_shuffle_brings_in_at_most_shuffle_length_entries():
    c = Cyclon(d(39), CyclonParams(view_size=20, shuffle_length=8), random.Random(0))
    c.on_request(P[1], tuple(d(i) for i in range(1, 31)))  # the wire allows 64
    assert len(c) == 8
    c.on_reply(P[2], tuple(d(i) for i in range(9, 39)))
    assert len(c) == 16

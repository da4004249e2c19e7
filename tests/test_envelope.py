"""Envelopes: every way a peer's bytes can be wrong is a typed, counted rejection."""

from typing import Annotated

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeswarm.protocols.envelope import (
    MAX_ENVELOPE_BYTES,
    Body,
    Codec,
    Envelope,
    Freshness,
    RegistrationError,
    Rejected,
    RejectReason,
    ReplayWindow,
)

from conftest import identity

NOW = 1_800_000_000.0


class Ping(Body, frozen=True):
    KIND = "test.ping"
    MAX_BYTES = 256
    text: Annotated[str, msgspec.Meta(max_length=100)]
    n: int = 0


class Other(Body, frozen=True):
    KIND = "test.other"
    MAX_BYTES = 64
    x: int


def codec(n: int, clock=lambda: NOW) -> Codec:
    counter = iter(range(10**9))
    c = Codec(identity(n), next_seq=lambda: next(counter), now=clock, freshness=Freshness(60, 10))
    c.register(Ping, Other)
    return c


def reason_of(receiver: Codec, data: bytes) -> RejectReason:
    with pytest.raises(Rejected) as info:
        receiver.open(data)
    return info.value.reason


def test_seal_and_open_round_trip():
    alice, bob = codec(1), codec(2)
    opened = bob.open(alice.seal(Ping("hi", 3)))
    assert opened.body == Ping("hi", 3)
    assert opened.sender == identity(1).peer_id
    assert opened.seq == 0 and opened.ts == NOW


def test_each_rejection_reason():
    alice, bob = codec(1), codec(2)
    good = alice.seal(Ping("hi"))
    env = msgspec.msgpack.decode(good, type=Envelope)

    def resign(**changes):
        fields = {f: getattr(env, f) for f in Envelope.__struct_fields__} | changes
        from edgeswarm.protocols.envelope import _signed_bytes

        sig = identity(1).sign(
            _signed_bytes(fields["kind"], fields["sender"], fields["seq"], fields["ts"], fields["body"])
        )
        return msgspec.msgpack.encode(Envelope(**(fields | {"sig": sig})))

    assert reason_of(bob, b"\xc1garbage") is RejectReason.MALFORMED
    assert reason_of(bob, b"x" * (MAX_ENVELOPE_BYTES + 1)) is RejectReason.OVERSIZE
    assert reason_of(bob, resign(kind="test.nope")) is RejectReason.UNKNOWN_KIND
    big = msgspec.msgpack.encode(Ping("x" * 90))
    assert reason_of(bob, resign(kind="test.other", body=big)) is RejectReason.OVERSIZE
    assert reason_of(bob, resign(ts=NOW - 61)) is RejectReason.STALE
    assert reason_of(bob, resign(ts=NOW + 11)) is RejectReason.STALE
    assert reason_of(bob, resign(ts=float("nan"))) is RejectReason.STALE
    assert (
        reason_of(bob, msgspec.msgpack.encode(Envelope(**{**msgspec.structs.asdict(env), "seq": 9})))
        is RejectReason.BAD_SIGNATURE
    )
    assert reason_of(bob, resign(body=msgspec.msgpack.encode({"text": 5}))) is RejectReason.MALFORMED
    assert reason_of(bob, resign(body=msgspec.msgpack.encode(Ping("x" * 101)))) is RejectReason.MALFORMED
    bob.open(good)
    assert reason_of(bob, good) is RejectReason.REPLAY


def test_expected_type_is_enforced():
    alice, bob = codec(1), codec(2)
    with pytest.raises(Rejected) as info:
        bob.open(alice.seal(Ping("hi")), expect=Other)
    assert info.value.reason is RejectReason.MALFORMED


def test_replay_window_accepts_reordering_once():
    window = ReplayWindow(width=4)
    sender = b"s" * 32
    for seq in (5, 3, 7, 6):
        assert window.check(sender, seq)
        window.record(sender, seq)
    assert not window.check(sender, 5)  # seen
    assert not window.check(sender, 3)  # seen, and now outside the window below 7
    assert window.check(sender, 4)  # within 4 of 7 and unseen
    assert not window.check(sender, 2)  # older than the window
    assert window.check(sender, 100)


def test_replay_window_is_bounded():
    window = ReplayWindow(max_senders=3)
    for n in range(10):
        window.record(bytes([n]) * 32, 1)
    assert len(window._state) == 3


def test_duplicate_kinds_fail_at_registration():
    c = codec(1)
    with pytest.raises(RegistrationError):
        c.register(Ping)

    class Impostor(Body, frozen=True):
        KIND = "test.ping"
        MAX_BYTES = 10

    with pytest.raises(RegistrationError):
        c.register(Impostor)


def test_sealing_an_oversize_body_is_our_error():
    with pytest.raises(ValueError):
        codec(1).seal(Ping("x" * 300))


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=2048),
        st.builds(
            msgspec.msgpack.encode,
            st.recursive(
                st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text() | st.binary(),
                lambda inner: st.lists(inner, max_size=7) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
                max_leaves=20,
            ),
        ),
    )
)
def test_random_bytes_only_ever_raise_rejected(data):
    try:
        codec(2).open(data)
    except Rejected:
        pass


@settings(max_examples=400, deadline=None)
@given(
    text=st.text(max_size=50),
    position=st.integers(min_value=0),
    byte=st.integers(0, 255),
    cut=st.booleans(),
)
def test_mutated_envelopes_are_rejected_or_unchanged(text, position, byte, cut):
    alice, bob = codec(1), codec(2)
    good = bytearray(alice.seal(Ping(text)))
    i = position % len(good)
    if cut:
        mutated = bytes(good[:i])
    else:
        good[i] = byte
        mutated = bytes(good)
    try:
        opened = bob.open(mutated)
    except Rejected:
        return
    assert opened.body == Ping(text) and opened.sender == identity(1).peer_id

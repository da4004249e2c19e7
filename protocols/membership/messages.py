"""Wire messages of the membership (Cyclon shuffle) protocol."""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..envelope import Body

MAX_SHUFFLE_ENTRIES = 64
MAX_ADDRS = 8
MAX_AGE = 1 << 16

PeerIdText = Annotated[str, msgspec.Meta(pattern=r"^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$")]
"""The text of an Ed25519 libp2p PeerID (the only key type edgeswarm issues)."""

Addr = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class Descriptor(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """A pointer to a peer: its id, how to reach it, and how many shuffles old it is."""

    peer: PeerIdText
    addrs: Annotated[tuple[Addr, ...], msgspec.Meta(max_length=MAX_ADDRS)] = ()
    age: Annotated[int, msgspec.Meta(ge=0, le=MAX_AGE)] = 0


class ShuffleRequest(Body, array_like=True, frozen=True):
    """Initiator's sample: itself (age 0) plus up to ``shuffle_length - 1`` view entries."""

    KIND = "membership.shuffle"
    MAX_BYTES = 32 * 1024
    entries: Annotated[tuple[Descriptor, ...], msgspec.Meta(max_length=MAX_SHUFFLE_ENTRIES)]


class ShuffleReply(Body, array_like=True, frozen=True):
    """Responder's sample of its view, sent back in exchange."""

    KIND = "membership.shuffle_reply"
    MAX_BYTES = 32 * 1024
    entries: Annotated[tuple[Descriptor, ...], msgspec.Meta(max_length=MAX_SHUFFLE_ENTRIES)]

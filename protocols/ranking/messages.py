"""Wire messages of the ranking (click-log pull gossip) protocol."""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..envelope import Body
from ..membership.messages import PeerIdText

MAX_ROW_BYTES = 4 * 1024
MAX_ROWS_PER_REPLY = 500
MAX_HOLDINGS = 4096

Term = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
ItemId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class ClickRow(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """One search and its click, as the searching node saw it.

    ``number`` counts that node's queries; ``(node, number)`` names the row everywhere.
    """

    node: PeerIdText
    number: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    terms: Annotated[tuple[Term, ...], msgspec.Meta(min_length=1, max_length=16)]
    seen_before: bool
    shown: Annotated[tuple[ItemId, ...], msgspec.Meta(max_length=20)]
    item: ItemId
    title: Annotated[str, msgspec.Meta(max_length=256)]
    tags: Annotated[tuple[Tag, ...], msgspec.Meta(max_length=16)]


class SignedRow(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """A row's exact bytes and the issuing node's Ed25519 signature over them."""

    row: Annotated[bytes, msgspec.Meta(max_length=MAX_ROW_BYTES)]
    sig: Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]


class Holding(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """The requester holds every row of ``node`` numbered below ``below``."""

    node: PeerIdText
    below: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class PullRequest(Body, array_like=True, frozen=True):
    """Send me rows I lack (at most ``max_rows``).

    Without ``have``: the rows you have not sent me yet, by your progress pointer for me
    (the paper's pull). With ``have`` (a digest of what I hold, as in Scuttlebutt
    anti-entropy): the rows it does not cover, whoever sent them to me.
    """

    KIND = "ranking.pull"
    MAX_BYTES = 384 * 1024
    max_rows: Annotated[int, msgspec.Meta(ge=1, le=MAX_ROWS_PER_REPLY)]
    have: Annotated[tuple[Holding, ...], msgspec.Meta(max_length=MAX_HOLDINGS)] | None = None


class PullReply(Body, array_like=True, frozen=True):
    KIND = "ranking.pull_reply"
    MAX_BYTES = 1024 * 1024  # replies also stop at this many bytes, whatever max_rows says
    rows: Annotated[tuple[SignedRow, ...], msgspec.Meta(max_length=MAX_ROWS_PER_REPLY)]


class PushRows(Body, array_like=True, frozen=True):
    """Rows the sender has not pushed to us yet (push gossip, the alternative to pulling)."""

    KIND = "ranking.push"
    MAX_BYTES = 1024 * 1024
    rows: Annotated[tuple[SignedRow, ...], msgspec.Meta(max_length=MAX_ROWS_PER_REPLY)]


class PushAck(Body, array_like=True, frozen=True):
    KIND = "ranking.push_ack"
    MAX_BYTES = 64
    taken: Annotated[int, msgspec.Meta(ge=0, le=MAX_ROWS_PER_REPLY)]

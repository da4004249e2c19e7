"""Wire types for federated rounds over the swarm.

A host gossips a small signed ``RunAnnounce``; nodes that offer the task ``Join`` by
request. Flower messages then travel as ``Task`` (host -> client) and ``Result``
(client -> host) requests, each acknowledged at once, so no stream stays open while a
client trains. A payload over ``INLINE_BYTES`` is not inlined: the request names a blob
(``protocols.blobs``: SHA-256 and size) that the receiver pulls in chunks.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from edgeswarm.protocols.blobs import BlobRef
from edgeswarm.protocols.envelope import Body

INLINE_BYTES = 256 * 1024
RUN_ID_CHARS = 64
NAME_CHARS = 64

RunId = Annotated[str, msgspec.Meta(min_length=1, max_length=RUN_ID_CHARS, pattern=r"^[A-Za-z0-9_.-]+$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_CHARS)]
Value = Annotated[str, msgspec.Meta(max_length=256)]


class RunAnnounce(Body, array_like=True, frozen=True):
    """A host offers a federated run; signed by the host (the envelope sender)."""

    KIND = "fl.run"
    MAX_BYTES = 4096
    run_id: RunId
    task: Name
    strategy: Name
    rounds: Annotated[int, msgspec.Meta(ge=1, le=100_000)]
    min_clients: Annotated[int, msgspec.Meta(ge=1, le=100_000)]
    reply_timeout: Annotated[float, msgspec.Meta(gt=0, le=86_400)]
    join_until: float  # host clock, seconds since the epoch
    # joiners must match; msgspec copies a mutable default for each instance
    requirements: Annotated[dict[Name, Value], msgspec.Meta(max_length=16)] = {}  # noqa: RUF012


class Join(Body, array_like=True, frozen=True):
    KIND = "fl.join"
    MAX_BYTES = 256
    run_id: RunId
    task: Name


class JoinReply(Body, array_like=True, frozen=True):
    KIND = "fl.join_reply"
    MAX_BYTES = 512
    accepted: bool
    node_id: Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]  # the joiner's Flower node id in this run
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


class FlowerMessage(Body, array_like=True, frozen=True):
    """A serialized Flower message for one run: inline bytes, or a blob to pull."""

    MAX_BYTES = INLINE_BYTES + 1024
    run_id: RunId
    inline: Annotated[bytes, msgspec.Meta(max_length=INLINE_BYTES)] | None = None
    blob: BlobRef | None = None


class Task(FlowerMessage, frozen=True):
    """An instruction from the host to a participant."""

    KIND = "fl.task"


class Result(FlowerMessage, frozen=True):
    """A participant's reply to the host."""

    KIND = "fl.result"


class Ack(Body, array_like=True, frozen=True):
    KIND = "fl.ack"
    MAX_BYTES = 512
    accepted: bool
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


MESSAGES = (RunAnnounce, Join, JoinReply, Task, Result, Ack)

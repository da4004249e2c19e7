"""Flower ``Message`` <-> bytes with Flower's own serde, and the task identity it needs.

Flower stamps new messages from a process-wide ``TaskIdentity`` that only its own runtime
sets; ``ensure_task_identity`` sets it once (we re-stamp every message we send anyway).
"""

from __future__ import annotations

import hashlib
import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

from flwr.app import Message
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as MessageProto
from flwr.supercore.task_identity import TaskIdentity


class WireError(ValueError):
    """Bytes that are not a Flower message of the expected shape."""


def ensure_task_identity() -> None:
    """Let Flower build messages outside its runtime (placeholder ids, overwritten by ``stamp``)."""
    for name in ("run_id", "node_id", "task_id"):
        try:
            getattr(TaskIdentity, name)
        except RuntimeError:
            setattr(TaskIdentity, name, 0)


def flower_id(name: str) -> int:
    """A stable 63-bit Flower id for a name (Flower's run and node ids are sint64 on the wire).

    Flower run ids come from our run ids, node ids from PeerIDs, so host and clients agree on both
    without asking each other.
    """
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1


def stamp(message: Message, *, run_id: int, message_id: str, src_node_id: int) -> None:
    """Set the routing metadata our Grid owns (as Flower's own grids do)."""
    fields = message.metadata.__dict__
    fields["_run_id"] = run_id
    fields["_message_id"] = message_id
    fields["_src_node_id"] = src_node_id


def encode(message: Message) -> bytes:
    return message_to_proto(message).SerializeToString()


def decode(data: bytes) -> Message:
    """Parse a Flower message; any parse failure becomes a WireError."""
    try:
        return message_from_proto(MessageProto.FromString(data))
    except Exception as exc:  # noqa: BLE001 - protobuf and Flower raise assorted types on bad bytes
        raise WireError(f"not a Flower message: {type(exc).__name__}: {exc}") from None

"""What the control socket answers: one typed struct per command, beside ``requests``.

Each request names its reply type (``requests.Status`` is a ``Request[NodeStatus]``), so the
daemon's handlers return these structs, the wire carries them as JSON, and the clients
(``control.client``) hand them back typed: ``Client().status().peers``, never ``["peers"]``.
"""

from __future__ import annotations

import msgspec

from edgeswarm.node.adapters.adapter_store import AdapterRow
from edgeswarm.node.fl.run_records import RoundMetrics, RunRecord
from edgeswarm.protocols.peer_id import PeerId

__all__ = [
    "AdapterList",
    "AdapterRow",
    "AnnouncedRun",
    "Clicked",
    "Delays",
    "FlOverview",
    "ItemsAdded",
    "MergeOutcome",
    "NodeStatus",
    "PresenceReport",
    "RoundMetrics",
    "RoundTrip",
    "RunRecord",
    "RunStarted",
    "SearchHit",
    "Waited",
]


class NodeStatus(msgspec.Struct, frozen=True):
    """What a user (or the simulator) can observe of a running node."""

    peer_id: PeerId
    addresses: list[str]
    peers: list[PeerId]
    view: list[PeerId]
    heard_from: int
    services: list[str]
    counters: dict[str, dict[str, int]]
    transport: dict[str, int]
    gossip: dict[str, int] = {}
    """Per subscribed topic, the peers a publish reaches directly (shown by ``status``)."""
    nat: str = "unknown"
    """AutoNAT's verdict on this node: "public", "private" or "unknown" (the virtual network: unknown)."""
    relays: list[PeerId] = []
    """Relays that hold a reservation for this node (it is reached through them)."""
    relayed: list[PeerId] = []
    """Connected peers reached only through a relay."""
    relay_service: dict[str, int] | None = None
    """As a relay for others (``[network] relay_service``): reservations and circuits held now."""


class RoundTrip(msgspec.Struct, frozen=True):
    """A ping's round trip, and whether the payload came back unchanged."""

    rtt_ms: float
    bytes: int
    intact: bool


class Waited(msgspec.Struct, frozen=True):
    """Every condition of a ``wait`` holds: after how long, and the status that met them."""

    waited_s: float
    peers: int
    heard_from: int
    status: NodeStatus


class Delays(msgspec.Struct, frozen=True):
    """Publish-to-receive delay of presence announcements, in ms (None when none arrived)."""

    count: int
    p50_ms: float | None
    p99_ms: float | None


class PresenceReport(msgspec.Struct, frozen=True):
    """Peers heard from on gossip (with when, on the node's clock) and the delays measured."""

    seen: dict[PeerId, float]
    delays: Delays


class SearchHit(msgspec.Struct, frozen=True):
    item: str
    title: str
    tags: list[str]


class Clicked(msgspec.Struct, frozen=True):
    """The click-log row a click made: its number in this node's log, and the query terms."""

    number: int
    terms: list[str]
    item: str


class ItemsAdded(msgspec.Struct, frozen=True):
    added: int


class RunStarted(msgspec.Struct, frozen=True):
    """A federated run this node now hosts; ``fl wait`` and ``fl status`` know it by ``run_id``."""

    run_id: str


class AnnouncedRun(msgspec.Struct, frozen=True):
    """A run another node announced, which this node may join."""

    run_id: str
    host: PeerId
    task: str
    strategy: str
    rounds: int


class FlOverview(msgspec.Struct, frozen=True):
    """The runs this node hosts or joined, the runs announced to it, and the tasks it offers."""

    runs: list[RunRecord]
    announced: list[AnnouncedRun]
    offers: list[str]


class AdapterList(msgspec.Struct, frozen=True):
    active: str | None
    adapters: list[AdapterRow]


class MergeOutcome(msgspec.Struct, frozen=True):
    """A merge of our adapter with peers' (``peers``, out of ``considered``) and whether it
    became the active one (a merge scoring below the active adapter does not, unless forced)."""

    digest: str
    peers: list[str]
    considered: int
    val_acc: float
    test_acc: float
    own_test_acc: float
    activated: bool
    active: str | None
    active_val_acc: float

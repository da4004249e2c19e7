"""The one seam between protocol logic and I/O.

Services never touch sockets or clocks of a transport: they see this interface. It has two
implementations, libp2p for real deployments and ``sim.virtual_network`` for the simulator,
and the same ``Node`` runs on both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import trio

from .peer_id import PeerId

MAX_FRAME_BYTES = 4 * 1024 * 1024
"""No transport carries a single payload larger than this; bulk data is chunked above it."""

MAX_GOSSIP_BYTES = 64 * 1024
"""Pub/sub carries small announcements only; bulk data moves on request/response."""

SUBSCRIPTION_BUFFER = 256
"""Messages a subscription holds before new ones are dropped (and counted)."""

RequestHandler = Callable[[PeerId, bytes], Awaitable[bytes]]
# asked with the sender and the declared size before a request's body is read: None to read
# it, or the reason it is refused unread
Admission = Callable[[PeerId, int], str | None]


@dataclass(frozen=True, slots=True)
class TopicMessage:
    """One message received on a pub/sub topic.

    ``origin`` is the peer the transport says published it (the envelope inside says who
    signed it; the messenger checks both only for direct requests).
    """

    topic: str
    origin: PeerId
    data: bytes


class NetworkError(Exception):
    """A request or publish could not be completed; the peer may or may not be at fault."""


class PeerUnreachable(NetworkError):
    """No route to the peer: it is offline, unknown, or on the other side of a partition."""


class ProtocolUnsupported(PeerUnreachable):
    """The peer is reachable but does not speak the protocol asked for (a libp2p peer that is
    not an edgeswarm node, or runs without that service). Not a broken connection."""


class RequestTimeout(NetworkError):
    """The peer did not answer before the caller's ``deadline``."""


class RequestRefused(NetworkError):
    """Raised by a request handler to refuse a request; the requester sees it with the reason."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """The caller's bound on network calls inside it (trio's ``fail_after``), as a NetworkError.

    >>> with deadline(5):
    ...     reply = await messenger.request(peer, body, Reply)

    raises ``RequestTimeout`` after 5 s, so callers handle a silent peer like any other
    unreachable one.
    """
    try:
        with trio.fail_after(seconds):
            yield
    except trio.TooSlowError:
        raise RequestTimeout(f"no answer within {seconds:g} s") from None


class LocalProtocolError(Exception):
    """We misused the network (a bug in our own code, never the peer's fault)."""


@dataclass(frozen=True, slots=True)
class Reachability:
    """How peers reach this node: relays holding a reservation for it (a node behind a NAT is
    reached through them), and which connected peers it reaches only through a relay."""

    relays: tuple[PeerId, ...] = ()
    relayed: tuple[PeerId, ...] = ()
    serving: bool = False
    """Whether this node relays for others; then how many peers hold a reservation with it,
    and how many circuits run through it now."""
    reserved_here: int = 0
    circuits_here: int = 0
    nat: str = "unknown"
    """AutoNAT's verdict: "public" (peers dialled it back), "private" or "unknown"."""


class Network(Protocol):
    """What a node needs from a transport: pub/sub, request/response and peers.

    All methods are used from trio tasks of the node that owns the network.
    """

    @property
    def local_peer(self) -> PeerId:
        """This node's PeerID."""
        ...

    def addrs(self) -> list[str]:
        """Addresses other peers can reach us on (multiaddrs on libp2p)."""
        ...

    def add_addrs(self, peer: PeerId, addrs: Sequence[str], *, current: bool = False) -> None:
        """Remember how to reach ``peer`` (learned from gossip or configuration).

        ``current``: the peer's own newest signed list (its presence announcement), which
        replaces what was known: a laptop that moved networks is dialled where it is now,
        at once, even just after its old address failed.
        """
        ...

    def peers(self) -> set[PeerId]:
        """Peers we currently hold a connection to."""
        ...

    def known_peers(self) -> list[tuple[PeerId, list[str]]]:
        """Peers the transport itself found and can dial (e.g. by mDNS), with addresses."""
        ...

    def penalize(self, peer: PeerId, reason: str) -> None:
        """``peer`` misbehaved: disconnect it, and refuse it for a while if it persists."""
        ...

    def reachability(self) -> Reachability:
        """Relay reservations held for us, and the connections that run through a relay."""
        ...

    def supports(self, peer: PeerId, protocol: str) -> bool | None:
        """Whether ``peer`` speaks ``protocol``: known from the protocols it lists (libp2p's
        identify) or from its answer to an earlier request; None while not known.

        Any libp2p peer may be a neighbour (a relay, a bootstrap peer, an IPFS node):
        services ask this before choosing a peer for a protocol it may not speak.
        """
        ...

    async def publish(self, topic: str, data: bytes) -> None:
        """Send ``data`` to every subscriber of ``topic`` that the overlay reaches."""
        ...

    def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[TopicMessage]:
        """Receive messages published on ``topic`` (bounded; overflow is counted in stats)."""
        ...

    def gossip_peers(self) -> dict[str, int]:
        """For each subscribed topic, how many peers a publish reaches directly now.

        On libp2p this is the topic's GossipSub mesh, which fills only at heartbeats after a
        connection: a publish made before then reaches nobody.
        """
        ...

    async def request(
        self,
        peer: PeerId,
        protocol: str,
        data: bytes | Callable[[], bytes],
        *,
        max_response_bytes: int = MAX_FRAME_BYTES,
        max_request_bytes: int | None = None,
    ) -> bytes:
        """Send one request and wait for its response (at most ``max_response_bytes``).

        ``data`` may be a callable that makes the request when it can leave: a signed envelope
        is sealed then, not before a slow dial, which would let the sender's later messages
        overtake it past the receiver's replay window. ``max_request_bytes`` bounds what it
        makes (a transport may route a large transfer differently).

        Waits as long as the caller's cancel scope lets it (``with deadline(s): ...``); a
        request cancelled before its answer is counted in ``stats()["requests_abandoned"]``.

        Raises
        ------
        PeerUnreachable, RequestRefused, NetworkError
        """
        ...

    def serve(
        self,
        protocol: str,
        handler: RequestHandler,
        *,
        max_request_bytes: int = MAX_FRAME_BYTES,
        admit: Admission | None = None,
    ) -> None:
        """Answer requests on ``protocol`` with ``handler`` (one handler per protocol).

        Requests larger than ``max_request_bytes`` are refused before they are read whole,
        and the sender is penalized. ``admit`` sees the sender and the declared size first:
        a reason from it refuses the request unread (counted ``requests_refused_unread``),
        so a service with no room now spends nothing on the body.
        """
        ...

    def stats(self) -> dict[str, int]:
        """Transport counters, e.g. dropped messages by cause."""
        ...

"""An in-memory ``Network`` for the simulator: latency, bandwidth, loss, partitions, churn.

All endpoints share one ``VirtualNetwork``. A message of B bytes leaves its sender's uplink
after the messages queued before it, taking B / uplink seconds, then arrives after a sampled
one-way latency, unless it is lost or a partition separates the two peers. Deliveries wait
in one time-ordered heap drained by a single dispatcher task, so a message costs a heap
entry, not a task. Time is trio's clock: under ``trio.testing.MockClock(autojump_threshold=0)``
a run takes virtual seconds. All randomness comes from the seeded ``rng``.

Model limits, on purpose: downlinks are not congested; pub/sub reaches every reachable
subscriber after ``ceil(log_D n)`` sampled hops, as a GossipSub mesh of degree D would.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from edgeswarm.protocols.network import (
    MAX_FRAME_BYTES,
    MAX_GOSSIP_BYTES,
    SUBSCRIPTION_BUFFER,
    Admission,
    LocalProtocolError,
    NetworkError,
    PeerUnreachable,
    ProtocolUnsupported,
    Reachability,
    RequestHandler,
    RequestRefused,
    TopicMessage,
)
from edgeswarm.protocols.peer_id import PeerId
from edgeswarm.protocols.peer_policy import PeerPolicy
from edgeswarm.sim.nat_model import DIRECT, NatModel

MAX_CONCURRENT_HANDLERS = 64
"""Requests an endpoint serves at once; more are refused (and counted), as a busy host would."""


@dataclass(frozen=True, slots=True)
class LinkModel:
    """One-way latency (log-normal around ``latency_median``), loss and gossip degree.

    Parameters
    ----------
    latency_median : float (default: 0.05)
        Seconds.
    latency_sigma : float (default: 0.5)
        Log-normal shape; 0 gives a constant latency.
    loss : float (default: 0.0)
        Probability that a message is silently lost.
    gossip_degree : int (default: 6)
        Mesh degree D used for the pub/sub hop count and the publisher's upload.
    """

    latency_median: float = 0.05
    latency_sigma: float = 0.5
    loss: float = 0.0
    gossip_degree: int = 6

    def sample_latency(self, rng: random.Random) -> float:
        if self.latency_sigma == 0:
            return self.latency_median
        return self.latency_median * math.exp(rng.gauss(0.0, self.latency_sigma))


class _Pending:
    """A request waiting for its response."""

    __slots__ = ("abandoned", "error", "event", "max_bytes", "relay", "response")

    def __init__(self, max_bytes: int, relay: PeerId | None = None) -> None:
        self.max_bytes = max_bytes
        self.relay = relay  # the circuit relay the request went through (``nat_model``), if any
        self.event = trio.Event()
        self.response: bytes | None = None
        self.error: Exception | None = None
        self.abandoned = False


class VirtualNetwork:
    """The shared medium. Run ``run()`` in a nursery, then ``attach`` endpoints.

    Parameters
    ----------
    rng : random.Random
    link : LinkModel (default: LinkModel())
    """

    def __init__(self, rng: random.Random, link: LinkModel | None = None) -> None:
        self.rng = rng
        self.link = link or LinkModel()
        self._endpoints: dict[PeerId, VirtualEndpoint] = {}
        self._group: dict[PeerId, int] = {}
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._counter = 0
        self._wakeup: trio.CancelScope | None = None
        self.bytes_sent = 0
        self.messages_lost = 0
        self.nat: NatModel | None = None  # set to model private nodes and relays (``sim.nat_model``)

    # -- topology ------------------------------------------------------------------------
    def online(self) -> list[PeerId]:
        return list(self._endpoints)

    def partition(self, groups: Mapping[PeerId, int]) -> None:
        """Split the network: peers in different groups (absent = group 0) cannot talk."""
        self._group = dict(groups)

    def heal(self) -> None:
        self._group = {}

    def reachable(self, a: PeerId, b: PeerId) -> bool:
        return not self._group or self._group.get(a, 0) == self._group.get(b, 0)

    @asynccontextmanager
    async def attach(
        self, peer: PeerId, *, uplink_bytes_per_s: float = 1.25e6, addrs: Sequence[str] = ()
    ) -> AsyncIterator[VirtualEndpoint]:
        """Bring ``peer`` online for the duration of the block (leaving it = going offline).

        ``addrs`` are what the peer advertises (e.g. a modelled public address, so address
        diversity can be studied); delivery goes by peer id whatever they say.
        """
        if peer in self._endpoints:
            raise LocalProtocolError(f"{peer} is already online")
        async with trio.open_nursery() as nursery:
            endpoint = VirtualEndpoint(self, peer, nursery, uplink_bytes_per_s, addrs)
            self._endpoints[peer] = endpoint
            try:
                yield endpoint
            finally:
                del self._endpoints[peer]
                endpoint._go_offline()
                nursery.cancel_scope.cancel()

    # -- delivery ------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver messages at their arrival times, forever."""
        task_status.started()
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, deliver, args = heapq.heappop(heap)
                deliver(*args)
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._wakeup = scope
                await trio.sleep_forever()
            self._wakeup = None

    def _at(self, when: float, deliver: Callable[..., None], *args: Any) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (when, self._counter, deliver, args))
        if self._wakeup is not None and when < self._wakeup.deadline:
            self._wakeup.deadline = when

    def _occupy_uplink(self, sender: VirtualEndpoint, size: int) -> float:
        """Queue ``size`` bytes on ``sender``'s uplink; return when the last byte leaves."""
        start = max(trio.current_time(), sender.uplink_free_at)
        sender.uplink_free_at = start + size / sender.uplink_bytes_per_s
        self.bytes_sent += size
        return sender.uplink_free_at

    def _arrival(self, sent_at: float, hops: int = 1) -> float | None:
        """When a message that left at ``sent_at`` arrives, or None if it is lost."""
        if self.link.loss and self.rng.random() < self.link.loss:
            self.messages_lost += 1
            return None
        return sent_at + sum(self.link.sample_latency(self.rng) for _ in range(hops))

    def _transmit(self, sender: VirtualEndpoint, size: int) -> float | None:
        """Send one message point to point: its arrival time, or None if lost."""
        return self._arrival(self._occupy_uplink(sender, size))

    def _deliver_request(
        self, src: VirtualEndpoint, dst_peer: PeerId, protocol: str, data: bytes, pending: _Pending
    ) -> None:
        dst = self._endpoints.get(dst_peer)
        if dst is None:  # offline: the dial is refused, the refusal travels back
            when = trio.current_time() + self.link.sample_latency(self.rng)
            self._at(when, _resolve, pending, None, PeerUnreachable(f"{dst_peer} is offline"))
            return
        if not self.reachable(src.peer, dst_peer):
            return
        dst._handle(src, protocol, data, pending)

    def _deliver_response(
        self, dst: VirtualEndpoint, peer: PeerId, pending: _Pending, data: bytes | None, error: Exception | None
    ) -> None:
        if dst.offline or not self.reachable(dst.peer, peer):
            return
        dst._connected.add(peer)
        if data is not None and len(data) > pending.max_bytes:
            dst.penalize(peer, "oversize_frame")
            data, error = None, RequestRefused(f"response of {len(data)} bytes > {pending.max_bytes}")
        _resolve(pending, data, error)

    def _deliver_topic(self, dst: VirtualEndpoint, message: TopicMessage) -> None:
        if not dst.offline:
            dst._enqueue(message)


def _resolve(pending: _Pending, data: bytes | None, error: Exception | None) -> None:
    if not pending.abandoned and not pending.event.is_set():
        pending.response, pending.error = data, error
        pending.event.set()


class VirtualEndpoint:
    """One node's view of the ``VirtualNetwork``; implements ``protocols.network.Network``."""

    def __init__(
        self,
        net: VirtualNetwork,
        peer: PeerId,
        nursery: trio.Nursery,
        uplink_bytes_per_s: float,
        addrs: Sequence[str] = (),
    ) -> None:
        self._net = net
        self.peer = peer
        self._addrs = list(addrs)
        self._nursery = nursery
        self.uplink_bytes_per_s = uplink_bytes_per_s
        self.uplink_free_at = 0.0
        self.offline = False
        self._handlers: dict[str, tuple[RequestHandler, int, Admission | None]] = {}
        self._policy = PeerPolicy()
        self._topics: dict[str, trio.MemorySendChannel[TopicMessage]] = {}
        self._connected: set[PeerId] = set()
        self._busy = 0
        self._stats: dict[str, int] = {}

    # -- Network interface ---------------------------------------------------------------
    @property
    def local_peer(self) -> PeerId:
        return self.peer

    def addrs(self) -> list[str]:
        return list(self._addrs)  # modelled only: a virtual peer is reached by its id alone

    def add_addrs(self, peer: PeerId, addrs: Sequence[str], *, current: bool = False) -> None:
        pass

    def peers(self) -> set[PeerId]:
        online = self._net._endpoints
        return {p for p in self._connected if p in online}

    def known_peers(self) -> list[tuple[PeerId, list[str]]]:
        return []  # no local discovery on the virtual network: peers come from membership

    def penalize(self, peer: PeerId, reason: str) -> None:
        self._count("offences")
        self._disconnect(peer)
        if self._policy.offence(peer, trio.current_time()):
            self._count("peers_banned")

    def stats(self) -> dict[str, int]:
        return dict(sorted(self._stats.items()))

    def reachability(self) -> Reachability:
        return Reachability()  # every virtual node is dialled directly

    def supports(self, peer: PeerId, protocol: str) -> bool | None:
        endpoint = self._net._endpoints.get(peer)
        return None if endpoint is None else protocol in endpoint._handlers

    def serve(
        self,
        protocol: str,
        handler: RequestHandler,
        *,
        max_request_bytes: int = MAX_FRAME_BYTES,
        admit: Admission | None = None,
    ) -> None:
        if protocol in self._handlers:
            raise LocalProtocolError(f"{protocol} already has a handler")
        self._handlers[protocol] = (handler, max_request_bytes, admit)

    def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[TopicMessage]:
        if topic in self._topics:
            raise LocalProtocolError(f"already subscribed to {topic}")
        send, receive = trio.open_memory_channel[TopicMessage](SUBSCRIPTION_BUFFER)
        self._topics[topic] = send
        return receive

    def gossip_peers(self) -> dict[str, int]:
        """Subscribers a publish reaches now, up to the modelled gossip degree."""
        net = self._net
        subscribers = {topic: 0 for topic in self._topics}
        for p, ep in net._endpoints.items():
            if p != self.peer and net.reachable(self.peer, p):
                for topic in ep._topics.keys() & subscribers.keys():
                    subscribers[topic] += 1
        return {topic: min(n, net.link.gossip_degree) for topic, n in sorted(subscribers.items())}

    async def publish(self, topic: str, data: bytes) -> None:
        _check_size(data, MAX_GOSSIP_BYTES)
        net = self._net
        targets = [
            ep
            for p, ep in net._endpoints.items()
            if p != self.peer and topic in ep._topics and net.reachable(self.peer, p)
        ]
        if targets:
            degree = net.link.gossip_degree
            hops = max(1, math.ceil(math.log(len(targets) + 1, degree)))
            sent_at = net._occupy_uplink(self, len(data) * min(degree, len(targets)))
            for ep in targets:
                when = net._arrival(sent_at, hops)
                if when is not None:
                    net._at(when, net._deliver_topic, ep, TopicMessage(topic, self.peer, data))
        await trio.lowlevel.checkpoint()

    async def request(
        self,
        peer: PeerId,
        protocol: str,
        data: bytes | Callable[[], bytes],
        *,
        max_response_bytes: int = MAX_FRAME_BYTES,
        max_request_bytes: int | None = None,
    ) -> bytes:
        if callable(data):  # no dial to wait for here: it leaves now
            data = data()
        _check_size(data)
        if peer == self.peer:
            raise LocalProtocolError("a node does not send requests to itself")
        if self._policy.banned(peer, trio.current_time()):
            raise PeerUnreachable(f"{peer} is refused for misbehaving")
        net = self._net
        relay = None
        if net.nat is not None:  # the peer may be behind a NAT: directly, or through a relay
            route = net.nat.route(self.peer, peer, net._endpoints)
            if route is None:
                raise PeerUnreachable(f"{peer} is behind a NAT and none of its relays is online")
            if route != DIRECT:
                relay = route
                if not net.nat.carry(relay, len(data)):
                    raise NetworkError(f"a request of {len(data)} bytes is over the relay's circuit limit")
        pending = _Pending(max_response_bytes, relay)
        when = net._arrival(net._occupy_uplink(self, len(data)), hops=2 if relay else 1)
        if when is not None:
            net._at(when, net._deliver_request, self, peer, protocol, data, pending)
        try:
            await pending.event.wait()
        finally:
            if not pending.event.is_set():  # the caller's scope ended the wait
                pending.abandoned = True
                self._count("requests_abandoned")
        if pending.error is not None:
            raise pending.error
        assert pending.response is not None
        return pending.response

    # -- internals -----------------------------------------------------------------------
    def _count(self, name: str) -> None:
        self._stats[name] = self._stats.get(name, 0) + 1

    def _handle(self, src: VirtualEndpoint, protocol: str, data: bytes, pending: _Pending) -> None:
        entry = self._handlers.get(protocol)
        if entry is None:
            self._respond(src, pending, None, ProtocolUnsupported(f"{self.peer} does not speak {protocol}"))
            return
        handler, max_bytes, admit = entry
        if self._policy.banned(src.peer, trio.current_time()):
            self._count("requests_refused_banned")
            self._respond(src, pending, None, RequestRefused(f"{src.peer} is refused for misbehaving"))
        elif len(data) > max_bytes:
            self.penalize(src.peer, "oversize_frame")
            self._respond(src, pending, None, RequestRefused(f"request of {len(data)} bytes > {max_bytes}"))
        elif admit is not None and (unread := admit(src.peer, len(data))) is not None:
            self._count("requests_refused_unread")
            self._respond(src, pending, None, RequestRefused(unread))
        elif self._busy >= MAX_CONCURRENT_HANDLERS:
            self._count("requests_refused_busy")
            self._respond(src, pending, None, RequestRefused(f"{self.peer} is busy"))
        else:
            self._connected.add(src.peer)
            self._busy += 1
            self._nursery.start_soon(self._serve, handler, src, data, pending)

    async def _serve(self, handler: RequestHandler, src: VirtualEndpoint, data: bytes, pending: _Pending) -> None:
        try:
            response = await handler(src.peer, data)
        except RequestRefused as exc:
            self._count("requests_refused")
            self._respond(src, pending, None, RequestRefused(str(exc)))
        else:
            _check_size(response)
            self._respond(src, pending, response, None)
        finally:
            self._busy -= 1

    def _respond(self, dst: VirtualEndpoint, pending: _Pending, data: bytes | None, error: Exception | None) -> None:
        net = self._net
        size = len(data) if data is not None else 64
        if pending.relay is not None and net.nat is not None:  # back through the same circuit
            if net.nat.carry(pending.relay, size):
                net.nat.relayed_exchange(dst.peer, self.peer)
            else:
                data, error = None, NetworkError(f"a response of {size} bytes is over the relay's circuit limit")
        hops = 2 if pending.relay is not None else 1
        when = net._arrival(net._occupy_uplink(self, size), hops)
        if when is not None:
            net._at(when, net._deliver_response, dst, self.peer, pending, data, error)

    def _enqueue(self, message: TopicMessage) -> None:
        channel = self._topics.get(message.topic)
        if channel is None:
            return
        try:
            channel.send_nowait(message)
        except trio.WouldBlock:
            self._count("pubsub_dropped_overflow")
        except trio.BrokenResourceError:
            self._count("pubsub_dropped_closed")

    def _disconnect(self, peer: PeerId) -> None:
        self._connected.discard(peer)
        other = self._net._endpoints.get(peer)
        if other is not None:
            other._connected.discard(self.peer)

    def _go_offline(self) -> None:
        self.offline = True
        if self._net.nat is not None:
            self._net.nat.offline(self.peer)
        for channel in self._topics.values():
            channel.close()
        online = self._net._endpoints
        for p in self._connected:
            other = online.get(p)
            if other is not None:
                other._connected.discard(self.peer)
        self._connected.clear()


def _check_size(data: bytes, limit: int = MAX_FRAME_BYTES) -> None:
    if len(data) > limit:
        raise LocalProtocolError(f"payload of {len(data)} bytes exceeds {limit}")

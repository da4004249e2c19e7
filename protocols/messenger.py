"""Typed messaging over a ``Network``: seal, open, count, and route to handlers.

This is the single wrapper (as ipv8's ``lazy_wrapper``) where envelopes are verified and
counted, so service handlers hold only protocol logic and only ever see valid bodies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

from .counters import Counters
from .envelope import PENALIZED, Body, Codec, Opened, RegistrationError, Rejected, RejectReason
from .network import Admission, LocalProtocolError, Network, RequestRefused, TopicMessage
from .peer_id import PeerId

Req = TypeVar("Req", bound=Body)
Resp = TypeVar("Resp", bound=Body)
B = TypeVar("B", bound=Body)


def protocol_id(body_type: type[Body], swarm: str = "") -> str:
    """The request/response protocol that carries requests of ``body_type`` in ``swarm``.

    The default swarm ("") keeps the plain ``/edgeswarm/<kind>/1``; a named one puts its name
    in every protocol and topic, so that its nodes neither shuffle nor gossip with nodes of
    another swarm they meet on a shared relay (each answers the other's protocols "na").
    """
    return f"/edgeswarm/{swarm}/{body_type.KIND}/1" if swarm else f"/edgeswarm/{body_type.KIND}/1"


def topic_name(body_type: type[Body], swarm: str = "") -> str:
    """The pub/sub topic that carries announcements of ``body_type`` in ``swarm``."""
    return f"edgeswarm/{swarm}/{body_type.KIND}/1" if swarm else f"edgeswarm/{body_type.KIND}/1"


class Messenger:
    """Binds a node's ``Network``, ``Codec`` and ``Counters``.

    Counters written: ``msgs_out``/``bytes_out`` and ``msgs_in``/``bytes_in`` by kind,
    ``rejects`` by reason. A peer whose bytes are rejected for a reason in ``PENALIZED`` is
    reported to the network, which disconnects and eventually refuses it.
    """

    def __init__(self, network: Network, codec: Codec, counters: Counters, swarm: str = "") -> None:
        self.network = network
        self.codec = codec
        self.counters = counters
        self.swarm = swarm  # see ``protocol_id``
        self._handled: set[str] = set()

    @property
    def local_peer(self) -> PeerId:
        return self.network.local_peer

    def supports(self, peer: PeerId, request_type: type[Body]) -> bool | None:
        """Whether ``peer`` answers requests of ``request_type`` (None: not known yet)."""
        return self.network.supports(peer, protocol_id(request_type, self.swarm))

    def register(self, *types: type[Body]) -> None:
        """Declare the message types a service uses (each kind once per node)."""
        self.codec.register(*types)

    def _seal(self, body: Body) -> bytes:
        data = self.codec.seal(body)
        self.counters.add("msgs_out", body.KIND)
        self.counters.add("bytes_out", body.KIND, len(data))
        return data

    def _open(self, data: bytes, expect: type[B] | None, peer: PeerId, *, relayed: bool = False) -> Opened[B]:
        """Open ``data`` received from ``peer`` (the direct sender, or the relay if ``relayed``)."""
        try:
            opened = self.codec.open(data, expect)
            if not relayed and opened.sender != peer:
                raise Rejected(RejectReason.WRONG_SENDER, f"{opened.body.KIND} signed by another peer")
        except Rejected as exc:
            self.counters.add("rejects", exc.reason.value)
            if exc.reason in PENALIZED:
                self.network.penalize(peer, exc.reason.value)
            raise
        kind = opened.body.KIND
        self.counters.add("msgs_in", kind)
        self.counters.add("bytes_in", kind, len(data))
        return opened

    def on_request(
        self,
        request_type: type[Req],
        handler: Callable[[PeerId, Req], Awaitable[Body]],
        *,
        admit: Admission | None = None,
    ) -> None:
        """Answer requests of ``request_type``; the handler returns the response body.

        ``admit`` (sender, size) may refuse a request before it is read (``Network.serve``).
        """
        if not self.codec.knows(request_type):
            raise LocalProtocolError(f"register {request_type.__qualname__} before handling it")
        if request_type.KIND in self._handled:
            raise RegistrationError(f"{request_type.KIND!r} already has a handler")
        self._handled.add(request_type.KIND)

        async def serve(peer: PeerId, data: bytes) -> bytes:
            try:
                opened = self._open(data, request_type, peer)
            except Rejected as exc:
                raise RequestRefused(str(exc)) from None
            return self._seal(await handler(peer, opened.body))

        self.network.serve(
            protocol_id(request_type, self.swarm),
            serve,
            max_request_bytes=self.codec.max_envelope_bytes(request_type),
            admit=admit,
        )

    async def request(self, peer: PeerId, body: Body, response_type: type[Resp]) -> Resp:
        """Send ``body`` to ``peer`` and return its verified response.

        The caller bounds the wait (``with network.deadline(s): ...``).

        Raises
        ------
        NetworkError
            The peer could not be reached (or, under ``deadline``, did not answer in time).
        Rejected
            The peer answered with something invalid (already counted).
        """
        if not self.codec.knows(response_type):
            raise LocalProtocolError(f"register {response_type.__qualname__} before expecting it")
        data = await self.network.request(
            peer,
            protocol_id(type(body), self.swarm),
            lambda: self._seal(body),  # sealed as it leaves: its seq is fresh however long the dial
            max_response_bytes=self.codec.max_envelope_bytes(response_type),
            max_request_bytes=self.codec.max_envelope_bytes(type(body)),
        )
        return self._open(data, response_type, peer).body

    async def publish(self, body: Body) -> None:
        await self.network.publish(topic_name(type(body), self.swarm), self._seal(body))

    def subscribe(self, body_type: type[B]) -> Subscription[B]:
        if not self.codec.knows(body_type):
            raise LocalProtocolError(f"register {body_type.__qualname__} before subscribing")
        return Subscription(self, body_type, self.network.subscribe(topic_name(body_type, self.swarm)))


class Subscription(Generic[B]):
    """Verified messages of one type from a topic; invalid ones are counted and skipped."""

    def __init__(self, messenger: Messenger, body_type: type[B], raw: trio.MemoryReceiveChannel[TopicMessage]):
        self._messenger = messenger
        self._type = body_type
        self._raw = raw

    async def receive(self) -> Opened[B]:
        while True:
            message = await self._raw.receive()
            try:
                return self._messenger._open(message.data, self._type, message.origin, relayed=True)
            except Rejected:
                continue

    def __aiter__(self) -> Subscription[B]:
        return self

    async def __anext__(self) -> Opened[B]:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._raw.aclose()

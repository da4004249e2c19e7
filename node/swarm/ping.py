"""Ping service: answer pings, and ping a peer with a payload of any size up to 2 MiB."""

from __future__ import annotations

import random

import trio

from edgeswarm.node.control.replies import RoundTrip
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.network import deadline
from edgeswarm.protocols.peer_id import PeerId
from edgeswarm.protocols.ping.messages import MAX_PING_PAYLOAD, Ping, Pong


class PingService:
    def __init__(self, messenger: Messenger, rng: random.Random) -> None:
        self._messenger = messenger
        self._rng = rng
        messenger.register(Ping, Pong)
        messenger.on_request(Ping, self._on_ping)

    async def _on_ping(self, peer: PeerId, ping: Ping) -> Pong:
        return Pong(ping.payload)

    async def ping(self, peer: PeerId, size: int = 0, *, timeout: float = 30.0) -> RoundTrip:
        """Send ``size`` random bytes to ``peer``; report round-trip time and integrity.

        Raises
        ------
        ValueError
            ``size`` is negative or above 2 MiB, or ``peer`` is this node.
        NetworkError, Rejected
            The peer could not be reached or answered badly.
        """
        if not 0 <= size <= MAX_PING_PAYLOAD:
            raise ValueError(f"ping size must be in [0, {MAX_PING_PAYLOAD}], got {size}")
        if peer == self._messenger.local_peer:
            raise ValueError("that is this node's own PeerID: ping another peer")
        payload = self._rng.randbytes(size)
        start = trio.current_time()
        with deadline(timeout):
            pong = await self._messenger.request(peer, Ping(payload), Pong)
        rtt = trio.current_time() - start
        return RoundTrip(rtt_ms=round(rtt * 1000, 3), bytes=size, intact=pong.payload == payload)

"""``Network`` over py-libp2p: Noise + yamux, GossipSub, length-prefixed request/response.

- Security and muxing: Noise and yamux only (plaintext is never offered; mplex deadlocks on
  large bidirectional streams in py-libp2p 0.8.1).
- Pub/sub: GossipSub v1.1 with a 1 s heartbeat and spam protection off; only small
  announcements travel there (``MAX_GOSSIP_BYTES``).
- Request/response: one stream per request on the protocol's id. The request is a frame
  ``u32 length | bytes``; the response is ``u8 status | u32 length | bytes`` with status 0
  (ok) or 1 (refused, bytes = reason). Lengths are checked against the protocol's limit
  before the body is read; a peer that sends an oversize or broken frame is penalized.
- Misbehaviour: every penalty disconnects the peer; repeated ones (``PeerPolicy``) get it
  refused, inbound and outbound, for a while. Other peers are unaffected.
"""

from __future__ import annotations

import logging
import struct
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.peer.peerstore import PeerStoreError
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

from .network import (
    MAX_FRAME_BYTES,
    MAX_GOSSIP_BYTES,
    SUBSCRIPTION_BUFFER,
    LocalProtocolError,
    NetworkError,
    PeerUnreachable,
    RequestHandler,
    RequestRefused,
    RequestTimeout,
    TopicMessage,
)
from .peer_id import PeerId
from .peer_policy import PeerPolicy, PolicyParams

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
_STATUS_OK, _STATUS_REFUSED = 0, 1
_MAX_REASON_BYTES = 1024
_ADDR_TTL = 3600.0
_DISCONNECT_GRACE = 0.25  # lets a refusal with its reason reach the peer before we hang up
# what a failing dial, stream or peer can raise inside py-libp2p and trio
_HANG_UP_SECONDS = 2.0
_TRANSPORT_ERRORS = (BaseLibp2pError, OSError, EOFError, trio.BrokenResourceError, trio.ClosedResourceError)


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """Bounds on what one peer can make us do.

    Parameters
    ----------
    streams_per_peer : int (default: 16)
        Inbound requests served at once per peer; more are reset (and counted).
    read_timeout : float (default: 30.0)
        Seconds an inbound request may take to arrive whole.
    gossip_degree : int (default: 6)
        GossipSub mesh degree D (D_low = 4, D_high = 12).
    eclipse_protection : bool (default: True)
        GossipSub keeps mesh peers from at least 3 distinct IPs. Right on the internet;
        on loopback (every peer at 127.0.0.1) it starves the mesh and gossip falls back
        to 1 s heartbeats, so local swarms turn it off.
    """

    streams_per_peer: int = 16
    read_timeout: float = 30.0
    gossip_degree: int = 6
    eclipse_protection: bool = True


class FrameError(Exception):
    """The remote sent a frame we cannot accept (too large or cut short)."""


async def _read_exactly(stream: INetStream, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = await stream.read(min(remaining, 1 << 16))
        if not chunk:
            raise FrameError(f"stream ended {remaining} bytes short")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


async def _read_frame(stream: INetStream, limit: int) -> bytes:
    (size,) = _LENGTH.unpack(await _read_exactly(stream, _LENGTH.size))
    if size > limit:
        raise FrameError(f"frame of {size} bytes > {limit}")
    return await _read_exactly(stream, size)


class Libp2pNetwork:
    """A node's libp2p host behind the ``Network`` interface. Create with ``Libp2pNetwork.open``."""

    def __init__(
        self, host: IHost, pubsub: Pubsub, nursery: trio.Nursery, limits: TransportLimits, policy: PeerPolicy
    ) -> None:
        self._host = host
        self._pubsub = pubsub
        self._nursery = nursery
        self._limits = limits
        self._policy = policy
        self._peer = host.get_id().to_base58()
        self._handlers: dict[str, tuple[RequestHandler, int]] = {}
        self._topics: set[str] = set()
        self._inbound: defaultdict[PeerId, int] = defaultdict(int)
        self._stats: defaultdict[str, int] = defaultdict(int)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        seed: bytes,
        *,
        listen: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",),
        mdns: bool = False,
        limits: TransportLimits | None = None,
        policy: PolicyParams | None = None,
    ) -> AsyncIterator[Libp2pNetwork]:
        """Start a host for the Ed25519 ``seed`` listening on ``listen``; stop it on exit."""
        limits = limits or TransportLimits()
        key_pair = create_new_key_pair(seed)
        noise = NoiseTransport(key_pair, noise_privkey=create_x25519_key_pair().private_key)
        listen_addrs = [multiaddr.Multiaddr(a) for a in listen]
        host = new_host(
            key_pair=key_pair,
            sec_opt={NOISE_PROTOCOL_ID: noise},
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            listen_addrs=listen_addrs,
            enable_mDNS=mdns,
        )
        d = limits.gossip_degree
        gossipsub = GossipSub(
            protocols=[PROTOCOL_ID_V11],
            degree=d,
            degree_low=max(1, d - 2),
            degree_high=2 * d,
            heartbeat_interval=1,
            spam_protection_enabled=False,
            eclipse_protection_enabled=limits.eclipse_protection,
        )
        pubsub = Pubsub(host, gossipsub)
        async with host.run(listen_addrs=listen_addrs):
            # pub/sub must run before the first connection, or it never meets that peer
            async with background_trio_service(pubsub), background_trio_service(gossipsub):
                await pubsub.wait_until_ready()
                async with trio.open_nursery() as nursery:
                    network = cls(host, pubsub, nursery, limits, PeerPolicy(policy))
                    try:
                        yield network
                    finally:
                        nursery.cancel_scope.cancel()
                        # hang up while pub/sub still runs: a message that arrives while its
                        # services stop makes py-libp2p fail the connection's task (notes/libp2p.md)
                        with trio.move_on_after(_HANG_UP_SECONDS) as scope:
                            scope.shield = True
                            await network._hang_up()

    # -- identity and peers ------------------------------------------------------------
    @property
    def local_peer(self) -> PeerId:
        return self._peer

    def addrs(self) -> list[str]:
        return [str(a) for a in self._host.get_addrs()]

    def add_addrs(self, peer: PeerId, addrs: Sequence[str]) -> None:
        try:
            peer_id = ID.from_base58(peer)
            parsed = [_without_p2p(multiaddr.Multiaddr(a)) for a in addrs]
        except (ValueError, BaseLibp2pError, multiaddr.exceptions.Error, KeyError):
            self._stats["bad_addrs"] += 1
            return
        if parsed and peer != self._peer:
            self._host.get_peerstore().add_addrs(peer_id, parsed, _ADDR_TTL)

    def peers(self) -> set[PeerId]:
        return {p.to_base58() for p in self._host.get_connected_peers()}

    def known_peers(self) -> list[tuple[PeerId, list[str]]]:
        store = self._host.get_peerstore()
        out = []
        for peer_id in store.peers_with_addrs():
            peer = peer_id.to_base58()
            if peer != self._peer and not self._policy.banned(peer, trio.current_time()):
                out.append((peer, [str(a) for a in store.addrs(peer_id)]))
        return out

    def stats(self) -> dict[str, int]:
        return dict(sorted(self._stats.items()))

    def penalize(self, peer: PeerId, reason: str) -> None:
        self._stats["offences"] += 1
        if self._policy.offence(peer, trio.current_time()):
            self._stats["peers_banned"] += 1
            log.warning("refusing %s for a while: repeated offences (last: %s)", peer, reason)
        else:
            log.info("disconnecting %s: %s", peer, reason)
        self._nursery.start_soon(self._disconnect, peer)

    async def _hang_up(self) -> None:
        """Close every connection (before shutting down)."""
        for peer in self._host.get_connected_peers():
            try:
                await self._host.disconnect(peer)
            except _TRANSPORT_ERRORS:
                pass

    async def _disconnect(self, peer: PeerId, grace: float = _DISCONNECT_GRACE) -> None:
        await trio.sleep(grace)
        try:
            await self._host.disconnect(ID.from_base58(peer))
            self._stats["peers_disconnected"] += 1
        except _TRANSPORT_ERRORS:
            pass

    async def connect(self, addr: str) -> PeerId:
        """Dial a full multiaddr ending in ``/p2p/<id>``; return the peer's id."""
        maddr = multiaddr.Multiaddr(addr)
        peer = maddr.get_peer_id()
        if peer is None:
            raise ValueError(f"{addr!r} has no /p2p/<peer id> part")
        self.add_addrs(peer, [addr])
        await self._ensure_connected(peer)
        return peer

    async def _ensure_connected(self, peer: PeerId, *, redial: bool = False) -> ID:
        peer_id = ID.from_base58(peer)
        if peer_id in self._host.get_connected_peers():
            if not redial:
                return peer_id
            try:  # py-libp2p reuses a connection object the remote already closed: drop it
                await self._host.disconnect(peer_id)
            except _TRANSPORT_ERRORS:
                pass
        try:
            addrs = self._host.get_peerstore().addrs(peer_id)
        except PeerStoreError:
            addrs = []
        if not addrs:
            raise PeerUnreachable(f"no address known for {peer}")
        try:
            await self._host.connect(PeerInfo(peer_id, addrs))
        except _TRANSPORT_ERRORS as exc:
            raise PeerUnreachable(f"cannot dial {peer}: {exc}") from None
        return peer_id

    # -- pub/sub -------------------------------------------------------------------------
    async def publish(self, topic: str, data: bytes) -> None:
        if len(data) > MAX_GOSSIP_BYTES:
            raise LocalProtocolError(f"gossip of {len(data)} bytes exceeds {MAX_GOSSIP_BYTES}")
        try:
            await self._pubsub.publish(topic, data)
        except _TRANSPORT_ERRORS as exc:
            raise NetworkError(f"publish on {topic} failed: {exc}") from None
        self._stats["gossip_published"] += 1

    def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[TopicMessage]:
        if topic in self._topics:
            raise LocalProtocolError(f"already subscribed to {topic}")
        self._topics.add(topic)
        send, receive = trio.open_memory_channel[TopicMessage](SUBSCRIPTION_BUFFER)
        self._nursery.start_soon(self._pump, topic, send)
        return receive

    async def _pump(self, topic: str, send: trio.MemorySendChannel[TopicMessage]) -> None:
        queue = await self._pubsub.subscribe(topic)
        async with send:
            while True:
                message = await queue.get()
                origin = ID(message.from_id).to_base58()
                if origin == self._peer:
                    continue
                if len(message.data) > MAX_GOSSIP_BYTES:
                    self._stats["gossip_dropped_oversize"] += 1
                    continue
                try:
                    send.send_nowait(TopicMessage(topic, origin, message.data))
                except trio.WouldBlock:
                    self._stats["pubsub_dropped_overflow"] += 1

    # -- request/response ----------------------------------------------------------------
    async def _open_stream(self, peer: PeerId, protocol: str) -> INetStream:
        """A stream to ``peer``; a connection the remote already closed is redialled once."""
        peer_id = await self._ensure_connected(peer)
        try:
            return await self._host.new_stream(peer_id, [TProtocol(protocol)])
        except _TRANSPORT_ERRORS:
            self._stats["streams_redialled"] += 1
        peer_id = await self._ensure_connected(peer, redial=True)
        try:
            return await self._host.new_stream(peer_id, [TProtocol(protocol)])
        except _TRANSPORT_ERRORS as exc:
            raise PeerUnreachable(f"cannot open {protocol} to {peer}: {exc}") from None

    def serve(self, protocol: str, handler: RequestHandler, *, max_request_bytes: int = MAX_FRAME_BYTES) -> None:
        if protocol in self._handlers:
            raise LocalProtocolError(f"{protocol} already has a handler")
        self._handlers[protocol] = (handler, min(max_request_bytes, MAX_FRAME_BYTES))

        async def on_stream(stream: INetStream) -> None:
            await self._serve_stream(protocol, stream)

        self._host.set_stream_handler(TProtocol(protocol), on_stream)

    async def _serve_stream(self, protocol: str, stream: INetStream) -> None:
        handler, limit = self._handlers[protocol]
        peer = stream.muxed_conn.peer_id.to_base58()
        if self._policy.banned(peer, trio.current_time()):
            self._stats["streams_refused_banned"] += 1
            await _reset(stream)
            self._nursery.start_soon(self._disconnect, peer, 0.0)
            return
        if self._inbound[peer] >= self._limits.streams_per_peer:
            self._stats["streams_refused_busy"] += 1
            await _reset(stream)
            return
        self._inbound[peer] += 1
        try:
            with trio.move_on_after(self._limits.read_timeout) as scope:
                try:
                    request = await _read_frame(stream, limit)
                except FrameError as exc:
                    self.penalize(peer, f"bad frame on {protocol}: {exc}")
                    await _reset(stream)
                    return
            if scope.cancelled_caught:
                self._stats["requests_read_timeout"] += 1
                await _reset(stream)
                return
            try:
                response, status = await handler(peer, request), _STATUS_OK
            except RequestRefused as exc:
                response, status = str(exc).encode()[:_MAX_REASON_BYTES], _STATUS_REFUSED
                self._stats["requests_refused"] += 1
            await stream.write(bytes([status]) + _LENGTH.pack(len(response)) + response)
            await stream.close()
            self._stats["requests_served"] += 1
        except _TRANSPORT_ERRORS as exc:
            self._stats["streams_failed"] += 1
            log.debug("stream from %s on %s failed: %s", peer, protocol, exc)
            await _reset(stream)
        finally:
            self._inbound[peer] -= 1
            if not self._inbound[peer]:
                del self._inbound[peer]

    async def request(
        self, peer: PeerId, protocol: str, data: bytes, *, timeout: float, max_response_bytes: int = MAX_FRAME_BYTES
    ) -> bytes:
        if len(data) > MAX_FRAME_BYTES:
            raise LocalProtocolError(f"request of {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
        if peer == self._peer:
            raise LocalProtocolError("a node does not send requests to itself")
        if self._policy.banned(peer, trio.current_time()):
            raise PeerUnreachable(f"{peer} is refused for misbehaving")
        with trio.move_on_after(timeout) as scope:
            stream = await self._open_stream(peer, protocol)
            try:
                await stream.write(_LENGTH.pack(len(data)) + data)
                status = (await _read_exactly(stream, 1))[0]
                if status == _STATUS_REFUSED:
                    reason = await _read_frame(stream, _MAX_REASON_BYTES)
                    raise RequestRefused(reason.decode(errors="replace"))
                if status != _STATUS_OK:
                    raise FrameError(f"unknown status {status}")
                response = await _read_frame(stream, max_response_bytes)
            except FrameError as exc:
                self.penalize(peer, f"bad response on {protocol}: {exc}")
                await _reset(stream)
                raise NetworkError(f"bad response from {peer}: {exc}") from None
            except _TRANSPORT_ERRORS as exc:
                await _reset(stream)
                raise NetworkError(f"request to {peer} on {protocol} failed: {exc}") from None
            await _close(stream)
            self._stats["requests_sent"] += 1
            return response
        assert scope.cancelled_caught
        self._stats["requests_timed_out"] += 1
        raise RequestTimeout(f"no answer from {peer} on {protocol} within {timeout:g}s")


def _without_p2p(addr: multiaddr.Multiaddr) -> multiaddr.Multiaddr:
    """Strip a trailing ``/p2p/<id>``: the peerstore keys addresses by peer already."""
    peer = addr.get_peer_id()
    return addr.decapsulate(multiaddr.Multiaddr(f"/p2p/{peer}")) if peer else addr


async def _reset(stream: INetStream) -> None:
    try:
        await stream.reset()
    except _TRANSPORT_ERRORS:
        pass


async def _close(stream: INetStream) -> None:
    try:
        await stream.close()
    except _TRANSPORT_ERRORS:
        pass

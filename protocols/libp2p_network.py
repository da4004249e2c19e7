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
- Hostile input never ends the node (``libp2p_guards``): every inbound stream, ours or
  py-libp2p's, and every per-peer pub/sub task runs inside a guard; inbound connections are
  admitted by our own handler.
- Global bounds (``limits.TransportLimits``), as go-libp2p's resource manager keeps them: inbound
  connections in total and per IP (checked before the handshake, which must finish within
  ``handshake_timeout``), inbound requests at once in total and per peer, request bytes
  being read at once, and validly signed gossip per origin.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.exceptions import BaseLibp2pError
from libp2p.host.exceptions import StreamFailure
from libp2p.network.config import ConnectionConfig
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

from .libp2p_guards import TRANSPORT_ERRORS, Guards, reset
from .limits import ByteBudget, RateLimiter, SlotLimiter, TransportLimits
from .network import (
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
from .peer_id import PeerId
from .peer_policy import PeerPolicy, PolicyParams
from .relays import Relays, RelayService, is_circuit, transport_addrs

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
_STATUS_OK, _STATUS_REFUSED = 0, 1
_MAX_REASON_BYTES = 1024
_ADDR_TTL = 3600  # seconds
_DISCONNECT_GRACE = 0.25  # lets a refusal with its reason reach the peer before we hang up
_HANG_UP_SECONDS = 2.0
_SMALL_REQUEST = 64 * 1024  # requests up to this size are not counted against the byte budget
# how py-libp2p 0.8.1's multistream-select client words a peer's "na" to every protocol asked for
_NOT_SUPPORTED = "protocols not supported"
_RELAYED_AFTER = 0.5  # seconds a direct dial runs alone before a peer's relays are dialled too
# a request or reply that may be larger waits for a relayed connection to turn direct: relays
# bound each circuit's bytes (go-libp2p's default, and ours: 128 KiB for both directions)
RELAYED_BULK_BYTES = 64 * 1024
_MAX_CIRCUIT_PEERS = 4096  # peers whose relayed addresses we keep beside the peerstore
_MAX_ADDRS_PER_PEER = 8
_MAX_REFUSED_PROTOCOLS = 4096  # (peer, protocol) pairs answered "na", remembered until identify lists


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
        self,
        host: IHost,
        pubsub: Pubsub,
        gossipsub: GossipSub,
        limits: TransportLimits,
        policy: PeerPolicy,
        relays: Sequence[str] = (),
        relay_service: RelayService | None = None,
        auto_relays: int = 2,
    ) -> None:
        self._host = host
        self._pubsub = pubsub
        self._gossipsub = gossipsub
        self._nursery: trio.Nursery | None = None  # set once the host runs
        self._limits = limits
        self._policy = policy
        self._peer = host.get_id().to_base58()
        self._handlers: dict[str, tuple[RequestHandler, int, Admission | None]] = {}
        self._refused_protocols: OrderedDict[tuple[PeerId, str], None] = OrderedDict()
        self._circuit_addrs: OrderedDict[PeerId, list[multiaddr.Multiaddr]] = OrderedDict()
        self._topics: set[str] = set()
        # a peer with no request in progress gets one even when others fill the total
        self._inbound = SlotLimiter(limits.inbound_streams, limits.streams_per_peer, reserve=limits.inbound_connections)
        self._connections = SlotLimiter(limits.inbound_connections, limits.connections_per_ip)
        self._request_bytes = ByteBudget(limits.inflight_request_bytes, limits.inflight_request_bytes_per_peer)
        self._gossip_rate = RateLimiter(limits.gossip_per_origin)
        self._stats: defaultdict[str, int] = defaultdict(int)
        self._blacklisted: set[PeerId] = set()  # refused peers on pub/sub's blacklist
        self._guards = Guards(self._stats, self._policy, self._connections, self.penalize, self._hang_up_on)
        self._guards.install(host, pubsub)
        self._relays = Relays(host, relays, self._stats, relay_service, auto_relays)
        self._keep_pubsub_off_relays(pubsub)

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
        relays: Sequence[str] = (),
        relay_service: RelayService | None = None,
        auto_relays: int = 2,
    ) -> AsyncIterator[Libp2pNetwork]:
        """Start a host for the Ed25519 ``seed`` listening on ``listen``; stop it on exit.

        ``relays`` (full multiaddrs): circuit relays to hold reservations on, so that peers
        that cannot dial us reach us through them (``protocols.relays``); ``relay_service``:
        relay for others within these bounds (a public node).
        """
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
            connection_config=ConnectionConfig(inbound_upgrade_timeout=limits.handshake_timeout),
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
        # py-libp2p numbers our messages from the current second, one up per message: a node
        # restarted within seconds reused numbers its peers had seen, and they dropped its
        # gossip as duplicates for minutes (their seen-cache keys on sender and number)
        pubsub.counter = time.time_ns()
        network = cls(
            host, pubsub, gossipsub, limits, PeerPolicy(policy), relays, relay_service, auto_relays
        )  # guards in place before we listen
        async with host.run(listen_addrs=listen_addrs):
            await network._guards.stop_auto_dials(host)
            # pub/sub must run before the first connection, or it never meets that peer
            async with background_trio_service(pubsub) as pubsub_manager, background_trio_service(gossipsub):
                network._guards.guard_tasks(pubsub_manager)
                await pubsub.wait_until_ready()
                async with network._relays.running(), trio.open_nursery() as nursery:
                    network._nursery = nursery
                    nursery.start_soon(network._forgive)
                    try:
                        yield network
                    finally:
                        nursery.cancel_scope.cancel()
                        # hang up while pub/sub still runs: a message that arrives while its
                        # services stop makes py-libp2p fail the connection's task (notes/libp2p.md)
                        with trio.move_on_after(_HANG_UP_SECONDS) as scope:
                            scope.shield = True
                            await network._hang_up()
                        network._nursery = None  # stopping: what fails from here on is ours, not a peer's

    def _keep_pubsub_off_relays(self, pubsub: Pubsub) -> None:
        """Open no pub/sub stream over a connection that runs through a relay.

        A relay's circuit carries 128 KiB and lasts 2 minutes: enough to set up a direct
        connection, not to carry a mesh's gossip, which would drain it and get it closed (as
        go-libp2p does with such "limited" connections). The peer joins our pub/sub once a
        direct connection is made (each new connection asks again); until then its gossip
        reaches us through our other peers.
        """
        handle_new_peer = pubsub._handle_new_peer

        async def direct_only(peer_id: ID) -> None:
            if self._relays.upgraded(peer_id) is False:
                self._stats["pubsub_not_over_relays"] += 1
                return
            await handle_new_peer(peer_id)

        pubsub._handle_new_peer = direct_only  # type: ignore[method-assign]

    def _check_gossip(self, forwarder: ID, message) -> bool:
        """Pub/sub validator: at most ``gossip_per_origin`` messages per origin (None: all origins)."""
        origin = ID(message.from_id).to_base58()
        if origin == self._peer or self._gossip_rate.take(origin, trio.current_time()):
            return True
        self._stats["gossip_dropped_rate"] += 1
        if origin == forwarder.to_base58():  # the flooder is on the line: hang up on it
            self.penalize(origin, "gossip over the per-origin rate")
        return False

    # -- identity and peers ------------------------------------------------------------
    @property
    def local_peer(self) -> PeerId:
        return self._peer

    def addrs(self) -> list[str]:
        return [str(a) for a in self._host.get_addrs()] + self._relays.addrs()

    def reachability(self) -> Reachability:
        relayed = [
            peer_id.to_base58()
            for peer_id, conns in self._host.get_network().connections.items()
            if conns and all(any(is_circuit(str(a)) for a in transport_addrs(c)) for c in conns)
        ]
        reserved_here, circuits_here = self._relays.serving()
        return Reachability(
            tuple(self._relays.reservations()),
            tuple(sorted(relayed)),
            self._relays.serving_now,
            reserved_here,
            circuits_here,
            self._relays.autonat.status,
        )

    def add_addrs(self, peer: PeerId, addrs: Sequence[str], *, current: bool = False) -> None:
        try:
            peer_id = ID.from_base58(peer)
            parsed = [_without_p2p(multiaddr.Multiaddr(a)) for a in addrs]
        except (ValueError, BaseLibp2pError, multiaddr.exceptions.Error, KeyError):
            self._stats["bad_addrs"] += 1
            return
        if parsed and peer != self._peer:
            store = self._host.get_peerstore()
            if current:
                try:
                    known = {str(_without_p2p(a)) for a in store.addrs(peer_id)}
                except PeerStoreError:
                    known = set()
                if known != {str(a) for a in parsed}:
                    store.clear_addrs(peer_id)
                    self._stats["addrs_replaced"] += 1
            store.add_addrs(peer_id, parsed, _ADDR_TTL)
            circuits = [a for a in parsed if is_circuit(str(a))]
            if circuits:  # py-libp2p drops all of a peer's addresses when one leads elsewhere
                self._circuit_addrs[peer] = circuits[:_MAX_ADDRS_PER_PEER]
                self._circuit_addrs.move_to_end(peer)
                if len(self._circuit_addrs) > _MAX_CIRCUIT_PEERS:
                    self._circuit_addrs.popitem(last=False)
            elif current:  # it holds no reservation now (it became reachable, or moved)
                self._circuit_addrs.pop(peer, None)

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

    def supports(self, peer: PeerId, protocol: str) -> bool | None:
        try:
            listed = self._host.get_peerstore().get_protocols(ID.from_base58(peer))
        except (PeerStoreError, ValueError, KeyError):
            listed = []
        if listed:  # identify's list, kept current by identify-push
            return protocol in listed
        return False if (peer, protocol) in self._refused_protocols else None

    def penalize(self, peer: PeerId, reason: str) -> None:
        now = trio.current_time()
        if self._policy.banned(peer, now):  # already cut off; what is still in flight adds nothing
            self._stats["offences_while_refused"] += 1
            return
        self._stats["offences"] += 1
        if self._policy.offence(peer, now):
            self._stats["peers_banned"] += 1
            log.warning("refusing %s for a while: repeated offences (last: %s)", peer, reason)
            # pub/sub drops the peer's stream and every message it forwards or originates at once,
            # before parsing them; hanging up can take py-libp2p seconds while the peer still writes
            self._pubsub.add_to_blacklist(ID.from_base58(peer))
            self._blacklisted.add(peer)
        else:
            log.info("disconnecting %s: %s", peer, reason)
        # we hang up and never call back: its addresses go, so no service of ours (membership
        # picks peers from the peerstore) dials it again; it may dial us, under the policy
        self._host.get_peerstore().clear_addrs(ID.from_base58(peer))
        if self._nursery is not None:
            self._nursery.start_soon(self._disconnect, peer)

    async def _forgive(self, every: float = 5.0) -> None:
        """Take peers whose refusal has run out off pub/sub's blacklist."""
        while True:
            await trio.sleep(every)
            now = trio.current_time()
            for peer in [p for p in self._blacklisted if not self._policy.banned(p, now)]:
                self._pubsub.remove_from_blacklist(ID.from_base58(peer))
                self._blacklisted.discard(peer)

    async def _hang_up(self) -> None:
        """Close every connection (before shutting down)."""
        for peer in self._host.get_connected_peers():
            try:
                await self._host.disconnect(peer)
            except TRANSPORT_ERRORS:
                pass

    def _hang_up_on(self, peer: PeerId) -> None:
        """Disconnect ``peer`` now, from a task of our own."""
        if self._nursery is not None:
            self._nursery.start_soon(self._disconnect, peer, 0.0)

    async def _disconnect(self, peer: PeerId, grace: float = _DISCONNECT_GRACE) -> None:
        await trio.sleep(grace)
        try:
            await self._host.disconnect(ID.from_base58(peer))
            self._stats["peers_disconnected"] += 1
        except TRANSPORT_ERRORS:
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
            except TRANSPORT_ERRORS:
                pass
        try:
            addrs = self._host.get_peerstore().addrs(peer_id)
        except PeerStoreError:
            addrs = []
        direct = [a for a in addrs if not is_circuit(str(a))]
        relayed = [a for a in addrs if is_circuit(str(a))] or self._circuit_addrs.get(peer, [])
        if not direct and not relayed:
            raise PeerUnreachable(f"no address known for {peer}")
        # py-libp2p refuses for 60 s to dial a peer whose addresses all failed once (even in a
        # simultaneous dial, or just before it moved): our services keep their own backoff
        self._host.get_network().unblock_peer(peer_id)  # type: ignore[attr-defined]
        # its own addresses first; a peer that also has relayed ones is likely behind a NAT,
        # where its own lead nowhere and a dial only times out (py-libp2p: 10 s, retried 3
        # times), so its relays are dialled too after a moment (as go-libp2p's dial ranker
        # does), and the first connection made wins
        failures: list[BaseException] = []
        async with trio.open_nursery() as nursery:

            async def attempt(delay: float, dial: Callable[[], Awaitable[object]]) -> None:
                await trio.sleep(delay)
                try:
                    await dial()
                except (*TRANSPORT_ERRORS, ConnectionError) as exc:
                    failures.append(exc)
                    return
                nursery.cancel_scope.cancel()

            if direct:
                nursery.start_soon(attempt, 0, partial(self._host.connect, PeerInfo(peer_id, direct)))
            if relayed:
                nursery.start_soon(
                    attempt, _RELAYED_AFTER if direct else 0, partial(self._relays.dial, peer_id, relayed)
                )
        if len(failures) < bool(direct) + bool(relayed):
            return peer_id
        raise PeerUnreachable(f"cannot dial {peer}: {failures[-1]}") from None

    # -- pub/sub -------------------------------------------------------------------------
    async def publish(self, topic: str, data: bytes) -> None:
        if len(data) > MAX_GOSSIP_BYTES:
            raise LocalProtocolError(f"gossip of {len(data)} bytes exceeds {MAX_GOSSIP_BYTES}")
        try:
            await self._pubsub.publish(topic, data)
        except TRANSPORT_ERRORS as exc:
            raise NetworkError(f"publish on {topic} failed: {exc}") from None
        self._stats["gossip_published"] += 1

    def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[TopicMessage]:
        if topic in self._topics:
            raise LocalProtocolError(f"already subscribed to {topic}")
        if self._nursery is None:
            raise LocalProtocolError("subscribe once the network runs")
        self._topics.add(topic)
        self._pubsub.set_topic_validator(topic, self._check_gossip, False)
        send, receive = trio.open_memory_channel[TopicMessage](SUBSCRIPTION_BUFFER)
        self._nursery.start_soon(self._pump, topic, send)
        return receive

    def gossip_peers(self) -> dict[str, int]:
        mesh = self._gossipsub.mesh  # per topic
        return {topic: len(mesh.get(topic, ())) for topic in sorted(self._topics)}

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
    async def _open_stream(self, peer: PeerId, protocol: str, *, bulk: bool = False) -> INetStream:
        """A stream to ``peer``; a connection the remote already closed is redialled once.

        A peer that answers "na" raises ProtocolUnsupported: its connection is fine and stays
        up; hanging up and redialling it (as for a dead connection) would only call it back.
        A ``bulk`` transfer to a peer reached only through a relay first waits (bounded) for
        the connection to turn direct: a relay's circuit limit would cut it.
        """
        peer_id = await self._ensure_connected(peer)
        if bulk and self._relays.upgraded(peer_id) is False:
            self._stats["bulk_upgrade_waits"] += 1
            await self._relays.upgrade(peer_id)
        try:
            return await self._host.new_stream(peer_id, [TProtocol(protocol)])
        except TRANSPORT_ERRORS as exc:
            self._refuse_if_unsupported(peer, protocol, exc)
            self._stats["streams_redialled"] += 1
        peer_id = await self._ensure_connected(peer, redial=True)
        try:
            return await self._host.new_stream(peer_id, [TProtocol(protocol)])
        except TRANSPORT_ERRORS as exc:
            self._refuse_if_unsupported(peer, protocol, exc)
            raise PeerUnreachable(f"cannot open {protocol} to {peer}: {exc}") from None

    def _refuse_if_unsupported(self, peer: PeerId, protocol: str, exc: BaseException) -> None:
        """Raise ProtocolUnsupported if ``exc`` is the peer's "na" to ``protocol`` (multistream-select
        answered over a live connection), not a failure of the connection itself."""
        cause = exc.__cause__ if isinstance(exc, StreamFailure) else None
        if cause is not None and str(cause).startswith(_NOT_SUPPORTED):
            self._stats["protocol_unsupported"] += 1
            self._refused_protocols[(peer, protocol)] = None
            if len(self._refused_protocols) > _MAX_REFUSED_PROTOCOLS:
                self._refused_protocols.popitem(last=False)
            raise ProtocolUnsupported(f"{peer} does not speak {protocol}") from None

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
        self._handlers[protocol] = (handler, min(max_request_bytes, MAX_FRAME_BYTES), admit)

        async def on_stream(stream: INetStream) -> None:
            await self._serve_stream(protocol, stream)

        self._host.set_stream_handler(TProtocol(protocol), on_stream)

    async def _serve_stream(self, protocol: str, stream: INetStream) -> None:
        handler, limit, admit = self._handlers[protocol]
        peer = stream.muxed_conn.peer_id.to_base58()
        refused = self._inbound.acquire(peer)
        if refused is not None:
            self._stats["streams_refused_busy" if refused == "per_key" else "streams_refused_total"] += 1
            await reset(stream)
            return
        reserved = 0
        try:
            with trio.move_on_after(self._limits.read_timeout) as scope:
                try:
                    (size,) = _LENGTH.unpack(await _read_exactly(stream, _LENGTH.size))
                    if size > limit:
                        raise FrameError(f"frame of {size} bytes > {limit}")
                    unread = admit(peer, size) if admit is not None else None
                    if unread is not None:
                        self._stats["requests_refused_unread"] += 1
                        await _refuse_unread(stream, size, unread)
                        return
                    if size > _SMALL_REQUEST:
                        refused = self._request_bytes.reserve(peer, size)
                        if refused is not None:
                            self._stats[f"requests_refused_memory_{refused}"] += 1
                            await reset(stream)
                            return
                        reserved = size
                    request = await _read_exactly(stream, size)
                except FrameError as exc:
                    self.penalize(peer, f"bad frame on {protocol}: {exc}")
                    await reset(stream)
                    return
            if scope.cancelled_caught:
                self._stats["requests_read_timeout"] += 1
                await reset(stream)
                return
            try:
                response = await handler(peer, request)
            except RequestRefused as exc:
                self._stats["requests_refused"] += 1
                await stream.write(_refusal(str(exc)))
            else:
                await stream.write(bytes([_STATUS_OK]) + _LENGTH.pack(len(response)) + response)
            await stream.close()
            self._stats["requests_served"] += 1
        except TRANSPORT_ERRORS as exc:
            self._stats["streams_failed"] += 1
            log.debug("stream from %s on %s failed: %s", peer, protocol, exc)
            await reset(stream)
        finally:
            if reserved:
                self._request_bytes.release(peer, reserved)
            self._inbound.release(peer)

    async def request(
        self,
        peer: PeerId,
        protocol: str,
        data: bytes | Callable[[], bytes],
        *,
        max_response_bytes: int = MAX_FRAME_BYTES,
        max_request_bytes: int | None = None,
    ) -> bytes:
        if not callable(data):
            _check_request_size(data)
            max_request_bytes = len(data)
        if peer == self._peer:
            raise LocalProtocolError("a node does not send requests to itself")
        if self._policy.banned(peer, trio.current_time()):
            raise PeerUnreachable(f"{peer} is refused for misbehaving")
        if self.supports(peer, protocol) is False:  # not asked again: it would only say "na"
            self._stats["protocol_unsupported"] += 1
            raise ProtocolUnsupported(f"{peer} does not speak {protocol}")
        bulk = max(max_request_bytes or MAX_FRAME_BYTES, max_response_bytes) > RELAYED_BULK_BYTES
        try:
            stream = await self._open_stream(peer, protocol, bulk=bulk)
            relayed = self._relays.upgraded(ID.from_base58(peer)) is False
            try:
                if callable(data):
                    data = data()
                    _check_request_size(data)
                await stream.write(_LENGTH.pack(len(data)) + data)
                status = (await _read_exactly(stream, 1))[0]
                if status == _STATUS_REFUSED:
                    reason = await _read_frame(stream, _MAX_REASON_BYTES)
                    raise RequestRefused(reason.decode(errors="replace"))
                if status != _STATUS_OK:
                    raise FrameError(f"unknown status {status}")
                response = await _read_frame(stream, max_response_bytes)
            except LocalProtocolError:
                await reset(stream)
                raise
            except FrameError as exc:
                self.penalize(peer, f"bad response on {protocol}: {exc}")
                await reset(stream)
                raise NetworkError(f"bad response from {peer}: {exc}") from None
            except TRANSPORT_ERRORS as exc:
                await reset(stream)
                if relayed:
                    self._stats["relayed_requests_failed"] += 1
                    raise NetworkError(
                        f"request to {peer} on {protocol} failed through a relay, which bounds each "
                        f"circuit's bytes and lifetime, and no direct connection could be made: {exc}"
                    ) from None
                raise NetworkError(f"request to {peer} on {protocol} failed: {exc}") from None
        except trio.Cancelled:
            self._stats["requests_abandoned"] += 1  # the caller's scope ended the wait
            raise
        await _close(stream)
        self._stats["requests_sent"] += 1
        return response


def _check_request_size(data: bytes) -> None:
    if len(data) > MAX_FRAME_BYTES:
        raise LocalProtocolError(f"request of {len(data)} bytes exceeds {MAX_FRAME_BYTES}")


def _refusal(reason: str) -> bytes:
    data = reason.encode()[:_MAX_REASON_BYTES]
    return bytes([_STATUS_REFUSED]) + _LENGTH.pack(len(data)) + data


async def _refuse_unread(stream: INetStream, size: int, reason: str) -> None:
    """Refuse a request of ``size`` bytes without keeping or decoding it, and tell its sender why.

    Its bytes are read and dropped as they come, not reset: py-libp2p 0.8.1's yamux keeps a
    reset stream's unread bytes for 60 s, adding what the sender still had in flight up to its
    256 KB window, so resetting refused pushes took a node under a push flood from 160 to
    600 MB.
    """
    remaining = size
    while remaining:
        chunk = await stream.read(min(remaining, 1 << 16))
        if not chunk:
            raise FrameError(f"stream ended {remaining} bytes short")
        remaining -= len(chunk)
    await stream.write(_refusal(reason))
    await stream.close()


def _without_p2p(addr: multiaddr.Multiaddr) -> multiaddr.Multiaddr:
    """Strip a trailing ``/p2p/<id>``: the peerstore keys addresses by peer already."""
    peer = addr.get_peer_id()
    return addr.decapsulate(multiaddr.Multiaddr(f"/p2p/{peer}")) if peer else addr


async def _close(stream: INetStream) -> None:
    try:
        await stream.close()
    except TRANSPORT_ERRORS:
        pass

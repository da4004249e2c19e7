"""Reachability through circuit relays (libp2p circuit relay v2) for a node nobody can dial.

A node behind a NAT dials out but cannot be dialled. It keeps a reservation on each relay
it is given (a public edgeswarm node, or any libp2p relay such as go-libp2p's), and
advertises ``<relay address>/p2p-circuit/p2p/<itself>`` beside its own addresses; a peer
that cannot dial it directly dials that address, and the relay splices the two connections.
Every node answers the relay's STOP protocol, so any node can be reached this way.

A relayed connection is then upgraded to a direct one where the NATs allow (DCUtR, hole
punching): both peers learn each other's public address through the relay and dial it at
once from their listening port, so each NAT sees an outbound connection and lets the other's
SYN in. Behind endpoint-independent NATs this works; behind symmetric ones the connection
stays relayed.

py-libp2p 0.8.1 ships the protocol (``libp2p.relay.circuit_v2``); its relay discovery does
not make reservations on a relay it was not told of (notes/libp2p.md), so reservations are
made here, explicitly, and kept: the transport refreshes a live one before it expires, and
one whose relay connection was lost is made again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID as HOP_PROTOCOL
from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service

from .autonat import PRIVATE, PUBLIC, AutoNat
from .libp2p_guards import TRANSPORT_ERRORS
from .peer_id import PeerId

log = logging.getLogger("edgeswarm.protocols.libp2p_network")

CIRCUIT = "/p2p-circuit"
RESERVE_EVERY = 30.0  # seconds between checks that each relay still holds our reservation
RESERVE_TIMEOUT = 20.0  # seconds for one relay to answer a reservation
PUNCH_DIAL_SECONDS = 5  # one hole-punch (or plain direct) dial; py-libp2p's default is 10
UPGRADE_WAIT = 15.0  # seconds a bulk transfer waits for a relayed connection to turn direct
UPGRADE_BACKOFF = 600.0  # seconds before waiting again on a peer whose upgrade failed
_MAX_BACKOFFS = 1024


def is_circuit(addr: str) -> bool:
    return CIRCUIT in addr


@dataclass(frozen=True, slots=True)
class RelayService:
    """What a node that relays for others (a public one) grants; all of it is bounded.

    Parameters
    ----------
    reservations : int
        Peers holding a reservation at once.
    circuits_per_peer : int
        Circuits at once to one reserved peer.
    circuit_seconds : int
        How long one circuit may last.
    circuit_bytes : int
        Bytes one circuit may carry (go-libp2p's default is 128 KiB: enough for the
        requests that set up a direct connection, not for bulk transfers).
    """

    reservations: int = 128
    circuits_per_peer: int = 8
    circuit_seconds: int = 120
    circuit_bytes: int = 128 * 1024
    when_public: bool = False
    """Relay only while AutoNAT finds this node publicly reachable."""


class Relays:
    """This host's side of circuit relay v2: reservations on ``relays``, dials through them,
    and, with ``service``, relaying for others.

    Parameters
    ----------
    host : IHost
    relays : sequence of str
        Full multiaddrs of relays, ending in ``/p2p/<relay id>``.
    stats : dict
        The transport's counters: ``relay_reservations`` (made or made again),
        ``relay_reservations_failed``, ``relay_dials`` and ``relay_dials_failed``.
    service : RelayService, optional
        Serve as a relay (HOP) within these bounds; None: do not.
    auto_relays : int
        While AutoNAT finds this node private, also reserve on up to this many connected
        peers that offer relaying (public edgeswarm nodes relay by default).
    """

    def __init__(
        self,
        host: IHost,
        relays: Sequence[str],
        stats: Any,
        service: RelayService | None = None,
        auto_relays: int = 2,
    ) -> None:
        self._host = host
        self._stats = stats
        limits = None
        if service is not None:
            limits = RelayLimits(
                duration=service.circuit_seconds,
                data=service.circuit_bytes,
                max_circuit_conns=service.circuits_per_peer,
                max_reservations=service.reservations,
            )
        self.service = service
        self._protocol = CircuitV2Protocol(
            host, limits=limits, allow_hop=service is not None and not service.when_public
        )
        self._transport = CircuitV2Transport(host, self._protocol, RelayConfig(roles=RelayRole.STOP | RelayRole.CLIENT))
        self._dcutr = _CountedDCUtR(host, stats)
        self._no_upgrade: dict[ID, float] = {}  # peer -> until when not to wait for an upgrade
        self._relays: list[tuple[ID, multiaddr.Multiaddr]] = []
        for addr in relays:
            maddr = multiaddr.Multiaddr(addr)
            peer = maddr.get_peer_id()
            if peer is None:
                raise ValueError(f"relay address {addr!r} lacks /p2p/<peer id>")
            self._relays.append((ID.from_base58(peer), maddr))
        self._reserved: dict[ID, multiaddr.Multiaddr] = {}
        self._auto_relays = auto_relays
        self._found: dict[ID, multiaddr.Multiaddr] = {}  # relays we found (AutoNAT: private), not configured
        self.autonat = AutoNat(host, stats, self._dcutr.candidate_addrs)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """While the block runs: answer STOP (relayed connections to us) and DCUtR, check our
        reachability (AutoNAT), keep the reservations, and relay while public if asked to."""
        async with (
            background_trio_service(self._protocol),
            background_trio_service(self._dcutr),
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(self.autonat.run)
            nursery.start_soon(self._keep_reservations, nursery)
            if self.service is not None and self.service.when_public:
                nursery.start_soon(self._serve_while_public)
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()

    def addrs(self) -> list[str]:
        """Our relayed addresses: one per relay that holds a reservation for us now."""
        me = self._host.get_id().to_base58()
        return [f"{relay}{CIRCUIT}/p2p/{me}" for relay in self._reserved.values()]

    def reservations(self) -> list[PeerId]:
        return [relay.to_base58() for relay in self._reserved]

    @property
    def serving_now(self) -> bool:
        return self._protocol.allow_hop

    def serving(self) -> tuple[int, int]:
        """As a relay: the peers holding a reservation with us now, and the circuits open."""
        if not self._protocol.allow_hop:
            return 0, 0
        manager = self._protocol.resource_manager
        held = [r for r in manager._reservations.values() if not r.is_expired()]
        return len(held), sum(r.active_connections for r in held)

    async def dial(self, peer: ID, addrs: Sequence[multiaddr.Multiaddr]) -> None:
        """Connect to ``peer`` through the first of its relayed ``addrs`` that works."""
        for addr in addrs:
            # the peerstore keeps ``.../p2p/<relay>/p2p-circuit``, without the peer it leads to
            target = multiaddr.Multiaddr(f"{addr}/p2p/{peer.to_base58()}") if str(addr).endswith(CIRCUIT) else addr
            try:
                await self._transport.dial(target)
            except (*TRANSPORT_ERRORS, ConnectionError) as exc:
                self._stats["relay_dials_failed"] += 1
                log.debug("relayed dial of %s via %s failed: %s", peer, addr, exc)
                continue
            self._stats["relay_dials"] += 1
            return
        raise ConnectionError(f"no relay reached {peer.to_base58()}")

    def upgraded(self, peer: ID) -> bool | None:
        """Whether a direct connection to ``peer`` exists (None: not connected at all)."""
        conns = self._host.get_network().connections.get(peer)
        if not conns:
            return None
        return any(not any(is_circuit(str(a)) for a in transport_addrs(c)) for c in conns)

    async def upgrade(self, peer: ID) -> bool:
        """Try, within ``UPGRADE_WAIT``, to turn a relayed connection to ``peer`` direct.

        For a bulk transfer, which a relay's circuit limit would cut: it goes direct when the
        NATs allow. A peer whose upgrade failed is not waited on again for ``UPGRADE_BACKOFF``.
        """
        direct = self.upgraded(peer)
        if direct is not False:
            return bool(direct)
        now = trio.current_time()
        if self._no_upgrade.get(peer, -math.inf) > now:
            return False
        with trio.move_on_after(UPGRADE_WAIT):
            while self._dcutr.busy(peer):  # the attempt made on meeting may be under way
                await trio.sleep(0.2)
            if self.upgraded(peer) or (await self._dcutr.initiate_hole_punch(peer) and self.upgraded(peer)):
                return True
        self._stats["upgrades_failed"] += 1
        if len(self._no_upgrade) >= _MAX_BACKOFFS:
            self._no_upgrade = {p: t for p, t in self._no_upgrade.items() if t > now}
        if len(self._no_upgrade) < _MAX_BACKOFFS:
            self._no_upgrade[peer] = now + UPGRADE_BACKOFF
        return False

    async def _keep_reservations(self, nursery: trio.Nursery) -> None:
        while True:
            connected = set(self._host.get_connected_peers())
            self._find_relays(connected)
            for relay, addr in [*self._relays, *self._found.items()]:
                if relay in self._reserved and relay in connected:
                    continue  # the transport refreshes it before it expires
                self._reserved.pop(relay, None)
                if await self._reserve(relay, addr, nursery):
                    self._reserved[relay] = addr
                elif relay in self._found:
                    del self._found[relay]  # try another next time
            with trio.move_on_after(RESERVE_EVERY):
                await self.autonat.wait_changed()

    def _find_relays(self, connected: set[ID]) -> None:
        """While private, keep up to ``auto_relays`` connected relays besides the configured ones."""
        if self.autonat.status != PRIVATE:
            for relay in self._found:
                self._reserved.pop(relay, None)  # reachable directly: stop advertising them
            self._found.clear()
            return
        configured = {relay for relay, _ in self._relays}
        self._found = {r: a for r, a in self._found.items() if r in connected}
        for peer in connected:
            if len(self._found) >= self._auto_relays:
                break
            if peer in configured or peer in self._found or not self._offers_relaying(peer):
                continue
            addrs = [a for a in self._host.get_peerstore().addrs(peer) if not is_circuit(str(a))]
            if addrs:
                self._found[peer] = multiaddr.Multiaddr(f"{addrs[0]}/p2p/{peer.to_base58()}")

    def _offers_relaying(self, peer: ID) -> bool:
        try:
            return HOP_PROTOCOL in self._host.get_peerstore().get_protocols(peer)
        except Exception:  # noqa: BLE001 - a peer identify has not answered for yet
            return False

    async def _serve_while_public(self) -> None:
        """Relay for others while AutoNAT finds this node public (``when_public``)."""
        while True:
            public = self.autonat.status == PUBLIC
            if public and not self._protocol.allow_hop:
                self._protocol.allow_hop = True
                self._host.set_stream_handler(HOP_PROTOCOL, self._protocol._handle_hop_stream)
                log.info("relaying for peers behind NATs (AutoNAT: public)")
                with trio.move_on_after(RESERVE_TIMEOUT):  # identify-push: peers learn we relay now
                    try:
                        await self._host._push_identify_to_all_peers()  # type: ignore[attr-defined]
                    except (*TRANSPORT_ERRORS, ConnectionError) as exc:
                        log.debug("identify push failed: %s", exc)
            elif not public and self._protocol.allow_hop:
                self._protocol.allow_hop = False
                self._host.remove_stream_handler(HOP_PROTOCOL)
            await self.autonat.wait_changed()

    async def _reserve(self, relay: ID, addr: multiaddr.Multiaddr, nursery: trio.Nursery) -> bool:
        with trio.move_on_after(RESERVE_TIMEOUT):
            try:
                await self._host.connect(PeerInfo(relay, [addr]))
                stream = await self._host.new_stream(relay, [HOP_PROTOCOL])
                if await self._transport.reserve(stream, relay, nursery):
                    self._stats["relay_reservations"] += 1
                    log.info("reserved a slot on relay %s", relay.to_base58())
                    return True
            except (*TRANSPORT_ERRORS, ConnectionError) as exc:
                log.info("no reservation on relay %s: %s", relay.to_base58(), exc)
        self._stats["relay_reservations_failed"] += 1
        return False


def transport_addrs(conn: Any) -> list[multiaddr.Multiaddr]:
    """The addresses a connection runs over (a relayed one's contain ``/p2p-circuit``)."""
    try:
        return list(conn.get_transport_addresses())
    except Exception:  # noqa: BLE001 - py-libp2p's connection kinds differ in what they know
        return []


class _CountedDCUtR(DCUtRProtocol):
    """py-libp2p's DCUtR with our dial bound and the outcome of each hole punch counted.

    It upgrades relayed connections on its own (both sides try within seconds of meeting)
    and serializes attempts per peer, so ``Relays.upgrade`` only asks it once more.
    """

    def __init__(self, host: IHost, stats: Any) -> None:
        super().__init__(host, dial_timeout=PUNCH_DIAL_SECONDS)
        self._stats = stats

    async def candidate_addrs(self) -> list[bytes]:
        """Where peers may dial us: our predicted public addresses (the IP peers see us at,
        with our listen port), else our listen addresses; never 0.0.0.0."""
        return [a for a in await self._get_observed_addrs() if "/0.0.0.0/" not in str(multiaddr.Multiaddr(a))]

    def busy(self, peer: ID) -> bool:
        """Whether a hole punch with ``peer`` is under way (its or ours)."""
        lock = self._initiate_locks.get(peer)
        return peer in self._in_progress or (lock is not None and lock.locked())

    async def _perform_hole_punch(
        self, peer_id: ID, addrs: list[multiaddr.Multiaddr], as_responder: bool = False
    ) -> bool:
        ok = await super()._perform_hole_punch(peer_id, addrs, as_responder)
        self._stats["hole_punches" if ok else "hole_punches_failed"] += 1
        return ok

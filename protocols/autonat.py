"""Whether this node can be dialled from outside (AutoNAT v1): connected peers dial it back.

A node behind a NAT cannot tell from its own sockets that nobody can reach it. It asks a few
connected peers that speak AutoNAT to dial it back on a fresh connection, at its listen
addresses and at its predicted public one (the address peers see it at, with its listen
port: what a port-preserving NAT maps that port to). ``need`` agreeing verdicts decide:
"public" (a node that may relay for others) or "private" (one that needs relays).

py-libp2p 0.8.1 ships the protocol (``libp2p.host.autonat``), but its server "dials back"
with ``host.connect``, which returns the connection the request came on: every node would
look public. The server here dials a new connection and hangs it up, and dials only
addresses at the IP the request came from (py-libp2p's filter), so it cannot be aimed at a
third party; it answers a few requests at once, the rest are refused.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.host.autonat.autonat import AUTONAT_PROTOCOL_ID, AutoNATService
from libp2p.host.autonat.pb.autonat_pb2 import Message
from libp2p.peer.id import ID
from multiaddr import Multiaddr

log = logging.getLogger("edgeswarm.protocols.libp2p_network")

CHECK_EVERY = 120.0  # seconds between checks once the status is known
RETRY_EVERY = 10.0  # seconds between checks while it is not
SERVERS_PER_CHECK = 4
DIAL_BACK_SECONDS = 5.0
ANSWER_TIMEOUT = 15.0
_DIAL_BACKS_AT_ONCE = 4
_VERDICTS_KEPT = 8  # the latest verdict of this many servers

UNKNOWN, PUBLIC, PRIVATE = "unknown", "public", "private"


class _FreshDialBack(AutoNATService):
    """py-libp2p's AutoNAT server, dialling back on a new connection (see the module)."""

    def __init__(self, host: IHost, stats: Any) -> None:
        super().__init__(host, serve=True)  # type: ignore[arg-type]
        self._stats = stats
        self._slots = trio.Semaphore(_DIAL_BACKS_AT_ONCE)

    async def _handle_dial(self, message: Message, observed_ip: str | None, is_relayed: bool) -> Message:
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            self._stats["autonat_refused_busy"] += 1
            refused = Message()
            refused.type = Message.DIAL_RESPONSE
            refused.dialResponse.status = Message.E_DIAL_REFUSED
            refused.dialResponse.statusText = "busy"
            return refused
        try:
            self._stats["autonat_dial_backs"] += 1
            return await super()._handle_dial(message, observed_ip, is_relayed)
        finally:
            self._slots.release()

    async def _try_dial(self, peer_id: ID, addrs: list[bytes]) -> bytes | None:
        swarm = self.host.get_network()
        for raw in addrs[:4]:
            with trio.move_on_after(DIAL_BACK_SECONDS):
                try:
                    conn = await swarm.dial_addr(Multiaddr(raw), peer_id)
                except Exception as exc:  # noqa: BLE001 - any failure is the verdict "not reachable there"
                    log.debug("AutoNAT dial-back of %s at %s failed: %s", peer_id, Multiaddr(raw), exc)
                    continue
                with trio.move_on_after(2) as scope:
                    scope.shield = True
                    await conn.close()
                return bytes(raw)
        return None


class AutoNat:
    """This node's reachability, as peers that dialled it back found it.

    Parameters
    ----------
    host : IHost
    stats : dict
        The transport's counters (``autonat_checks``, ``autonat_dial_backs``, ...).
    candidates : async callable
        The addresses to be dialled back at (encoded multiaddrs).
    need : int
        Agreeing verdicts that decide the status (AutoNAT's spec asks for more than three;
        a small swarm may have fewer peers to ask: then all of them must agree).
    """

    def __init__(
        self, host: IHost, stats: Any, candidates: Callable[[], Awaitable[list[bytes]]], need: int = 3
    ) -> None:
        self._host = host
        self._stats = stats
        self._candidates = candidates
        self._need = need
        self._service = _FreshDialBack(host, stats)
        self._verdicts: OrderedDict[ID, bool] = OrderedDict()  # server -> reached us
        self.status = UNKNOWN
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    async def run(self) -> None:
        while True:
            await self.check()
            await trio.sleep(RETRY_EVERY if self.status == UNKNOWN else CHECK_EVERY)

    async def check(self) -> str:
        """Ask up to ``SERVERS_PER_CHECK`` connected peers that speak AutoNAT; update the status."""
        servers = [p for p in self._host.get_connected_peers() if self._speaks_autonat(p)]
        random.shuffle(servers)
        addrs = await self._candidates()
        if not servers or not addrs:
            return self.status
        self._stats["autonat_checks"] += 1
        for server in servers[:SERVERS_PER_CHECK]:
            try:
                status, _ = await self._service.query_server(server, addrs, timeout=ANSWER_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - a server that fails gives no verdict
                log.debug("AutoNAT query to %s failed: %s", server, exc)
                continue
            if status == Message.OK:
                self._verdicts[server] = True
            elif status == Message.E_DIAL_ERROR:
                self._verdicts[server] = False
            else:
                continue  # refused (busy, or nothing at its IP to dial): no verdict
            self._verdicts.move_to_end(server)
            while len(self._verdicts) > _VERDICTS_KEPT:
                self._verdicts.popitem(last=False)
        self._decide()
        return self.status

    def _decide(self) -> None:
        reached = sum(self._verdicts.values())
        missed = len(self._verdicts) - reached
        need = min(self._need, len(self._verdicts)) or 1
        status = self.status
        if reached >= need and reached > missed:
            status = PUBLIC
        elif missed >= need and missed > reached:
            status = PRIVATE
        if status != self.status:
            log.info("AutoNAT: this node is %s (%d of %d peers reached it)", status, reached, len(self._verdicts))
            self.status = status
            self._changed.set()
            self._changed = trio.Event()

    def _speaks_autonat(self, peer: ID) -> bool:
        try:
            return AUTONAT_PROTOCOL_ID in self._host.get_peerstore().get_protocols(peer)
        except Exception:  # noqa: BLE001 - a peer identify has not answered for yet
            return False

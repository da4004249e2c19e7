"""Membership service: runs Cyclon shuffles on a timer over the node's Messenger.

Discovers the swarm from a few bootstrap peers and keeps a bounded, continuously refreshed
random sample of live peers that other services draw from.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import trio

from edgeswarm.protocols.envelope import Rejected
from edgeswarm.protocols.membership.cyclon import Cyclon, CyclonParams
from edgeswarm.protocols.membership.messages import Descriptor, ShuffleReply, ShuffleRequest
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.network import NetworkError
from edgeswarm.protocols.peer_id import PeerId

from .config import MembershipConfig

log = logging.getLogger(__name__)


class Membership:
    """Peer sampling for one node.

    Parameters
    ----------
    messenger : Messenger
    config : MembershipConfig
    rng : random.Random
        The node's seeded randomness (peer choice, first-shuffle offset).
    initial : sequence of Descriptor
        The view to start from (the stored one after a restart).
    bootstrap : sequence of Descriptor
        Peers to (re)join through whenever the view is empty.
    known : sequence of (Descriptor, last seen)
        Peers learned earlier (from the store), most recent first; also rejoined through.
    clock : callable
        Time stamps for ``known``.
    """

    MAX_KNOWN = 256

    def __init__(
        self,
        messenger: Messenger,
        config: MembershipConfig,
        rng: random.Random,
        *,
        initial: Sequence[Descriptor] = (),
        bootstrap: Sequence[Descriptor] = (),
        known: Sequence[tuple[Descriptor, float]] = (),
        clock: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self._messenger = messenger
        self._clock = clock
        self._known: OrderedDict[PeerId, tuple[Descriptor, float]] = OrderedDict()
        for d, seen in reversed(known[: self.MAX_KNOWN]):
            self._known[d.peer] = (d, seen)
        self._tell_network(d for d, _ in known)
        self._config = config
        self._rng = rng
        self._bootstrap = tuple(bootstrap)
        local = Descriptor(messenger.local_peer, tuple(messenger.network.addrs()), 0)
        self.cyclon = Cyclon(local, CyclonParams(config.view_size, config.shuffle_length), rng)
        messenger.register(ShuffleRequest, ShuffleReply)
        messenger.on_request(ShuffleRequest, self._on_shuffle)
        self._learn(initial)
        self.cyclon.add(initial)
        if not len(self.cyclon):
            self._rejoin()

    def view(self) -> list[PeerId]:
        return [d.peer for d in self.cyclon.view()]

    def known(self) -> list[tuple[Descriptor, float]]:
        """Peers learned so far with when they were last heard of, most recent first."""
        return list(reversed(self._known.values()))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Shuffle every ``shuffle_interval`` seconds, starting at a random offset."""
        task_status.started()
        await trio.sleep(self._rng.uniform(0, self._config.shuffle_interval))
        while True:
            await self.shuffle_once()
            await trio.sleep(self._config.shuffle_interval)

    async def shuffle_once(self) -> None:
        counters = self._messenger.counters
        if len(self.cyclon) < self._config.view_size:
            self._add_discovered()
        if not len(self.cyclon):
            self._rejoin()
        step = self.cyclon.start_shuffle()
        if step is None:
            counters.add("membership", "isolated")
            return
        target, entries = step
        try:
            reply = await self._messenger.request(
                target, ShuffleRequest(entries), ShuffleReply, timeout=self._config.request_timeout
            )
        except (NetworkError, Rejected) as exc:
            log.debug("shuffle with %s failed: %s", target, exc)
            self.cyclon.on_failure(target)
            counters.add("membership", "shuffle_failed")
            return
        self._learn(reply.entries)
        self.cyclon.on_reply(target, reply.entries)
        counters.add("membership", "shuffle_ok")

    async def _on_shuffle(self, peer: PeerId, request: ShuffleRequest) -> ShuffleReply:
        self._learn(request.entries)
        return ShuffleReply(self.cyclon.on_request(peer, request.entries))

    def _learn(self, entries: Iterable[Descriptor]) -> None:
        """Remember ``entries`` as known peers (seen now) and tell the transport their addresses."""
        entries = [d for d in entries if d.peer != self._messenger.local_peer]
        self._tell_network(entries)
        now = self._clock()
        for d in entries:
            previous = self._known.pop(d.peer, None)
            addrs = d.addrs or (previous[0].addrs if previous else ())
            self._known[d.peer] = (Descriptor(d.peer, addrs, 0), now)
            if len(self._known) > self.MAX_KNOWN:
                self._known.popitem(last=False)

    def _tell_network(self, entries: Iterable[Descriptor]) -> None:
        network = self._messenger.network
        for d in entries:
            if d.addrs and d.peer != self._messenger.local_peer:
                network.add_addrs(d.peer, d.addrs)

    def _add_discovered(self) -> None:
        """Fill free view slots with peers the transport found itself (e.g. mDNS)."""
        found = [Descriptor(peer, tuple(addrs[:8]), 0) for peer, addrs in self._messenger.network.known_peers()]
        self.cyclon.add(self._rng.sample(found, len(found)))

    def _rejoin(self) -> None:
        """Refill an empty view from the bootstrap peers, then the most recently known ones."""
        self._learn(self._bootstrap)
        self.cyclon.add(self._bootstrap)
        self.cyclon.add(d for d, _ in self.known())

"""Membership service: runs Cyclon shuffles on a timer over the node's Messenger.

Discovers the swarm from a few bootstrap peers and keeps a bounded, continuously refreshed
random sample of live peers that other services draw from. Everything heard is also offered
to min-wise samplers (``protocols.membership.samplers``); the view services draw from is
what the samplers hold, so Sybils that shuffle hard fill the Cyclon view, not the sample.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import trio

from edgeswarm.node.config import MembershipConfig
from edgeswarm.protocols.envelope import Rejected
from edgeswarm.protocols.limits import Rate, RateLimiter
from edgeswarm.protocols.membership.cyclon import Cyclon, CyclonParams
from edgeswarm.protocols.membership.messages import MAX_ADDRS, Descriptor, ShuffleReply, ShuffleRequest
from edgeswarm.protocols.membership.samplers import Samplers
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.network import NetworkError, ProtocolUnsupported, deadline
from edgeswarm.protocols.peer_id import PeerId

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
    known : sequence of (Descriptor, last contact)
        Peers met earlier (from the store), most recent first; rejoined through after the
        bootstrap peers.
    clock : callable
        Time stamps for ``known``.

    A peer becomes *known* by direct contact (a shuffle it answered or sent us), not by
    hearsay: that is the evidence worth keeping across a restart. A peer that fails to
    answer is not taken back into the view (from discovery, the known peers or other
    peers' shuffles) for ``shuffle_interval * 2**failures`` seconds (at most an hour); after
    ``FORGET_AFTER`` failures in a row it is no longer known either, here or in the store.

    Sybil resistance (issue 21): no shuffle brings in more than ``shuffle_length`` entries;
    at most ``pushes_per_interval`` incoming shuffles per interval (one per peer) enter the
    Cyclon view; two rounds in three shuffle with a sampled peer rather than Cyclon's oldest,
    which checks that sampled peers are alive; and one sampler is reseeded per round.
    """

    MAX_KNOWN = 256
    FAST_JOIN_ROUNDS = 20
    """A joining node shuffles ten times faster while each round meets new peers, at most
    this many rounds: samplers are only as fair as the set of peers seen, and Sybils that
    push hard are all seen within seconds, so the honest swarm has to be learned fast too."""
    FORGET_AFTER = 3
    MAX_BACKOFF = 3600.0

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
        self._changed: set[PeerId] = set()
        self._failures: OrderedDict[PeerId, tuple[int, float]] = OrderedDict()  # peer -> (in a row, retry after)
        self._forgotten: set[PeerId] = set()
        self._tell_network(d for d, _ in known)
        self._config = config
        self._rng = rng
        self._bootstrap = tuple(bootstrap)
        local = Descriptor(messenger.local_peer, tuple(messenger.network.addrs()[:MAX_ADDRS]), 0)
        self.samplers = Samplers(local.peer, config.samplers, rng) if config.samplers else None
        params = CyclonParams(config.view_size, config.shuffle_length)
        self.cyclon = Cyclon(local, params, rng, mix=self.sample if self.samplers else None)
        self._rounds = 0
        interval = config.shuffle_interval
        self._pushes_per_peer = RateLimiter(Rate(1 / interval, 1), max_keys=self.MAX_KNOWN)
        self._pushes = RateLimiter(Rate(config.pushes_per_interval / interval, config.pushes_per_interval))
        self._offer(initial)
        self._offer(bootstrap)
        self._offer(self._alive(d for d, _ in known))
        messenger.register(ShuffleRequest, ShuffleReply)
        messenger.on_request(ShuffleRequest, self._on_shuffle)
        self._tell_network(initial)
        self.cyclon.add(initial)
        if not len(self.cyclon):
            self._rejoin()

    def view(self) -> list[PeerId]:
        """The peers services draw from."""
        return [d.peer for d in self.sample()]

    def sample(self) -> list[Descriptor]:
        """``view_size`` peers from the samplers (the Cyclon view when they are off): what
        services draw from, and what the store keeps to restart from."""
        if self.samplers is None:
            return self.cyclon.view()
        return self.samplers.sample(self._config.view_size)

    def _offer(self, entries: Iterable[Descriptor]) -> None:
        if self.samplers is not None:
            self.samplers.offer(entries)

    def known(self) -> list[tuple[Descriptor, float]]:
        """Peers met so far with when we last heard from them directly, most recent first."""
        return list(reversed(self._known.values()))

    def take_changed(self) -> list[tuple[Descriptor, float]]:
        """Known peers met since the last call (what a snapshot has to write)."""
        changed = [self._known[p] for p in self._changed if p in self._known]
        self._changed.clear()
        return changed

    def take_forgotten(self) -> list[PeerId]:
        """Known peers dropped for failing since the last call (what a snapshot has to delete)."""
        forgotten, self._forgotten = sorted(self._forgotten), set()
        return forgotten

    def backing_off(self, peer: PeerId) -> bool:
        """Whether ``peer`` failed recently enough that we do not take it back yet."""
        entry = self._failures.get(peer)
        return entry is not None and self._clock() < entry[1]

    def _failed(self, peer: PeerId) -> None:
        count = self._failures.pop(peer, (0, 0.0))[0] + 1
        wait = min(self._config.shuffle_interval * 2**count, self.MAX_BACKOFF)
        self._failures[peer] = (count, self._clock() + wait)
        if len(self._failures) > 4 * self.MAX_KNOWN:
            self._failures.popitem(last=False)
        if self.samplers is not None:
            self.samplers.remove(peer)
        if count >= self.FORGET_AFTER and self._known.pop(peer, None) is not None:
            self._forgotten.add(peer)
            self._changed.discard(peer)
            self._messenger.counters.add("membership", "peers_forgotten")

    def _alive(self, entries: Iterable[Descriptor]) -> list[Descriptor]:
        return [d for d in entries if not self.backing_off(d.peer) and self._member(d.peer)]

    def _member(self, peer: PeerId) -> bool:
        """Whether ``peer`` may speak membership: not known to be a libp2p peer that does not
        (a relay, a bootstrap or DHT peer of another project), which stays a neighbour."""
        return self._messenger.supports(peer, ShuffleRequest) is not False

    def _not_a_member(self, peer: PeerId) -> None:
        """``peer`` answered that it speaks no membership: out of the view and the samplers,
        without the backoff and forgetting of a failure (its connection stays up)."""
        self.cyclon.on_failure(peer)
        if self.samplers is not None:
            self.samplers.remove(peer)
        self._known.pop(peer, None)
        self._messenger.counters.add("membership", "not_members")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Shuffle every ``shuffle_interval`` seconds, starting at a random offset."""
        task_status.started()
        interval = self._config.shuffle_interval
        await trio.sleep(self._rng.uniform(0, interval))
        fast = self.FAST_JOIN_ROUNDS if self.samplers is not None else 0
        while True:
            seen = self.samplers.seen() if self.samplers is not None else 0
            await self.shuffle_once()
            if fast and self.samplers is not None and self.samplers.seen() > seen:
                fast -= 1  # still meeting new peers: keep learning the swarm quickly
                await trio.sleep(interval / 10)
            else:
                fast = 0
                await trio.sleep(interval)

    async def shuffle_once(self) -> None:
        counters = self._messenger.counters
        counters.add("membership", "rounds")
        self._rounds += 1
        if len(self.cyclon) < self._config.view_size:
            self._add_discovered()
        if not len(self.cyclon):
            self._rejoin()
        check = None
        if self.samplers is not None:
            self.samplers.reseed()
            if self._rounds % 3 != 0:
                check = self.samplers.next_to_check(self._config.view_size)
        # our own entry as of now: a relay reservation made since start adds a relayed address
        self.cyclon.local = Descriptor(
            self._messenger.local_peer, tuple(self._messenger.network.addrs()[:MAX_ADDRS]), 0
        )
        step = self.cyclon.start_shuffle(check)
        if step is None:
            counters.add("membership", "isolated")
            return
        target, entries = step
        try:
            with deadline(self._config.request_timeout):
                reply = await self._messenger.request(target.peer, ShuffleRequest(entries), ShuffleReply)
        except ProtocolUnsupported:  # a libp2p peer, not an edgeswarm one: keep it, never shuffle with it
            self._not_a_member(target.peer)
            return
        except (NetworkError, Rejected) as exc:
            log.debug("shuffle with %s failed: %s", target.peer, exc)
            self.cyclon.on_failure(target.peer)
            self._failed(target.peer)
            counters.add("membership", "shuffle_failed")
            return
        self._met(target)
        entries = reply.entries[: self._config.shuffle_length]  # however many the wire allowed
        self._tell_network(entries)
        alive = self._alive(entries)
        self._offer(alive)
        self.cyclon.on_reply(target.peer, alive)
        counters.add("membership", "shuffle_ok")

    async def _on_shuffle(self, peer: PeerId, request: ShuffleRequest) -> ShuffleReply:
        entries = request.entries[: self._config.shuffle_length]  # however many the wire allowed
        self._met(next((d for d in entries if d.peer == peer), Descriptor(peer)))
        self._tell_network(entries)
        alive = self._alive(entries)
        self._offer(alive)  # the samplers weigh each peer once, however often it is pushed
        if not self._take_push(peer):
            self._messenger.counters.add("membership", "pushes_limited")
            alive = []
        return ShuffleReply(self.cyclon.on_request(peer, alive))

    def _take_push(self, peer: PeerId) -> bool:
        """Whether ``peer``'s shuffle may enter the Cyclon view now (Brahms' limited pushes):
        each peer once per interval, and ``pushes_per_interval`` in all."""
        now = trio.current_time()
        if self._pushes.available(None, now) < 1 or not self._pushes_per_peer.take(peer, now):
            return False
        return self._pushes.take(None, now)

    def _met(self, peer: Descriptor) -> None:
        """Record direct contact with ``peer`` (keeping addresses we knew if it sent none)."""
        self._failures.pop(peer.peer, None)
        self._forgotten.discard(peer.peer)
        previous = self._known.pop(peer.peer, None)
        addrs = peer.addrs or (previous[0].addrs if previous else ())
        self._known[peer.peer] = (Descriptor(peer.peer, addrs, 0), self._clock())
        self._changed.add(peer.peer)
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
        found = self._alive(self._rng.sample(found, len(found)))
        self._offer(found)
        self.cyclon.add(found)

    def _rejoin(self) -> None:
        """Refill an empty view from the bootstrap peers, then the most recently known ones."""
        self._tell_network(self._bootstrap)
        # bootstrap peers are always retried, they are how we join; unless they speak no membership
        bootstrap = [d for d in self._bootstrap if self._member(d.peer)]
        self.cyclon.add(bootstrap)
        known = self._alive(d for d, _ in self.known())
        self.cyclon.add(known)
        self._offer([*bootstrap, *known])

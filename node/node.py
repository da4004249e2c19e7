"""The node: one identity, one store and one Network, with its services on top.

``Node.run`` owns a nursery holding every service task (no orphans). ``Node.stop`` is a
graceful stop that saves state; cancelling ``run`` is a crash, as ``kill -9`` would be, and
the node then restarts from what the store last committed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio

from edgeswarm.node.compute import Compute, ThreadCompute
from edgeswarm.node.config import NodeConfig
from edgeswarm.node.control.replies import NodeStatus
from edgeswarm.node.control.waits import Ticks
from edgeswarm.node.identity import Identity
from edgeswarm.node.ranking.ranking import Ranking
from edgeswarm.node.store import SequenceNumbers, Store
from edgeswarm.node.swarm.membership import Membership
from edgeswarm.node.swarm.peer_store import PeerStore
from edgeswarm.node.swarm.ping import PingService
from edgeswarm.node.swarm.presence import Presence
from edgeswarm.protocols import blobs
from edgeswarm.protocols.blobs import BlobShelf
from edgeswarm.protocols.counters import Counters
from edgeswarm.protocols.envelope import Codec, Freshness, ReplayWindow
from edgeswarm.protocols.membership.messages import Descriptor
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.network import Network, RequestRefused
from edgeswarm.protocols.peer_id import PeerId

if TYPE_CHECKING:  # the federation loads torch and Flower only when enabled
    from edgeswarm.node.fl.run_client import FederationHooks


class Node:
    """A node daemon's core, independent of the transport underneath.

    Parameters
    ----------
    identity : Identity
    network : Network
        Already bound to ``identity`` (libp2p host or virtual endpoint).
    store : Store
        Opened by the caller, who also closes it.
    config : NodeConfig
    rng : random.Random
        Seeded randomness for every service of this node.
    clock : callable (default: time.time)
        Seconds since the epoch; the simulator passes virtual time.
    bootstrap : sequence of Descriptor
        Peers to join through when the stored view is empty.
    compute : Compute (default: worker threads)
        Where CPU-bound work runs; the simulator models its duration instead.
    federation_hooks : FederationHooks or None (default: None)
        What the simulator changes in how the federation service answers runs
        (``node.fl.run_client.FederationHooks``).
    """

    def __init__(
        self,
        *,
        identity: Identity,
        network: Network,
        store: Store,
        config: NodeConfig,
        rng: random.Random,
        clock: Callable[[], float] = time.time,
        bootstrap: Sequence[Descriptor] = (),
        compute: Compute | None = None,
        federation_hooks: FederationHooks | None = None,
    ) -> None:
        if network.local_peer != identity.peer_id:
            raise ValueError("the network is bound to another identity")
        self.identity = identity
        self.network = network
        self.store = store
        self.config = config
        self.clock = clock
        self.ticks = Ticks()
        """What waits on this node's state (``edgeswarm wait``) wakes on its counters' changes."""
        self.counters = Counters(on_change=self.ticks.touch)
        env = config.envelope
        codec = Codec(
            identity,
            next_seq=SequenceNumbers(store),
            now=clock,
            freshness=Freshness(env.max_age, env.max_skew),
            replay=ReplayWindow(env.replay_window, env.max_senders),
        )
        self.messenger = Messenger(network, codec, self.counters, config.swarm)
        self.peer_store = PeerStore(store)
        stored = [Descriptor(p, addrs, age) for p, addrs, age in self.peer_store.load_peers()]
        known = [(Descriptor(p, addrs, 0), seen) for p, addrs, seen in self.peer_store.load_known_peers()]
        self.membership = Membership(
            self.messenger, config.membership, rng, initial=stored, bootstrap=bootstrap, known=known, clock=clock
        )
        self.ping = PingService(self.messenger, rng)
        self.presence = Presence(self.messenger, config.presence, rng, clock, self.services)
        self.ranking = (
            Ranking(self.messenger, store, config.ranking, rng, identity, self._pull_candidates, self._met)
            if config.ranking.enabled
            else None
        )
        # payloads too big to inline (models, adapters), served in chunks by hash
        self.shelf = BlobShelf(clock)
        self.messenger.register(*blobs.MESSAGES)
        self.messenger.on_request(blobs.ChunkRequest, self._serve_chunk)
        self.compute = compute or ThreadCompute()
        self.federation = None
        if config.federation.enabled:  # torch and Flower load only when asked for
            from edgeswarm.node.fl.federation import Federation

            self.federation = Federation(
                self.messenger, config.federation, rng, clock, self.compute, self.shelf, federation_hooks, store
            )
        self.adapters = None
        if config.adapters.enabled:  # torch and peft load only when asked for
            from edgeswarm.node.adapters.adapters import Adapters

            self.adapters = Adapters(self.messenger, store, config.adapters, rng, clock, self.compute, self.shelf)
        self._stop = trio.Event()
        self.stopped = trio.Event()
        """Set once a graceful stop has saved state and every service has ended."""

    @property
    def peer_id(self) -> PeerId:
        return self.identity.peer_id

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every service until ``stop()``; report readiness through ``task_status``."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.membership.run)
            if self.config.presence.enabled:
                await nursery.start(self.presence.run)
            if self.ranking is not None and self.config.ranking.anti_entropy_interval > 0:
                await nursery.start(self.ranking.gossip.run)
            if self.federation is not None:
                await nursery.start(self.federation.run)
            if self.adapters is not None:
                await nursery.start(self.adapters.run)
            nursery.start_soon(self._persist_loop)
            task_status.started()
            await self._stop.wait()
            nursery.cancel_scope.cancel()
        self.persist()
        self.stopped.set()

    async def _serve_chunk(self, peer: PeerId, request: blobs.ChunkRequest) -> blobs.Chunk:
        data = self.shelf.chunk(peer, request)
        if data is None:
            raise RequestRefused("no such blob for this peer")
        return blobs.Chunk(data)

    def stop(self) -> None:
        """Ask ``run`` to save state and return."""
        self._stop.set()

    def persist(self) -> None:
        """Commit the view, the known peers and a counters snapshot to the store."""
        now = self.clock()
        self.peer_store.save_peers(((d.peer, d.addrs, d.age) for d in self.membership.sample()), now)
        self.peer_store.save_known_peers((d.peer, d.addrs, seen) for d, seen in self.membership.take_changed())
        self.peer_store.forget_known_peers(self.membership.take_forgotten())
        self.store.save_metrics(now, self.counters.snapshot(), keep=self.config.store.metrics_snapshots_kept)
        self.counters.add("store", "persisted")  # what `edgeswarm wait --counter store.persisted=N` waits for

    async def _persist_loop(self) -> None:
        while True:
            await trio.sleep(self.config.store.persist_interval)
            self.persist()

    def _pull_candidates(self) -> list[PeerId]:
        """Peers to pull click rows from: the view, whose Sybil share the samplers bound.
        Only while it is empty, the peers met most recently and those connected now: Sybils
        that push hard are always the most recent and the most connected. Never a peer known
        only from rows it signed: those cost an attacker nothing to invent."""
        view = self.membership.view()
        if view:
            return view
        recent = [d.peer for d, _ in self.membership.known()[:20]]
        return list(dict.fromkeys([*recent, *sorted(self.network.peers())]))

    def _met(self) -> list[PeerId]:
        """Every peer met directly (the view, and the known peers)."""
        return self.membership.view() + [d.peer for d, _ in self.membership.known()]

    def services(self) -> list[str]:
        """The services this node runs (announced to peers)."""
        optional = {
            "presence": self.config.presence.enabled,
            "ranking": self.config.ranking.enabled,
            "federation": self.config.federation.enabled,
            "adapters": self.config.adapters.enabled,
        }
        return ["membership", "ping", *(name for name, on in optional.items() if on)]

    def status(self, *, gossip: bool = False) -> NodeStatus:
        """What the node looks like now; ``gossip`` adds each topic's gossip reach."""
        reachability = self.network.reachability()
        return NodeStatus(
            peer_id=self.peer_id,
            addresses=self.network.addrs(),
            peers=sorted(self.network.peers()),
            view=self.membership.view(),
            heard_from=len(self.presence.seen()),
            services=self.services(),
            counters=self.counters.snapshot(),
            transport=self.network.stats(),
            gossip=self.network.gossip_peers() if gossip else {},
            nat=reachability.nat,
            relays=list(reachability.relays),
            relayed=list(reachability.relayed),
            relay_service=(
                {"reservations": reachability.reserved_here, "circuits": reachability.circuits_here}
                if reachability.serving
                else None
            ),
        )

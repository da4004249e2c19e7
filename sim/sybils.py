"""Eclipse attackers for the simulator: Sybils that shuffle as hard as they can.

The last ``fraction`` of a scenario's nodes run the ordinary node code with the attacker's
membership swapped in: every shuffle they send or answer holds only Sybil descriptors, as
many as the wire allows (``MAX_SHUFFLE_ENTRIES``); besides their own shuffles each pushes one
to a random honest node every ``push_interval`` seconds; and they know every honest node.
They sit on ``machines`` addresses (one machine holding many keys), or with ``machines = 0``
each on a network of its own (a botnet, the hardest case for address diversity). Honest
nodes get a public address each. Addresses are modelled: the virtual network delivers by id.

``SybilAttack`` also measures what they achieve: the Sybil share of honest nodes' views
(what services draw from) and of their Cyclon views, and how many honest nodes are eclipsed
(every view entry a Sybil).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
import trio

from edgeswarm.node.config import Section
from edgeswarm.protocols.membership.cyclon import Cyclon
from edgeswarm.protocols.membership.messages import MAX_SHUFFLE_ENTRIES, Descriptor, ShuffleReply, ShuffleRequest
from edgeswarm.protocols.network import NetworkError, deadline
from edgeswarm.protocols.peer_id import PeerId

from .determinism import derive_rng
from .host import SimHost

PORT = 4001


class SybilSpec(Section, frozen=True):
    """Eclipse attackers (``[sybils]``): see ``sim.sybils``.

    Parameters
    ----------
    fraction : float (default: 0.0)
        Share of the nodes that are Sybils (the last ones; never a bootstrap node).
    machines : int (default: 1)
        Addresses the Sybils share; 0: each its own network.
    push_interval : float (default: 1.0)
        Seconds between a Sybil's unsolicited shuffles to honest nodes.
    start : float (default: 0.0)
        When the attack begins (virtual seconds).
    """

    fraction: Annotated[float, msgspec.Meta(ge=0.0, le=0.9)] = 0.0
    machines: Annotated[int, msgspec.Meta(ge=0)] = 1
    push_interval: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    start: Annotated[float, msgspec.Meta(ge=0)] = 0.0

    def count(self, nodes: int, bootstrap: int) -> int:
        return min(round(self.fraction * nodes), max(nodes - bootstrap, 0))


def modelled_addresses(spec: SybilSpec, seed: int, nodes: int, sybils: int) -> list[tuple[str, ...]]:
    """An advertised address per node: honest nodes and Sybil machines on distinct /16s."""
    rng = derive_rng(seed, "addresses")
    honest = nodes - sybils
    machines = sybils if spec.machines == 0 else min(spec.machines, max(sybils, 1))
    networks = rng.sample(range(11 * 256, 224 * 256), honest + machines)  # a.b of public-looking /16s

    def address(network: int, port: int) -> str:
        return f"/ip4/{network // 256}.{network % 256}.{rng.randrange(256)}.{rng.randrange(1, 255)}/tcp/{port}"

    addrs = [(address(networks[i], PORT),) for i in range(honest)]
    hosts = [address(networks[honest + m], PORT) for m in range(machines)]
    for j in range(sybils):
        ip = hosts[j % machines].rsplit("/tcp/", 1)[0]
        addrs.append((f"{ip}/tcp/{PORT + j}",))  # one machine: one IP, a port per key
    return addrs


class SybilCyclon(Cyclon):
    """The attacker's membership: shuffles with honest nodes, sends and answers only Sybils."""

    def __init__(self, honest: Cyclon, sybils: Sequence[Descriptor], targets: Sequence[PeerId], rng: random.Random):
        super().__init__(honest.local, honest.params, rng)
        self._others = [d for d in sybils if d.peer != honest.local.peer]
        self._targets = list(targets)

    def poison(self) -> tuple[Descriptor, ...]:
        return (self.local, *self._rng.sample(self._others, min(MAX_SHUFFLE_ENTRIES - 1, len(self._others))))

    def start_shuffle(self, target: Descriptor | None = None) -> tuple[Descriptor, tuple[Descriptor, ...]] | None:
        return Descriptor(self._rng.choice(self._targets)), self.poison()

    def on_request(self, sender: PeerId, entries: Any) -> tuple[Descriptor, ...]:
        return self.poison()

    def on_reply(self, target: PeerId, entries: Any) -> None:
        pass


class SybilAttack:
    """Runs the Sybils of a scenario and measures the share of honest views they hold."""

    def __init__(self, spec: SybilSpec, seed: int, hosts: Sequence[SimHost], sybils: int) -> None:
        self.spec = spec
        self.honest = list(hosts[: len(hosts) - sybils])
        self.sybils = list(hosts[len(hosts) - sybils :])
        self._ids = {h.identity.peer_id for h in self.sybils}
        self._descriptors = [Descriptor(h.identity.peer_id, h.addrs) for h in self.sybils]
        self._rng = derive_rng(seed, "sybils")
        self.series: list[dict[str, float]] = []

    async def run(self) -> None:
        """From ``start``, every ``push_interval``: each online Sybil pushes to an honest node."""
        await trio.sleep_until(self.spec.start)
        async with trio.open_nursery() as pushes:
            while True:
                for host in self.sybils:
                    if host.node is not None:
                        pushes.start_soon(self._push, host)
                await trio.sleep(self.spec.push_interval)

    def _attacker(self, host: SimHost) -> SybilCyclon | None:
        node = host.node
        if node is None:
            return None
        membership = node.membership
        if not isinstance(membership.cyclon, SybilCyclon):  # (again) after each restart
            targets = [h.identity.peer_id for h in self.honest]
            membership.cyclon = SybilCyclon(membership.cyclon, self._descriptors, targets, self._rng)
        return membership.cyclon

    async def _push(self, host: SimHost) -> None:
        attacker = self._attacker(host)
        if attacker is None or host.node is None:
            return
        target, entries = attacker.start_shuffle()
        try:
            with deadline(5.0):
                await host.node.messenger.request(target.peer, ShuffleRequest(entries), ShuffleReply)
        except NetworkError:
            pass

    def sample(self, t: float) -> None:
        """One row of ``sybil_series``: the Sybil share of online honest nodes' views."""
        if t >= self.spec.start:
            for host in self.sybils:
                self._attacker(host)
        views, cyclons = [], []
        for host in self.honest:
            if host.node is None:
                continue
            views.append(self._share(host.node.membership.view()))
            cyclons.append(self._share([d.peer for d in host.node.membership.cyclon.view()]))
        if not views:
            return
        self.series.append(
            {
                "t": round(t, 3),
                "view_share_mean": round(statistics.fmean(views), 6),
                "view_share_max": round(max(views), 6),
                "eclipsed": sum(1 for s in views if s >= 1.0),
                "cyclon_share_mean": round(statistics.fmean(cyclons), 6),
            }
        )

    def _share(self, view: Sequence[PeerId]) -> float:
        return sum(1 for p in view if p in self._ids) / len(view) if view else 0.0

    def report(self) -> dict[str, Any]:
        """Final metrics over the second half of the samples (after the views settle)."""
        population = len(self.sybils) / (len(self.sybils) + len(self.honest))
        settled = self.series[len(self.series) // 2 :]
        if not settled:
            return {"sybil_population_share": round(population, 6)}
        mean = statistics.fmean(r["view_share_mean"] for r in settled)
        return {
            "sybil_population_share": round(population, 6),
            "sybil_view_share": round(mean, 6),
            "sybil_view_share_ratio": round(mean / population, 6) if population else 0.0,
            "sybil_view_share_max_node": max(r["view_share_max"] for r in settled),
            "sybil_cyclon_share": round(statistics.fmean(r["cyclon_share_mean"] for r in settled), 6),
            "eclipsed_nodes_max": max(int(r["eclipsed"]) for r in self.series),
        }

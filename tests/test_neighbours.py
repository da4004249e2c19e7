"""Neighbours that are not nodes of our swarm: libp2p peers of other projects, and nodes of a
differently named swarm met on a shared relay. Both stay out of the view, the pulls and the
gossip. On the virtual network, where the transport knows every peer's protocols at once."""

import random

import msgspec
import trio

from edgeswarm.node.config import MembershipConfig, NodeConfig, PresenceConfig, RankingConfig
from edgeswarm.node.node import Node
from edgeswarm.node.store import Store
from edgeswarm.protocols.membership.messages import Descriptor
from edgeswarm.sim.virtual_network import LinkModel, VirtualNetwork

from conftest import identity, run_virtual


def test_a_neighbour_that_speaks_no_membership_is_never_put_in_the_view():
    """The same rule where the transport knows every peer's protocols at once: a bootstrap peer
    that serves only a protocol of its own is not shuffled with even once."""
    config = NodeConfig(
        membership=MembershipConfig(shuffle_interval=1.0),
        presence=PresenceConfig(enabled=False),
        ranking=RankingConfig(anti_entropy_interval=1.0, anti_entropy_max_interval=1.0),
    )
    other = identity(9).peer_id

    async def echo(peer, data: bytes) -> bytes:
        return data

    async def main():
        net = VirtualNetwork(random.Random(0), LinkModel(latency_sigma=0))
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            async with (
                net.attach(other) as foreign,
                net.attach(identity(1).peer_id) as ea,
                net.attach(identity(2).peer_id) as eb,
            ):
                foreign.serve("/other-project/1", echo)
                nodes = []
                for k, endpoint in ((1, ea), (2, eb)):
                    node = Node(
                        identity=identity(k),
                        network=endpoint,
                        store=Store.open(":memory:"),
                        config=config,
                        rng=random.Random(k),
                        bootstrap=[Descriptor(other), Descriptor(identity(3 - k).peer_id)],
                    )
                    await nursery.start(node.run)
                    nodes.append(node)
                await trio.sleep(60)
                for node in nodes:
                    status = node.status()
                    assert other not in status.view and status.view  # the other edgeswarm node is
                    assert "shuffle_failed" not in status.counters["membership"]
                    assert "pull_failed" not in status.counters.get("ranking", {})
                nursery.cancel_scope.cancel()

    run_virtual(main)


def test_nodes_of_two_named_swarms_that_know_each_other_never_mix():
    """Six nodes of swarm "red" and six of "blue", each bootstrapped from two of either: every
    view ends up holding its own swarm only, and presence is heard only from it."""
    config = NodeConfig(
        membership=MembershipConfig(shuffle_interval=1.0, view_size=8, shuffle_length=4),
        presence=PresenceConfig(interval=1.0),
        ranking=RankingConfig(anti_entropy_interval=1.0, anti_entropy_max_interval=1.0),
    )
    swarms = {k: ("red" if k % 2 else "blue") for k in range(1, 13)}

    async def main():
        net = VirtualNetwork(random.Random(0), LinkModel(latency_sigma=0))
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            nodes = {}
            async with trio.open_nursery() as attach:
                endpoints = {}

                async def hold(k: int, ready: trio.Event) -> None:
                    async with net.attach(identity(k).peer_id) as endpoint:
                        endpoints[k] = endpoint
                        ready.set()
                        await trio.sleep_forever()

                for k in swarms:
                    ready = trio.Event()
                    attach.start_soon(hold, k, ready)
                    await ready.wait()
                for k, swarm in swarms.items():
                    node = Node(
                        identity=identity(k),
                        network=endpoints[k],
                        store=Store.open(":memory:"),
                        config=msgspec.structs.replace(config, swarm=swarm),
                        rng=random.Random(k),
                        bootstrap=[Descriptor(identity(j).peer_id) for j in (1, 2, k % 12 + 1)],
                    )
                    await nursery.start(node.run)
                    nodes[k] = node
                await trio.sleep(120)
                for k, node in nodes.items():
                    same = {identity(j).peer_id for j, s in swarms.items() if s == swarms[k]}
                    status = node.status()
                    assert status.view and set(status.view) <= same, (k, status.view)
                    assert set(node.presence.seen()) <= same and len(node.presence.seen()) == 5
                attach.cancel_scope.cancel()
            nursery.cancel_scope.cancel()

    run_virtual(main)

"""One service test, two transports: the virtual network (virtual time) and real libp2p."""

import random
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
import trio.testing

from edgeswarm.node.config import MembershipConfig, NodeConfig, PresenceConfig
from edgeswarm.node.node import Node
from edgeswarm.node.store import Store
from edgeswarm.protocols.membership.messages import Descriptor
from edgeswarm.sim.virtual_network import LinkModel, VirtualNetwork

from conftest import identity, until

CONFIG = NodeConfig(
    membership=MembershipConfig(view_size=4, shuffle_length=2, shuffle_interval=1.0, request_timeout=3.0),
    presence=PresenceConfig(interval=1.0),
)
N = 4


@asynccontextmanager
async def virtual_networks(nursery):
    net = VirtualNetwork(random.Random(0), LinkModel())
    await nursery.start(net.run)
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(net.attach(identity(i).peer_id)) for i in range(N)]


@asynccontextmanager
async def libp2p_networks(nursery):
    from edgeswarm.protocols.libp2p_network import Libp2pNetwork

    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(Libp2pNetwork.open(identity(i).seed())) for i in range(N)]


async def exercise(open_networks):
    """Nodes 1..3 know only node 0; they must find each other, gossip and move 1 MiB."""
    async with trio.open_nursery() as nursery, open_networks(nursery) as networks:
        seed = Descriptor(networks[0].local_peer, tuple(networks[0].addrs()))
        nodes = [
            Node(
                identity=identity(i),
                network=net,
                store=Store.open(":memory:"),
                config=CONFIG,
                rng=random.Random(i),
                clock=lambda: 1.8e9 + trio.current_time(),
                bootstrap=[seed] if i else [],
            )
            for i, net in enumerate(networks)
        ]
        for node in nodes:
            await nursery.start(node.run)
        await until(
            lambda: (
                all(len(node.membership.view()) == N - 1 or len(node.status().peers) == N - 1 for node in nodes)
                and all(node.status().heard_from >= N - 1 for node in nodes)
            )
        )
        everyone = {node.peer_id for node in nodes}
        for node in nodes:
            status = node.status()
            assert set(status.view) | set(status.peers) == everyone - {node.peer_id}
            assert status.heard_from == N - 1
        result = await nodes[3].ping.ping(nodes[0].peer_id, 1 << 20)
        assert result.intact and result.bytes == 1 << 20
        assert all("rejects" not in node.status().counters for node in nodes)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("transport", ["virtual", "libp2p"])
def test_discovery_gossip_and_transfer(transport):
    if transport == "virtual":
        trio.run(exercise, virtual_networks, clock=trio.testing.MockClock(autojump_threshold=0))
    else:
        trio.run(exercise, libp2p_networks)

"""A node on the virtual network: misbehaving peers are counted and dropped; crashes recover."""

import random

import msgspec
import pytest
import trio

from edgeswarm.node.config import MembershipConfig, NodeConfig
from edgeswarm.node.node import Node
from edgeswarm.node.store import Store
from edgeswarm.node.swarm.peer_store import PeerStore
from edgeswarm.protocols.envelope import Codec, Envelope
from edgeswarm.protocols.membership.messages import Descriptor, ShuffleReply, ShuffleRequest
from edgeswarm.protocols.messenger import protocol_id
from edgeswarm.protocols.network import RequestRefused, deadline
from edgeswarm.sim.virtual_network import LinkModel, VirtualNetwork

from conftest import identity, run_virtual

EPOCH = 1_800_000_000.0
CONFIG = NodeConfig(membership=MembershipConfig(view_size=4, shuffle_length=2, shuffle_interval=10.0))
SHUFFLE = protocol_id(ShuffleRequest)


def clock():
    return EPOCH + trio.current_time()


def make_node(n, endpoint, store, bootstrap=()):
    return Node(
        identity=identity(n),
        network=endpoint,
        store=store,
        config=CONFIG,
        rng=random.Random(n),
        clock=clock,
        bootstrap=[Descriptor(identity(b).peer_id) for b in bootstrap],
    )


def attacker_codec(n):
    counter = iter(range(10**6))
    codec = Codec(identity(n), next_seq=lambda: next(counter), now=clock)
    codec.register(ShuffleRequest, ShuffleReply)
    return codec


def bad_envelopes(codec, request):
    """One envelope per rejection reason, as attacker 9 would send them."""
    valid = codec.seal(request)
    env = msgspec.msgpack.decode(codec.seal(request), type=Envelope)
    stale = Codec(identity(9), next_seq=lambda: 10**6, now=lambda: EPOCH - 10_000)
    stale.register(ShuffleRequest, ShuffleReply)
    return valid, {  # innocent-looking first, then the three offences that get 9 refused
        "replay": valid,
        "stale": stale.seal(request),
        "wrong_sender": attacker_codec(8).seal(request),  # valid signature, not the sending peer
        "malformed": b"\x93garbage",
        "oversize": msgspec.msgpack.encode(
            Envelope(env.kind, env.sender, env.seq + 6, env.ts, b"\x00" * 32_800, env.sig)
        ),
        "bad_signature": msgspec.msgpack.encode(Envelope(**{**msgspec.structs.asdict(env), "seq": env.seq + 5})),
    }


def test_every_bad_envelope_is_refused_counted_and_the_node_keeps_serving():
    async def main():
        net = VirtualNetwork(random.Random(0), LinkModel(latency_sigma=0))
        async with trio.open_nursery() as n:
            await n.start(net.run)
            async with (
                net.attach(identity(1).peer_id) as ep,
                net.attach(identity(9).peer_id) as evil,
                net.attach(identity(10).peer_id) as relay,
            ):
                node = make_node(1, ep, Store.open(":memory:"))
                await n.start(node.run)
                codec = attacker_codec(9)
                request = ShuffleRequest((Descriptor(identity(9).peer_id),))
                valid, bad = bad_envelopes(codec, request)
                with deadline(5):
                    reply = codec.open(await evil.request(node.peer_id, SHUFFLE, valid), ShuffleReply)
                assert reply.sender == node.peer_id
                for reason, data in bad.items():
                    sender = relay if reason == "wrong_sender" else evil
                    with pytest.raises(RequestRefused, match=reason), deadline(5):
                        await sender.request(node.peer_id, SHUFFLE, data)
                status = node.status()
                assert status.counters["rejects"] == dict.fromkeys(sorted(bad), 1)
                # malformed, oversize, bad signature and wrong sender are offences: the
                # third got the attacker refused; stale and replay may be innocent
                assert status.transport["offences"] == 4 and status.transport["peers_banned"] == 1
                with pytest.raises(RequestRefused, match="refused for misbehaving"), deadline(5):
                    await evil.request(node.peer_id, SHUFFLE, codec.seal(request))
                # an honest peer is still served
                async with net.attach(identity(3).peer_id) as honest:
                    friend = attacker_codec(3)
                    with deadline(5):
                        data = await honest.request(node.peer_id, SHUFFLE, friend.seal(request_from(3)))
                    assert isinstance(friend.open(data).body, ShuffleReply)
                assert node.status().counters["msgs_in"]["membership.shuffle"] == 2
            n.cancel_scope.cancel()

    run_virtual(main)


def request_from(n):
    return ShuffleRequest((Descriptor(identity(n).peer_id),))


def test_oversize_frames_are_refused_before_decoding():
    async def main():
        net = VirtualNetwork(random.Random(0), LinkModel(latency_sigma=0))
        async with trio.open_nursery() as n:
            await n.start(net.run)
            async with net.attach(identity(1).peer_id) as ep, net.attach(identity(9).peer_id) as evil:
                node = make_node(1, ep, Store.open(":memory:"))
                await n.start(node.run)
                with pytest.raises(RequestRefused, match="bytes >"), deadline(5):
                    await evil.request(node.peer_id, SHUFFLE, b"\x00" * 40_000)
                status = node.status()
                assert status.transport["offences"] == 1 and "rejects" not in status.counters
            n.cancel_scope.cancel()

    run_virtual(main)


def test_crashed_node_restarts_from_its_store_and_peers_accept_it(tmp_path):
    """The stored view comes back, and sequence numbers continue above any used before."""

    async def main():
        net = VirtualNetwork(random.Random(0), LinkModel(latency_sigma=0))
        store_path = tmp_path / "a.sqlite"
        async with trio.open_nursery() as n:
            await n.start(net.run)
            peers = []
            for i in range(2, 6):  # four other nodes that bootstrap through node 2
                cm = net.attach(identity(i).peer_id)
                ep = await n.start(_hold, cm)
                node = make_node(i, ep, Store.open(":memory:"), bootstrap=[2])
                await n.start(node.run)
                peers.append(node)
            with trio.CancelScope() as crash:
                async with net.attach(identity(1).peer_id) as ep:
                    a = make_node(1, ep, Store.open(store_path), bootstrap=[2])
                    await n.start(a.run)
                    await trio.sleep(125)  # two persist intervals, a dozen shuffles
                    stored_view = [p for p, _, _ in PeerStore(Store.open(store_path)).load_peers()]
                    assert len(stored_view) >= 2
                    crash.cancel()
            async with net.attach(identity(1).peer_id) as ep:
                again = make_node(1, ep, Store.open(store_path), bootstrap=[])
                # from the store, not bootstrap
                assert [d.peer for d in again.membership.cyclon.view()] == stored_view
                assert set(stored_view) <= set(again.membership.view())
                await n.start(again.run)
                await trio.sleep(60)
                # every shuffle of the new session is accepted: had its sequence numbers
                # restarted from 0, peers would refuse them as replays
                assert again.status().counters["membership"] == {"rounds": 6, "shuffle_ok": 6}
            n.cancel_scope.cancel()

    run_virtual(main)


async def _hold(cm, *, task_status):
    async with cm as endpoint:
        task_status.started(endpoint)
        await trio.sleep_forever()


def test_graceful_stop_persists_view_and_counters():
    async def main():
        net = VirtualNetwork(random.Random(0), LinkModel(latency_sigma=0))
        store_a, store_b = Store.open(":memory:"), Store.open(":memory:")
        async with trio.open_nursery() as n:
            await n.start(net.run)
            async with net.attach(identity(1).peer_id) as ea, net.attach(identity(2).peer_id) as eb:
                a = make_node(1, ea, store_a, bootstrap=[2])
                b = make_node(2, eb, store_b)
                await n.start(b.run)
                async with trio.open_nursery() as lifetime:
                    await lifetime.start(a.run)
                    await trio.sleep(25)
                    view = a.membership.view()
                    a.stop()  # run() returns once state is saved
            n.cancel_scope.cancel()
        assert [p for p, _, _ in PeerStore(store_a).load_peers()] == view
        ts, counters = store_a.latest_metrics()
        assert ts == EPOCH + 25 and counters["membership"]["shuffle_ok"] >= 2

    run_virtual(main)

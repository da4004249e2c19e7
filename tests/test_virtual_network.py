"""The virtual network, asserted in exact virtual time."""

import random

import pytest
import trio
import trio.lowlevel

from edgeswarm.protocols.network import (
    SUBSCRIPTION_BUFFER,
    PeerUnreachable,
    ProtocolUnsupported,
    RequestRefused,
    RequestTimeout,
    deadline,
)
from edgeswarm.sim.virtual_network import LinkModel, VirtualNetwork

from conftest import identity, run_virtual

A, B, C = (identity(n).peer_id for n in range(3))
LATENCY = 0.1
UPLINK = 1000.0  # bytes per second


def network(**link) -> VirtualNetwork:
    return VirtualNetwork(random.Random(0), LinkModel(latency_median=LATENCY, latency_sigma=0.0, **link))


async def echo(peer, data):
    return data[:50]


def test_request_time_is_transmission_plus_latency_both_ways():
    async def main():
        net = network()
        async with trio.open_nursery() as n:
            await n.start(net.run)
            async with net.attach(A, uplink_bytes_per_s=UPLINK) as a, net.attach(B, uplink_bytes_per_s=UPLINK) as b:
                b.serve("/echo", echo)
                with deadline(5):
                    reply = await a.request(B, "/echo", b"x" * 100)
                assert reply == b"x" * 50
                # 100 B / 1000 B/s + 0.1 s there, 50 B / 1000 B/s + 0.1 s back
                assert trio.current_time() == pytest.approx(0.35)
                assert a.peers() == {B} and b.peers() == {A}
            n.cancel_scope.cancel()

    run_virtual(main)


def test_uplink_serialises_concurrent_messages():
    async def main():
        net = network()
        done = {}
        async with trio.open_nursery() as n:
            await n.start(net.run)
            async with net.attach(A, uplink_bytes_per_s=UPLINK) as a, net.attach(B, uplink_bytes_per_s=1e9) as b:
                b.serve("/echo", empty)

                async def send(tag):
                    with deadline(10):
                        await a.request(B, "/echo", b"y" * 1000)
                    done[tag] = trio.current_time()

                async with trio.open_nursery() as senders:
                    senders.start_soon(send, "first")
                    await trio.lowlevel.checkpoint()
                    senders.start_soon(send, "second")
            n.cancel_scope.cancel()
        # each 1000 B request takes 1 s of A's uplink; the reply (0 B) only the latency
        assert done == {"first": pytest.approx(1.2), "second": pytest.approx(2.2)}

    run_virtual(main)


async def empty(peer, data):
    return b""


@pytest.mark.parametrize("setup", ["loss", "partition"])
def test_lost_or_partitioned_requests_time_out_exactly(setup):
    async def main():
        net = network(loss=1.0 if setup == "loss" else 0.0)
        if setup == "partition":
            net.partition({A: 0, B: 1})
        async with trio.open_nursery() as n:
            await n.start(net.run)
            async with net.attach(A) as a, net.attach(B) as b:
                b.serve("/echo", echo)
                with pytest.raises(RequestTimeout), deadline(3):
                    await a.request(B, "/echo", b"x")
                assert trio.current_time() == pytest.approx(3.0)
                assert a.stats()["requests_abandoned"] == 1
                net.heal()
                if setup == "partition":
                    with deadline(3):
                        assert await a.request(B, "/echo", b"ok") == b"ok"
            n.cancel_scope.cancel()

    run_virtual(main)


def test_offline_peer_is_unreachable_after_a_round_trip():
    async def main():
        net = network()
        async with trio.open_nursery() as n:
            await n.start(net.run)
            async with net.attach(A, uplink_bytes_per_s=UPLINK) as a:
                with pytest.raises(PeerUnreachable), deadline(5):
                    await a.request(B, "/echo", b"x" * 100)
                assert trio.current_time() == pytest.approx(0.3)
            n.cancel_scope.cancel()

    run_virtual(main)


def test_refusals_and_unknown_protocols_reach_the_requester():
    async def refuse(peer, data):
        raise RequestRefused("no thanks")

    async def main():
        net = network()
        async with trio.open_nursery() as n:
            await n.start(net.run)
            async with net.attach(A) as a, net.attach(B) as b:
                b.serve("/refuse", refuse)
                with pytest.raises(RequestRefused, match="no thanks"), deadline(5):
                    await a.request(B, "/refuse", b"x")
                with pytest.raises(ProtocolUnsupported, match="does not speak"), deadline(5):
                    await a.request(B, "/missing", b"x")
                assert b.stats() == {"requests_refused": 1}
            n.cancel_scope.cancel()

    run_virtual(main)


def test_going_offline_drops_connections_and_pending_replies():
    async def slow(peer, data):
        await trio.sleep(10)
        return data

    async def main():
        net = network()
        async with trio.open_nursery() as n:
            await n.start(net.run)
            async with net.attach(A) as a:
                async with net.attach(B) as b:
                    b.serve("/slow", slow)
                    b.serve("/echo", echo)
                    with deadline(5):
                        await a.request(B, "/echo", b"x")
                    assert a.peers() == {B}
                    with trio.move_on_after(1):
                        with deadline(5):
                            await a.request(B, "/slow", b"x")
                assert a.peers() == set() and net.online() == [A]
            n.cancel_scope.cancel()

    run_virtual(main)


def test_pubsub_reaches_reachable_subscribers_and_counts_overflow():
    async def main():
        net = network()
        async with trio.open_nursery() as n:
            await n.start(net.run)
            async with net.attach(A) as a, net.attach(B) as b, net.attach(C) as c:
                from_b = b.subscribe("t")
                from_c = c.subscribe("t")
                net.partition({C: 1})
                await a.publish("t", b"hello")
                message = await from_b.receive()
                assert (message.topic, message.origin, message.data) == ("t", A, b"hello")
                assert trio.current_time() == pytest.approx(LATENCY + 5 / 1.25e6)
                for i in range(SUBSCRIPTION_BUFFER + 10):
                    await a.publish("t", b"%d" % i)
                await trio.sleep(1)
                assert b.stats()["pubsub_dropped_overflow"] == 10
                with pytest.raises(trio.WouldBlock):
                    from_c.receive_nowait()  # partitioned away
            n.cancel_scope.cancel()

    run_virtual(main)


def test_same_seed_same_latencies():
    def latencies(seed):
        rng = random.Random(seed)
        link = LinkModel()
        return [link.sample_latency(rng) for _ in range(5)]

    assert latencies(1) == latencies(1) != latencies(2)

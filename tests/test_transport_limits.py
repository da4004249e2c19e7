"""Attacks on the libp2p transport, in one process on loopback: each bound holds, others are served.

Real py-libp2p hosts on the real clock; every wait ends at its event (``conftest.until``),
bounded only against a hang.
"""

import socket
import struct

import pytest
import trio
import trio.testing

from edgeswarm.protocols.libp2p_network import Libp2pNetwork
from edgeswarm.protocols.limits import ByteBudget, Rate, RateLimiter, SlotLimiter, TransportLimits
from edgeswarm.protocols.network import NetworkError, ProtocolUnsupported, RequestRefused, deadline

from conftest import FAILURE_BOUND, identity, until

ECHO = "/edgeswarm/test-echo/1"


async def echo(peer, data: bytes) -> bytes:
    return data[:16]


async def served(limits: TransportLimits, nursery_fn):
    async with Libp2pNetwork.open(identity(1).seed(), limits=limits) as server:
        server.serve(ECHO, echo, max_request_bytes=2 * 1024 * 1024)
        await nursery_fn(server)


def test_rate_limiter_slots_and_budget_by_hand():
    rate = RateLimiter(Rate(per_second=2.0, burst=3.0), max_keys=2)
    assert [rate.take("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert rate.take("a", 0.5)  # one token back after half a second
    assert not rate.take("a", 0.5)
    assert rate.take_up_to("b", 0.0, 10) == 3
    rate.take("c", 0.0)  # "a" is the least recently used of three keys: forgotten, full again
    assert rate.available("a", 0.6) == 3.0
    slots = SlotLimiter(total=3, per_key=2)
    assert [slots.acquire("x"), slots.acquire("x"), slots.acquire("x")] == [None, None, "per_key"]
    assert slots.acquire("y") is None and slots.acquire("z") == "total"
    slots.release("x")
    assert slots.acquire("z") is None and slots.held == 3
    fair = SlotLimiter(total=2, per_key=2, reserve=1)
    assert [fair.acquire("x"), fair.acquire("x"), fair.acquire("x")] == [None, None, "total"]
    assert fair.acquire("y") is None  # full, but "y" holds nothing: it takes the reserve
    assert fair.acquire("y") == "total" and fair.acquire("z") == "total"  # the reserve is spent
    budget = ByteBudget(total=100, per_key=70)
    assert budget.reserve("a", 60) is None and budget.reserve("a", 11) == "per_key"
    assert budget.reserve("b", 41) == "total" and budget.reserve("b", 40) is None
    budget.release("a", 60)
    budget.release("b", 40)
    assert budget.reserved == 0


def test_silent_sockets_from_one_ip_cannot_lock_out_new_peers():
    """260 sockets that never handshake (py-libp2p alone admits 250 at once for 10 s)."""

    async def attack(server: Libp2pNetwork) -> None:
        host, port = server.addrs()[0].split("/")[2], int(server.addrs()[0].split("/")[4])
        silent = []
        for _ in range(260):
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.setblocking(False)
            try:
                s.connect((host, port))
            except BlockingIOError:
                pass
            silent.append(s)
        await until(lambda: server.stats().get("connections_refused_per_key", 0) > 0)  # the 33rd is refused
        async with Libp2pNetwork.open(identity(2).seed()) as honest:
            honest.add_addrs(server.local_peer, server.addrs())
            with deadline(FAILURE_BOUND):
                assert await honest.request(server.local_peer, ECHO, b"hello") == b"hello"
        assert server._connections.held_by("127.0.0.2") <= 32
        for s in silent:
            s.close()

    trio.run(served, TransportLimits(eclipse_protection=False), attack)


def test_request_bytes_in_flight_are_bounded_across_peers():
    """Slow senders declare 2 MiB requests and trickle them: the global budget says no."""
    limits = TransportLimits(eclipse_protection=False, inflight_request_bytes=4 * 1024 * 1024)

    async def attack(server: Libp2pNetwork) -> None:
        from libp2p.custom_types import TProtocol
        from libp2p.peer.id import ID

        async with Libp2pNetwork.open(identity(3).seed()) as evil:
            evil.add_addrs(server.local_peer, server.addrs())
            await evil.connect(server.addrs()[0])
            streams = []
            for _ in range(6):  # 6 x 2 MiB declared, 4 MiB allowed at once
                stream = await evil._host.new_stream(ID.from_base58(server.local_peer), [TProtocol(ECHO)])
                await stream.write(struct.pack(">I", 2 * 1024 * 1024) + b"x" * 1024)
                streams.append(stream)
            await until(lambda: server.stats().get("requests_refused_memory_total", 0) >= 4)
            async with Libp2pNetwork.open(identity(4).seed()) as honest:  # others still get answers
                honest.add_addrs(server.local_peer, server.addrs())
                with deadline(FAILURE_BOUND):
                    assert await honest.request(server.local_peer, ECHO, b"hi") == b"hi"

    trio.run(served, limits, attack)


def test_requests_refused_unread_tell_small_senders_why_and_leave_no_bytes_behind():
    """``admit`` refuses before the body is used: its bytes are dropped as they come, not kept
    (py-libp2p keeps up to 256 KB of a reset stream for 60 s), and the sender is told why."""
    refuse = "/edgeswarm/test-refuse/1"

    def unread_bytes(net: Libp2pNetwork) -> int:
        conns = [c for cs in net._host.get_network().connections.values() for c in cs]
        return sum(len(b) for c in conns for b in c.muxed_conn.stream_buffers.values())

    async def attack(server: Libp2pNetwork) -> None:
        server.serve(refuse, echo, max_request_bytes=2 * 1024 * 1024, admit=lambda peer, size: "no room now")
        async with Libp2pNetwork.open(identity(5).seed()) as sender:
            sender.add_addrs(server.local_peer, server.addrs())
            for size in (5, *[1024 * 1024] * 8):
                with deadline(FAILURE_BOUND), pytest.raises(RequestRefused, match="no room now"):
                    await sender.request(server.local_peer, refuse, b"x" * size)
            assert server.stats()["requests_refused_unread"] == 9
            assert "requests_served" not in server.stats()
            await trio.sleep(0.2)  # whatever was still in flight has arrived
            assert unread_bytes(server) == 0
            with deadline(FAILURE_BOUND):  # the connection still serves
                assert await sender.request(server.local_peer, ECHO, b"hello") == b"hello"

    trio.run(served, TransportLimits(eclipse_protection=False), attack)


def test_a_gossip_flood_is_cut_at_the_per_origin_rate_and_the_flooder_dropped():
    limits = TransportLimits(eclipse_protection=False, gossip_per_origin=Rate(5.0, 10.0))

    async def main() -> None:
        async with (
            Libp2pNetwork.open(identity(5).seed(), limits=limits) as server,
            Libp2pNetwork.open(identity(6).seed(), limits=TransportLimits(eclipse_protection=False)) as evil,
        ):
            received = server.subscribe("flood")
            evil.subscribe("flood")
            await evil.connect(server.addrs()[0])
            await until(lambda: evil.gossip_peers()["flood"] >= 1)  # the mesh holds both: a publish gets through
            for n in range(200):
                try:
                    await evil.publish("flood", b"spam %d" % n)
                except NetworkError:
                    break
            # the server cuts the flooder off at the rate, and hangs up on it
            await until(lambda: server.stats().get("offences", 0) >= 1 and evil.local_peer not in server.peers())
            await trio.testing.wait_all_tasks_blocked()  # what got in before that has been delivered
            delivered = 0
            while True:
                try:
                    received.receive_nowait()
                    delivered += 1
                except trio.WouldBlock:
                    break
            stats = server.stats()
            assert delivered <= 12  # the burst of 10, and a token or two refilled meanwhile
            assert stats["gossip_dropped_rate"] >= 1 and stats["offences"] >= 1

    trio.run(main)


def test_connections_that_come_and_go_give_their_slots_back():
    """py-libp2p's own inbound handler held a slot until the host stopped: the 250th connection
    in a daemon's life was its last. With 8 slots per IP, 24 peers connect and leave in turn."""
    limits = TransportLimits(eclipse_protection=False, connections_per_ip=8)

    async def churn(server: Libp2pNetwork) -> None:
        for n in range(24):
            async with Libp2pNetwork.open(identity(100 + n).seed(), limits=limits) as visitor:
                visitor.add_addrs(server.local_peer, server.addrs())
                with deadline(FAILURE_BOUND):
                    assert await visitor.request(server.local_peer, ECHO, b"hi") == b"hi"
        await until(lambda: not server._connections.held)
        assert "connections_refused_per_key" not in server.stats()

    trio.run(served, limits, churn)


def test_a_peer_that_does_not_speak_a_protocol_is_told_so_and_kept_not_redialled():
    """Its "na" is an answer over a live connection: hanging up and redialling, as for a dead
    connection, used to call back every peer that runs no edgeswarm service (and offenders)."""

    async def ask(server: Libp2pNetwork) -> None:
        async with Libp2pNetwork.open(identity(7).seed()) as client:
            client.add_addrs(server.local_peer, server.addrs())
            with deadline(FAILURE_BOUND):
                assert await client.request(server.local_peer, ECHO, b"hi") == b"hi"
                with pytest.raises(ProtocolUnsupported, match="does not speak /edgeswarm/nothing/1"):
                    await client.request(server.local_peer, "/edgeswarm/nothing/1", b"hi")
                assert await client.request(server.local_peer, ECHO, b"again") == b"again"
            stats = client.stats()
            assert stats["protocol_unsupported"] == 1 and "streams_redialled" not in stats
            assert "peers_disconnected" not in server.stats()

    trio.run(served, TransportLimits(eclipse_protection=False), ask)

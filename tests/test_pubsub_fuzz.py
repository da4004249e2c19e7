"""Well-framed but hostile pub/sub RPCs (random protobuf fields, forged origins, bogus control
messages) reach py-libp2p's GossipSub on a real host: the node keeps serving.

Seeded, in one process on loopback; each RPC goes on a fresh /meshsub stream of one attacker.
"""

import contextlib
import random

import trio
import trio.testing
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.utils.varint import encode_varint_prefixed

from edgeswarm.protocols.libp2p_network import Libp2pNetwork
from edgeswarm.protocols.limits import TransportLimits
from edgeswarm.protocols.peer_policy import PolicyParams

NO_BANS = PolicyParams(ban_after=10**9)  # keep taking the attacker back: every input gets its turn

from conftest import FAILURE_BOUND, identity

TOPIC = "edgeswarm/fuzz/1"
ECHO = "/edgeswarm/test-echo/1"


def hostile_rpc(rng: random.Random, victim: bytes) -> bytes:
    def junk(n: int = 40) -> bytes:
        return rng.randbytes(rng.randrange(n))

    def topic() -> str:
        return rng.choice([TOPIC, "", "x" * 300, junk(20).decode("latin-1")])

    def ids() -> bytes:
        return rng.choice([victim, junk(), b"\x00\x24\x08\x01\x12\x20" + rng.randbytes(32), b""])

    rpc = rpc_pb2.RPC()
    for _ in range(rng.randrange(3)):
        rpc.subscriptions.add(subscribe=rng.random() < 0.5, topicid=topic())
    for _ in range(rng.randrange(4)):
        rpc.publish.add(
            from_id=ids(), data=junk(200), seqno=junk(12), topicIDs=[topic()], signature=junk(80), key=junk(50)
        )
    control = rpc.control
    for _ in range(rng.randrange(3)):
        control.ihave.add(topicID=topic(), messageIDs=[junk() for _ in range(rng.randrange(50))])
        control.iwant.add(messageIDs=[junk() for _ in range(rng.randrange(50))])
        control.graft.add(topicID=topic())
        prune = control.prune.add(topicID=topic(), backoff=rng.choice([0, 1, 2**63, rng.randrange(2**64)]))
        prune.peers.add(peerID=ids(), signedPeerRecord=junk(100))
    if rng.random() < 0.3:
        rpc.senderRecord = junk(200)
    data = rpc.SerializeToString()
    if rng.random() < 0.2:  # and some that are not protobuf at all
        data = junk(300)
    return encode_varint_prefixed(data)


def test_random_hostile_rpcs_never_end_the_node():
    async def echo(peer, data: bytes) -> bytes:
        return data

    async def main() -> None:
        limits = TransportLimits(eclipse_protection=False)
        async with Libp2pNetwork.open(identity(1).seed(), limits=limits, policy=NO_BANS) as victim:
            victim.serve(ECHO, echo)
            victim.subscribe(TOPIC)
            rng = random.Random(13)
            victim_id = ID.from_base58(victim.local_peer)
            async with (
                Libp2pNetwork.open(identity(2).seed(), limits=limits) as evil,
                Libp2pNetwork.open(identity(3).seed(), limits=limits) as honest,
            ):
                for n in range(300):
                    if victim.local_peer not in evil.peers():
                        with trio.fail_after(FAILURE_BOUND):
                            await evil.connect(victim.addrs()[0])
                    with contextlib.suppress(Exception):  # the victim hung up on us: dial again next time
                        stream = await evil._host.new_stream(victim_id, [TProtocol("/meshsub/1.1.0")])
                        await stream.write(hostile_rpc(rng, victim_id.to_bytes()))
                    if n % 50 == 49:
                        await trio.testing.wait_all_tasks_blocked()  # pub/sub's tasks have handled what arrived
                        honest.add_addrs(victim.local_peer, victim.addrs())
                        with trio.fail_after(FAILURE_BOUND):
                            assert await honest.request(victim.local_peer, ECHO, b"ok %d" % n) == b"ok %d" % n
                stats = victim.stats()
                assert stats.get("stream_handler_errors", 0) + stats.get("pubsub_task_errors", 0) > 0

    trio.run(main)

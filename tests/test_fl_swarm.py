"""Flower over the swarm: blobs, the Grid, the federation service and the fl simulation."""

from __future__ import annotations

import random

import msgspec
import pytest
import trio

pytest.importorskip("flwr")
pytest.importorskip("torch_geometric")

from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg

from edgeswarm.node.compute import ModelledCompute
from edgeswarm.node.config import FederationConfig
from edgeswarm.node.fl.federation import Federation
from edgeswarm.protocols.blobs import CHUNK_BYTES, BlobError, BlobRef, BlobShelf, Chunk, ChunkRequest, fetch
from edgeswarm.protocols.counters import Counters
from edgeswarm.protocols.envelope import Codec
from edgeswarm.protocols.fl import flower_wire
from edgeswarm.protocols.fl.grid import DEADLINE_MISSED, SEND_FAILED, SwarmGrid
from edgeswarm.protocols.fl.messages import MESSAGES, Ack, Result, Task
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.network import PeerUnreachable, deadline
from edgeswarm.sim.virtual_network import LinkModel, VirtualNetwork

from conftest import identity, run_virtual


def messenger(n, endpoint):
    counter = iter(range(1, 1 << 30))
    codec = Codec(identity(n), next_seq=lambda: next(counter), now=lambda: 1.8e9 + trio.current_time())
    return Messenger(endpoint, codec, Counters())


def test_blobs_move_in_chunks_verified_and_only_to_the_named_peer():
    async def main():
        net = VirtualNetwork(random.Random(0), LinkModel(latency_sigma=0))
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            async with (
                net.attach(identity(1).peer_id) as ea,
                net.attach(identity(2).peer_id) as eb,
                net.attach(identity(3).peer_id) as ec,
            ):
                a, b, c = messenger(1, ea), messenger(2, eb), messenger(3, ec)
                for m in (a, b, c):
                    m.register(ChunkRequest, Chunk)
                shelf = BlobShelf(trio.current_time)

                evil = BlobRef(b"\x07" * 32, 100)  # a digest whose chunks the server fakes

                async def serve(peer, request):
                    if request.digest == evil.digest:
                        return Chunk(b"\0" * 100)
                    data = shelf.chunk(peer, request)
                    if data is None:
                        from edgeswarm.protocols.network import RequestRefused

                        raise RequestRefused("no such blob")
                    return Chunk(data)

                a.on_request(ChunkRequest, serve)
                data = random.Random(1).randbytes(2 * CHUNK_BYTES + 123)
                ref = shelf.offer(data, b.local_peer)
                with pytest.raises(BlobError):  # offered to b, not to c
                    await fetch(c, a.local_peer, ref, max_bytes=10 * CHUNK_BYTES, chunk_timeout=5)
                assert await fetch(b, a.local_peer, ref, max_bytes=10 * CHUNK_BYTES, chunk_timeout=5) == data
                assert shelf.chunk(b.local_peer, ChunkRequest(ref.digest, 0)) is None  # b has it all: gone
                shelf.offer(data, b.local_peer)
                public = shelf.offer(b"for anyone", None)
                assert await fetch(c, a.local_peer, public, max_bytes=100, chunk_timeout=5) == b"for anyone"
                with pytest.raises(BlobError, match="over this node's limit"):
                    await fetch(b, a.local_peer, ref, max_bytes=CHUNK_BYTES, chunk_timeout=5)
                lying = BlobRef(ref.digest, ref.size - 1)  # promised size disagrees with the chunks
                with pytest.raises(BlobError):
                    await fetch(b, a.local_peer, lying, max_bytes=10 * CHUNK_BYTES, chunk_timeout=5)
                with pytest.raises(BlobError, match="SHA-256"):
                    await fetch(b, a.local_peer, evil, max_bytes=10 * CHUNK_BYTES, chunk_timeout=5)
            nursery.cancel_scope.cancel()

    run_virtual(main)


def test_grid_turns_missed_deadlines_and_failed_sends_into_error_replies():
    async def main():
        async def send(peer, data):
            if peer == identity(2).peer_id:
                raise PeerUnreachable("unreachable")
            # identity(1) accepts and never answers

        grid = SwarmGrid(5, 1, send)
        ok, down = grid.add_peer(identity(1).peer_id), grid.add_peer(identity(2).peer_id)
        strategy = FedAvg(min_available_nodes=2)
        exchange = grid.exchange(
            strategy.configure_train(1, ArrayRecord({"w": __import__("torch").zeros(1)}), ConfigRecord(), grid)
        )
        messages = exchange.messages
        start = trio.current_time()
        with trio.move_on_after(30.0):  # the caller's deadline
            await exchange.run()
        replies = exchange.replies()
        assert trio.current_time() - start == pytest.approx(30.0)  # waited the deadline, no longer
        codes = {m.metadata.dst_node_id: r.error.code for m, r in zip(messages, replies)}
        assert codes == {ok: DEADLINE_MISSED, down: SEND_FAILED}
        assert strategy.aggregate_train(1, replies) == (None, None)  # all failures: nothing aggregated

    run_virtual(main)


def test_federation_refuses_tasks_and_results_from_strangers_and_bad_payloads():
    async def main():
        net = VirtualNetwork(random.Random(0), LinkModel(latency_sigma=0))
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            async with net.attach(identity(1).peer_id) as ea, net.attach(identity(2).peer_id) as eb:
                node = messenger(1, ea)
                fed = Federation(
                    node,
                    FederationConfig(enabled=True),
                    random.Random(0),
                    lambda: 1.8e9 + trio.current_time(),
                    ModelledCompute(1.0),
                    BlobShelf(trio.current_time),
                )
                await nursery.start(fed.run)
                stranger = messenger(2, eb)
                stranger.register(*MESSAGES)
                with deadline(5):
                    ack = await stranger.request(node.local_peer, Task("nope", inline=b"x"), Ack)
                assert not ack.accepted and "not a participant" in ack.reason
                with deadline(5):
                    ack = await stranger.request(node.local_peer, Result("nope", inline=b"x"), Ack)
                assert not ack.accepted
                with pytest.raises(flower_wire.WireError):
                    flower_wire.decode(b"\xff\x00garbage")
            nursery.cancel_scope.cancel()

    run_virtual(main)


def test_fl_simulation_runs_fedpub_fedavg_and_local_over_the_swarm_deterministically(small_fl):
    first = small_fl(strategies=["fedpub", "fedavg", "local"])
    metrics = first["metrics"]
    assert metrics["rounds_ok"] == {"fedpub": 3, "fedavg": 3, "local": 3}
    assert all(0.3 < metrics["accuracy"][m] <= 1.0 for m in ("fedpub", "fedavg", "local"))
    sent = first["metrics"]["counters"]["bytes_out"]
    assert sent["fl.task"] > 0 and sent["fl.result"] > 0 and sent["fl.run"] > 0
    again = small_fl(strategies=["fedpub", "fedavg", "local"])
    assert again["fl_series"] == first["fl_series"]


def test_a_round_completes_when_clients_vanish_mid_round(small_fl):
    report = small_fl(strategies=["fedavg"], dropout=1, dropout_round=2, min_clients=2)
    rounds = report["fl_series"]["fedavg"]["rounds"]
    # the crashed client cannot be reached: each round's send to it fails at once (no wait),
    # and it stays in the run in case it comes back (one that takes a task and never answers
    # is dropped: test_fl_poisoning's silent joiners)
    assert [(r["status"], r["replies"], r["failures"], r["dropped"]) for r in rounds] == [
        ("ok", 4, 0, 0),
        ("ok", 3, 1, 0),
        ("ok", 3, 1, 0),
    ]


def test_joiners_must_share_the_hosts_dataset_and_partitioning_but_not_its_paths():
    from edgeswarm.node.fl.catalog import make_strategy, meets, requirements

    host = {"graph-source": "planetoid:/data/a:Cora", "num-partitions": 10, "partition-id": 0}
    required = requirements("subgraph", host)
    assert required == {
        "dataset": "planetoid:Cora",
        "num-partitions": "10",
        "partition-mode": "disjoint",
        "seed": "1234",
    }
    assert meets(required, "subgraph", {**host, "graph-source": "planetoid:/elsewhere:Cora", "partition-id": 7})
    assert not meets(required, "subgraph", {**host, "num-partitions": 5})
    assert not meets(required, "subgraph", {**host, "graph-source": "builtin"})
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("nope", 2)
    with pytest.raises(ValueError, match="bad option.*its options: none"):
        make_strategy("fedavg", 2, {"nonsense": 1})


def test_central_dp_and_robust_strategies_run_unchanged_over_the_swarm(small_fl):
    report = small_fl(strategies=["dp-fedavg", "fedmedian", "krum", "fedprox"], clients=5)  # krum needs n > f + 2
    assert report["metrics"]["rounds_ok"] == {"dp-fedavg": 3, "fedmedian": 3, "krum": 3, "fedprox": 3}


def test_run_records_survive_a_restart_and_clients_see_their_rounds_end(tmp_path):
    """Host and clients keep each run's record in their store; a client's table fills and ends 'done'."""
    from edgeswarm.node.config import MembershipConfig, NodeConfig, PresenceConfig, RankingConfig
    from edgeswarm.node.fl.run_records import RunBook, RunSpec
    from edgeswarm.node.node import Node
    from edgeswarm.node.store import Store
    from edgeswarm.protocols.membership.messages import Descriptor

    def config(index: int) -> NodeConfig:
        task = {"num-partitions": 2, "partition-id": max(0, index - 1)}
        return NodeConfig(
            membership=MembershipConfig(view_size=4, shuffle_length=2),
            presence=PresenceConfig(enabled=False),
            ranking=RankingConfig(enabled=False),
            federation=FederationConfig(
                enabled=True, auto_join=index > 0, tasks={"subgraph": task}, join_window=5.0, reply_timeout=60.0
            ),
        )

    stores = [Store.open(tmp_path / f"{n}.sqlite") for n in range(3)]

    async def main():
        net = VirtualNetwork(random.Random(0), LinkModel(latency_sigma=0))
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            async with (
                net.attach(identity(0).peer_id) as e0,
                net.attach(identity(1).peer_id) as e1,
                net.attach(identity(2).peer_id) as e2,
            ):
                nodes = [
                    Node(
                        identity=identity(n),
                        network=e,
                        store=stores[n],
                        config=config(n),
                        rng=random.Random(n),
                        clock=lambda: 1.8e9 + trio.current_time(),
                        compute=ModelledCompute(1.0),
                        bootstrap=[Descriptor(identity(0).peer_id)] if n else [],
                    )
                    for n, e in enumerate((e0, e1, e2))
                ]
                for n in nodes:
                    await nursery.start(n.run)
                await trio.sleep(10)
                record = await nodes[0].federation.host(
                    RunSpec(task="subgraph", strategy="fedavg", rounds=2, min_clients=2, join_window=5.0)
                )
                assert record.state == "done" and [r.round for r in record.history] == [1, 2]
                for client in nodes[1:]:
                    (mine,) = client.federation.runs.values()
                    assert mine.run_id == record.run_id and mine.role == "client" and mine.state == "done"
                    assert [r.round for r in mine.history] == [1, 2]
                    assert all("test-acc" in r.evaluate and r.train for r in mine.history)
                    assert mine.history[-1].clients == {str(client.peer_id): mine.history[-1].evaluate}
            nursery.cancel_scope.cancel()

    run_virtual(main)
    for n, store in enumerate(stores):  # a restart reads the records back from the store
        (kept,) = RunBook(store).values()
        assert kept.state == "done" and len(kept.history) == 2 and kept.role == ("host" if n == 0 else "client")
    live = msgspec.msgpack.encode(msgspec.structs.replace(kept, run_id="x", state="training", history=[]))
    RunBook(stores[1])._put("x", live, keep=10)  # as a node stopped mid-run left it
    assert RunBook(stores[1])["x"].state == "interrupted"  # its in-memory Flower state died with the node


def test_a_clients_record_keeps_only_the_announced_rounds_and_a_bounded_history():
    from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict

    from edgeswarm.node.fl import run_client as fl_client
    from edgeswarm.node.fl.run_records import RunBook, RunRecord

    flower_wire.ensure_task_identity()
    client = fl_client.FlClient.__new__(fl_client.FlClient)  # only its bookkeeping is under test
    client.messenger = type("M", (), {"local_peer": "me"})()
    record = RunRecord("r", "client", "subgraph", "fedavg", 1500, "host", "joined")
    RunBook().add(record)

    def answer(round_number, kind="evaluate"):
        task = Message(
            RecordDict({"config": ConfigRecord({"server-round": round_number})}), dst_node_id=1, message_type=kind
        )
        client._remember(record, task, Message(RecordDict({"metrics": MetricRecord({"test-acc": 0.5})}), reply_to=task))

    answer(0), answer(1501), answer(10**9)  # rounds the host never announced: ignored
    assert record.history == []
    for number in range(1, 1201):
        answer(number)
    assert len(record.history) == fl_client.MAX_CLIENT_HISTORY and record.history[0].round == 201
    assert record.state == "joined"  # round 1200 of 1500: not over
    answer(1500)
    assert record.state == "done" and record.history[-1].round == 1500


def test_a_shelf_lets_an_offer_go_once_each_peer_has_it_or_it_is_withdrawn():
    shelf = BlobShelf(lambda: 0.0)
    data = bytes(CHUNK_BYTES + 10)
    ref = shelf.offer(data, "b")
    shelf.offer(data, "c")  # the same model to two participants: one copy, two peers
    last = ChunkRequest(ref.digest, 1)
    assert shelf.chunk("b", ChunkRequest(ref.digest, 0))
    assert len(shelf.chunk("b", last)) == 10
    assert shelf.chunk("b", last) is None  # b's share is gone
    assert shelf.chunk("c", ChunkRequest(ref.digest, 0))  # c has not fetched it: still there for c
    assert len(shelf.chunk("c", last)) == 10
    assert shelf.chunk("c", ChunkRequest(ref.digest, 0)) is None  # everyone has it: gone
    other = shelf.offer(b"x" * 100, "d")
    shelf.withdraw(other.digest, "d")  # its round ended before d fetched it
    public = shelf.offer(b"for anyone", None)
    assert shelf.chunk("e", ChunkRequest(public.digest, 0)) == b"for anyone"
    assert shelf.chunk("f", ChunkRequest(public.digest, 0)) == b"for anyone"  # public offers stay until they expire
    assert shelf.chunk("d", ChunkRequest(other.digest, 0)) is None

"""The adapter exchange between nodes: announce, fetch, verify, refuse, merge; the lora sim."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import msgspec
import pytest
import trio

pytest.importorskip("peft")

from edgeswarm.learning import lora
from edgeswarm.node.adapters.adapter_store import AdapterRow
from edgeswarm.node.adapters.adapters import AdapterError
from edgeswarm.node.compute import ModelledCompute
from edgeswarm.node.config import AdaptersConfig, MembershipConfig, NodeConfig, PresenceConfig, RankingConfig
from edgeswarm.node.node import Node
from edgeswarm.node.store import Store
from edgeswarm.protocols.adapters.messages import AdapterAnnounce
from edgeswarm.protocols.membership.messages import Descriptor
from edgeswarm.sim.runner import run_scenario
from edgeswarm.sim.scenario import load_scenario
from edgeswarm.sim.virtual_network import LinkModel, VirtualNetwork

from conftest import identity, run_virtual

REPO = Path(__file__).resolve().parent.parent


def config(index: int) -> NodeConfig:
    return NodeConfig(
        membership=MembershipConfig(view_size=4, shuffle_length=2),
        presence=PresenceConfig(enabled=False),
        ranking=RankingConfig(enabled=False),
        adapters=AdaptersConfig(enabled=True, node_index=index, nodes=10, clusters=2, epochs=30),
    )


def node(n: int, endpoint, bootstrap=()) -> Node:
    return Node(
        identity=identity(n),
        network=endpoint,
        store=Store.open(":memory:"),
        config=config(n),
        rng=random.Random(n),
        clock=lambda: 1.8e9 + trio.current_time(),
        bootstrap=[Descriptor(identity(b).peer_id) for b in bootstrap],
        compute=ModelledCompute(1.0),
    )  # virtual time stands still while torch trains


def test_adapters_are_announced_fetched_verified_and_bad_ones_refused_with_a_reason():
    async def main():
        net = VirtualNetwork(random.Random(0), LinkModel(latency_sigma=0))
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            async with (
                net.attach(identity(1).peer_id) as e1,
                net.attach(identity(2).peer_id) as e2,
                net.attach(identity(3).peer_id) as e3,
            ):
                a, b, evil = node(1, e1), node(2, e2, [1]), node(3, e3, [1])
                for n in (a, b, evil):
                    await nursery.start(n.run)
                await trio.sleep(30)  # membership and gossip settle

                own = await a.adapters.train()
                await a.adapters.publish()
                # the evil node announces bytes it does not have, and bytes for another base
                ref = evil.shelf.offer(b"not a delta at all", None)
                await evil.messenger.publish(
                    AdapterAnnounce(ref, "digits-mlp", a.adapters.base_version, 8, "digits", 0.9, 60)
                )
                other = evil.shelf.offer(b"x" * 100, None)
                await evil.messenger.publish(AdapterAnnounce(other, "digits-mlp", "f" * 64, 8, "digits", 0.9, 60))
                await trio.sleep(10)

                announced = {r.digest: r for r in b.adapters.list()}
                assert own.digest in announced and announced[own.digest].origin == "announced"
                fetched = await b.adapters.pull(own.digest[:12])
                assert fetched.stored and fetched.origin == "peer" and fetched.signer == str(a.peer_id)
                assert b.adapters.adapter_store.adapter_data(own.digest) == a.adapters.adapter_store.adapter_data(
                    own.digest
                )
                with pytest.raises(AdapterError, match="header|safetensors"):
                    await b.adapters.pull(ref.digest.hex())
                with pytest.raises(AdapterError):
                    await b.adapters.pull(other.digest.hex())
                rows = {r.digest: r for r in b.adapters.list()}
                assert rows[ref.digest.hex()].note.startswith("rejected") and not rows[ref.digest.hex()].stored
                assert b.counters.snapshot()["adapters"] == {"fetched": 1, "rejected": 2}

                mine = await b.adapters.train()
                assert b.adapters.active == mine.digest
                # a peer's delta that hurts b's data (a's, with B flipped and blown up), merged blindly
                theirs = b.adapters._decode(b.adapters.adapter_store.adapter_data(own.digest))
                harmful = dataclasses.replace(theirs, b={k: -30 * v for k, v in theirs.b.items()})
                data = lora.encode(harmful)
                b.adapters.adapter_store.put_adapter(
                    AdapterRow(
                        lora.digest(data),
                        "peer",
                        str(a.peer_id),
                        "digits",
                        harmful.rank,
                        len(data),
                        0.9,
                        60,
                        "verified",
                        0.0,
                    ),
                    data,
                )
                merged = await b.adapters.merge(policy="all", method="fedavg")
                assert len(merged["peers"]) == 2 and merged["val_acc"] < mine.metric
                assert not merged["activated"] and b.adapters.active == mine.digest  # refused: the good one stays
                rows = {r.digest: r for r in b.adapters.list()}
                assert rows[merged["digest"]].stored and "not activated" in rows[merged["digest"]].note
                assert b.counters.snapshot()["adapters"]["merges_not_activated"] == 1
                assert b.adapters.use(merged["digest"][:12]).digest == merged["digest"]  # by hand, still possible
                assert b.adapters.use(mine.digest[:12]) and b.adapters.active == mine.digest  # and back
                forced = await b.adapters.merge(policy="all", method="fedavg", force=True)
                assert forced["activated"] and b.adapters.active == forced["digest"]
                with pytest.raises(AdapterError, match="only announced"):
                    b.adapters.use(ref.digest.hex()[:12])
                # the choice is in the store: a restarted node uses the same adapter
                assert b.store.get_meta("adapters.active") == forced["digest"]
                with pytest.raises(AdapterError, match="not ours"):
                    await b.adapters.publish(own.digest)
            nursery.cancel_scope.cancel()

    run_virtual(main)


def small_lora(seed: int = 1):
    loaded = load_scenario(REPO / "configs/sim/lora.toml")
    workload = msgspec.structs.replace(loaded.scenario.lora, clusters=2)
    node_config = msgspec.structs.replace(
        loaded.scenario.node, adapters=msgspec.structs.replace(loaded.scenario.node.adapters, epochs=60)
    )
    scenario = msgspec.structs.replace(
        loaded.scenario, nodes=10, seed=seed, bootstrap=2, lora=workload, node=node_config
    )
    return run_scenario(msgspec.structs.replace(loaded, scenario=scenario), out_dir=None)


def test_lora_simulation_policy_beats_blind_merging_and_repeats_by_seed():
    report = small_lora()
    accuracy = report["metrics"]["personal_accuracy"]
    assert accuracy["policy"] > accuracy["merge_all"] + 0.2
    assert report["metrics"]["policy_same_cluster_share"] > 0.9
    assert report["metrics"]["failed_pulls"] == 0 and report["metrics"]["bytes_per_node"] > 0
    assert small_lora()["lora_series"] == report["lora_series"]

"""Any libp2p peer as a neighbour: a real go-libp2p peer (``p2pd``) beside real daemons.

The Go peer speaks TCP + Noise + yamux, identify and GossipSub, and no edgeswarm protocol: it
may serve as a bootstrap peer and carry gossip, but it is never shuffled with or asked for
rows, and meeting it logs no error. Every wait is the daemon's own (``Daemon.wait``).
"""

import pytest

from edgeswarm.protocols.messenger import topic_name
from edgeswarm.protocols.presence.messages import Announce

from conftest import FAST
from go_peer import go_peer

# background G-Rank gossip every second, so that a round that would pick the Go peer comes soon
CONFIG = FAST + "[ranking]\nanti_entropy_interval = 1.0\nanti_entropy_max_interval = 1.0\n"


def test_a_go_peer_serves_as_bootstrap_and_is_never_shuffled_with_or_pulled_from(group, tmp_path):
    config = tmp_path / "go.toml"
    config.write_text(CONFIG)
    with go_peer(tmp_path) as go:
        a = group.spawn("a", bootstrap=[go.addr], args=["--config", str(config)])
        a.wait(peer=go.peer_id, counters={"membership.not_members": 1})
        status = a.wait(counters={"membership.rounds": 8, "ranking.anti_entropy_rounds": 4})["status"]
    assert go.peer_id in status["peers"]  # still a neighbour
    assert go.peer_id not in status["view"]
    # asked once, told "na" as the stream opened: the shuffle was never sealed nor sent
    assert (
        status["transport"]["protocol_unsupported"] == 1 and "membership.shuffle" not in status["counters"]["msgs_out"]
    )
    assert "ranking.pull" not in status["counters"]["msgs_out"]  # identify said it keeps no rows
    assert status["counters"]["membership"]["not_members"] == 1
    assert "ERROR" not in a.log() and "protocols not supported" not in a.log()


def test_two_nodes_whose_only_link_is_a_go_gossipsub_peer_hear_each_other(group, tmp_path):
    config = tmp_path / "go.toml"
    config.write_text(CONFIG)
    with go_peer(tmp_path) as go, go.subscribed(topic_name(Announce)):
        a = group.spawn("a", bootstrap=[go.addr], args=["--config", str(config)])
        b = group.spawn("b", bootstrap=[go.addr], args=["--config", str(config)])
        a.wait(heard_from=1)  # b's announcements, relayed by the Go peer: a knows b from nowhere else
        b.wait(heard_from=1)
        assert b.status()["peer_id"] in a.request({"cmd": "presence"})["seen"]
        assert a.status()["peer_id"] in b.request({"cmd": "presence"})["seen"]
    for daemon in (a, b):
        assert "ERROR" not in daemon.log()


def test_a_node_with_no_listen_address_is_reached_through_a_go_relay(group, tmp_path):
    """``b`` cannot be dialled (it listens nowhere): it reserves a slot on the Go relay and
    advertises only ``<relay>/p2p-circuit/p2p/<b>``; ``a``, bootstrapped from that address,
    pings it through the relay; the connection then turns direct (b dials a back, arranged
    by DCUtR through the Go relay), so a transfer over the relay's limit goes through."""
    with go_peer(tmp_path, "-relayService=true") as relay:
        hidden = tmp_path / "hidden.toml"
        network = f'[network]\nlisten = []\nrelays = ["{relay.addr}"]\n'
        hidden.write_text(CONFIG.replace("[network]\n", network))
        b = group.spawn("b", args=["--config", str(hidden)], listen=False)
        status = b.wait(counters={"transport.relay_reservations": 1})["status"]
        assert status["relays"] == [relay.peer_id]
        (circuit,) = status["addresses"]  # nothing else to dial
        assert circuit == f"{relay.addr}/p2p-circuit/p2p/{status['peer_id']}"
        a = group.spawn("a", bootstrap=[circuit], args=["--config", str(tmp_path / "fast.toml")])
        reply = a.request({"cmd": "ping", "peer": status["peer_id"], "bytes": 16 * 1024, "timeout": 60})
        assert reply["intact"] and a.status()["transport"]["relay_dials"] >= 1
        # DCUtR over the Go relay's circuit: b dials a back, and 1 MiB, over the relay's
        # 128 KiB a circuit, goes through the direct connection
        assert a.request({"cmd": "ping", "peer": status["peer_id"], "bytes": 1024 * 1024, "timeout": 60})["intact"]
        assert status["peer_id"] not in a.status()["relayed"]


def test_an_adapter_is_fetched_from_a_node_reached_through_a_go_relay(group, tmp_path):
    """``b`` listens nowhere and is first reached through the Go relay; it trains a LoRA
    adapter and announces it, and ``a`` fetches it (a bulk blob transfer) from ``b``: over
    the connection that DCUtR turned direct, since the relay's circuit carries 128 KiB."""
    pytest.importorskip("peft")
    adapters = "\n[adapters]\nenabled = true\nnodes = 10\nclusters = 1\nepochs = 30\nnode_index = {}\n"
    with go_peer(tmp_path, "-relayService=true") as relay:
        hidden = tmp_path / "hidden.toml"
        network = f'[network]\nlisten = []\nrelays = ["{relay.addr}"]\n'
        hidden.write_text(CONFIG.replace("[network]\n", network) + adapters.format(1))
        b = group.spawn("b", args=["--config", str(hidden)], listen=False)
        status = b.wait(counters={"transport.relay_reservations": 1})["status"]
        (circuit,) = status["addresses"]
        public = tmp_path / "public.toml"
        public.write_text(CONFIG + adapters.format(0))
        a = group.spawn("a", bootstrap=[circuit], args=["--config", str(public)])
        a.wait(peer=status["peer_id"], counters={"transport.relay_dials": 1})
        own = b.request({"cmd": "lora_train"}, timeout=600)
        b.request({"cmd": "lora_publish"})
        a.wait(counters={"msgs_in.lora.announce": 1})
        fetched = a.request({"cmd": "lora_pull", "digest": own["digest"][:10]}, timeout=120)
        assert fetched["origin"] == "peer" and fetched["stored"] and fetched["signer"] == status["peer_id"]
        assert status["peer_id"] not in a.status()["relayed"]

"""Nodes behind real NATs (network namespaces, nftables masquerade) join and reach each other.

Two private LANs, each behind its own masquerading router, and a public segment where an
edgeswarm node relays. The NATed nodes can dial out but not be dialled: they hold
reservations on the relay, find each other through it, and talk through it. Needs root, ip
and nft (``nat_lab`` skips, saying why, where they are missing). Waits are the daemons' own.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from edgeswarm.node.control.client import ControlError

from conftest import FAST
from nat_lab import PUBLIC_IP, nat_lab


def config(tmp_path, name: str, network: str) -> list[str]:
    path = tmp_path / f"{name}.toml"
    path.write_text(FAST.replace("[network]\n", f"[network]\n{network}"))
    return ["--config", str(path)]


def dials(netns: str, ip: str, port: int) -> bool:
    """Whether a TCP connection from ``netns`` to ``ip:port`` gets anywhere (refused counts)."""
    probe = (
        "import socket, sys\n"
        f"try: socket.create_connection(({ip!r}, {port}), timeout=5)\n"
        "except ConnectionRefusedError: sys.exit(0)\n"
        "except OSError: sys.exit(1)\n"
    )
    return subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", probe], check=False).returncode == 0


def test_nated_nodes_reach_each_other_through_a_relay_and_punch_through_endpoint_independent_nats(group, tmp_path):
    """n1 and n2 sit behind endpoint-independent NATs, n3 behind a symmetric one. All three
    hold a reservation on the public relay and find each other through it. n1 and n2 then
    punch a direct connection (DCUtR), so a 1 MiB transfer, over the relay's 128 KiB circuit
    limit, goes through; n3 cannot be punched through, stays relayed, and the same transfer
    to it ends in a clear error rather than a hang."""
    with nat_lab() as lab:
        hosts = [lab.private(1), lab.private(2), lab.private(3, nat="symmetric")]
        assert dials(hosts[0].netns, PUBLIC_IP, 9) and not dials(lab.public, hosts[0].ip, 4001)  # the NAT is real
        relay = group.spawn(
            "relay",
            args=[*config(tmp_path, "relay", "relay_service = true\n"), "--listen", f"/ip4/{PUBLIC_IP}/tcp/4001"],
            netns=lab.public,
        )
        relay_addr = relay.status()["addresses"][0]
        nodes = []
        for i, host in enumerate(hosts, start=1):
            args = config(tmp_path, f"n{i}", f'relays = ["{relay_addr}"]\n')
            nodes.append(
                group.spawn(
                    f"n{i}",
                    bootstrap=[relay_addr],
                    args=[*args, "--listen", f"/ip4/{host.ip}/tcp/4001"],
                    netns=host.netns,
                )
            )
        n1 = nodes[0]
        ids = [n.wait(counters={"transport.relay_reservations": 1})["status"]["peer_id"] for n in nodes]
        n1.wait(in_view=ids[1:], counters={"membership.shuffle_ok": 3})  # learned from the relay's shuffles
        assert relay.status()["relay_service"]["reservations"] == 3
        for peer in ids[1:]:
            assert n1.request({"cmd": "ping", "peer": peer, "bytes": 1024, "timeout": 60})["intact"]

        n1.wait(counters={"transport.hole_punches": 1})
        big = {"cmd": "ping", "peer": ids[1], "bytes": 1 << 20, "timeout": 60}
        assert n1.request(big)["intact"]  # direct now: no circuit limit on the way
        status = n1.status()
        assert ids[1] not in status["relayed"] and ids[2] in status["relayed"]

        with pytest.raises(ControlError, match="relay"):
            n1.request({**big, "peer": ids[2]})  # the circuit's 128 KiB cannot carry it
        assert n1.request({"cmd": "ping", "peer": ids[2], "bytes": 1024, "timeout": 60})["intact"]
        status = n1.status()  # still reachable, through the relay
        assert ids[2] in status["relayed"] and status["transport"]["upgrades_failed"] >= 1
        # no gossip over the relay's circuits (they would run dry): n3's still reaches n1
        assert status["transport"]["pubsub_not_over_relays"] >= 1
        n1.wait(heard_from=3)


@pytest.mark.slow
def test_a_federated_round_with_nated_clients_completes(group, tmp_path):
    """A public host, and two clients each behind its own NAT that reserve on a public relay:
    the run is announced, both join, and every round completes."""
    pytest.importorskip("flwr")
    pytest.importorskip("torch_geometric")
    from edgeswarm.sim.fl_daemons import daemon_config

    with nat_lab() as lab:
        h1, h2 = lab.private(1), lab.private(2)
        relay = group.spawn(
            "relay",
            args=[*config(tmp_path, "relay", "relay_service = true\n"), "--listen", f"/ip4/{PUBLIC_IP}/tcp/4001"],
            netns=lab.public,
        )
        relay_addr = relay.status()["addresses"][0]
        host_args = daemon_config(tmp_path, "host", partition=0, clients=3, auto_join=False)
        host = group.spawn("host", args=[*host_args, "--listen", f"/ip4/{PUBLIC_IP}/tcp/4002"], netns=lab.public)
        host_addr = host.status()["addresses"][0]
        for partition, (name, private) in enumerate((("c1", h1), ("c2", h2)), start=1):
            args = daemon_config(tmp_path, name, partition=partition, clients=3)  # host 0, c1 1, c2 2
            path = Path(args[1])
            path.write_text(path.read_text().replace("[network]\n", f'[network]\nrelays = ["{relay_addr}"]\n'))
            group.spawn(
                name,
                bootstrap=[host_addr],
                args=[*args, "--listen", f"/ip4/{private.ip}/tcp/4001"],
                netns=private.netns,
            )
        host.wait(peers=3, gossip_peers=2)  # the relay and both clients; the announcement reaches them
        spec = {"cmd": "fl_host", "task": "subgraph", "strategy": "fedavg", "rounds": 2, "min_clients": 2}
        run_id = host.request({**spec, "max_clients": 2})["run_id"]
        run = host.request({"cmd": "fl_wait", "run_id": run_id, "timeout": 600}, timeout=630)
        assert run["state"] == "done", run
        assert [r["status"] for r in run["history"]] == ["ok", "ok"] and len(run["participants"]) == 2


def test_autonat_finds_who_is_public_and_nated_nodes_reserve_on_a_public_node_unasked(group, tmp_path):
    """No relay is configured anywhere. The public node's peers dial it back, so AutoNAT
    finds it public and it starts relaying (``relay_service = "auto"``, the default); its
    dial-backs to the NATed nodes fail, so they find themselves private, reserve a slot on
    it on their own, and reach each other through it (then directly: both NATs are
    endpoint-independent)."""
    with nat_lab() as lab:
        hosts = [lab.private(1), lab.private(2)]
        public = group.spawn(
            "public", args=[*config(tmp_path, "public", ""), "--listen", f"/ip4/{PUBLIC_IP}/tcp/4001"], netns=lab.public
        )
        public_addr = public.status()["addresses"][0]
        nodes = [
            group.spawn(
                f"n{i}",
                bootstrap=[public_addr],
                args=[*config(tmp_path, f"n{i}", ""), "--listen", f"/ip4/{host.ip}/tcp/4001"],
                netns=host.netns,
            )
            for i, host in enumerate(hosts, start=1)
        ]
        statuses = [n.wait(counters={"transport.relay_reservations": 1})["status"] for n in nodes]
        public_status = public.status()
        assert public_status["nat"] == "public" and public_status["relay_service"]["reservations"] == 2
        assert all(s["nat"] == "private" and s["relays"] == [public_status["peer_id"]] for s in statuses)
        n1, n2_id = nodes[0], statuses[1]["peer_id"]
        n1.wait(in_view=[n2_id], peer=n2_id)  # one of them dialled the other through the public node
        assert n1.request({"cmd": "ping", "peer": n2_id, "bytes": 1024, "timeout": 60})["intact"]

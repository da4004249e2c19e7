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


def test_nated_nodes_hold_relay_reservations_find_each_other_and_talk_through_the_relay(group, tmp_path):
    with nat_lab() as lab:
        h1, h2 = lab.private(1), lab.private(2)
        assert dials(h1.netns, PUBLIC_IP, 9) and not dials(lab.public, h1.ip, 4001)  # the NAT is real
        relay = group.spawn(
            "relay",
            args=[*config(tmp_path, "relay", "relay_service = true\n"), "--listen", f"/ip4/{PUBLIC_IP}/tcp/4001"],
            netns=lab.public,
        )
        relay_addr = relay.status()["addresses"][0]
        nodes = []
        for name, host in (("n1", h1), ("n2", h2)):
            args = config(tmp_path, name, f'relays = ["{relay_addr}"]\n')
            nodes.append(
                group.spawn(
                    name, bootstrap=[relay_addr], args=[*args, "--listen", f"/ip4/{host.ip}/tcp/4001"], netns=host.netns
                )
            )
        n1 = nodes[0]
        ids = [n.wait(counters={"transport.relay_reservations": 1})["status"]["peer_id"] for n in nodes]
        n1.wait(in_view=[ids[1]], counters={"membership.shuffle_ok": 3})  # learned from the relay's shuffles
        reply = n1.request({"cmd": "ping", "peer": ids[1], "bytes": 1024, "timeout": 60})
        assert reply["intact"]
        assert ids[1] in n1.status()["relayed"]  # no direct path between two NATs here
        assert relay.status()["relay_service"]["reservations"] == 2


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
        round_id = host.request({**spec, "max_clients": 2})["round_id"]
        run = host.request({"cmd": "fl_wait", "round_id": round_id, "timeout": 600}, timeout=630)
        assert run["state"] == "done", run
        assert [r["status"] for r in run["history"]] == ["ok", "ok"] and len(run["participants"]) == 2

"""A node nobody can dial is reached through an edgeswarm node that relays (circuit relay v2).

Real daemons on loopback; the hidden one listens nowhere, so the relay is its only way in.
Every wait is the daemon's own (``Daemon.wait``). The same through a go-libp2p relay is in
``test_go_interop.py``.
"""

from conftest import FAST


def test_an_edgeswarm_relay_carries_pings_to_a_node_with_no_listen_address_within_its_bounds(group, tmp_path):
    relaying = tmp_path / "relay.toml"
    relaying.write_text(
        FAST.replace("[network]\n", "[network]\nrelay_service = true\nrelay_reservations = 1\nrelay_circuit_kb = 64\n")
    )
    relay = group.spawn("relay", args=["--config", str(relaying)])
    relay_status = relay.status()
    assert relay_status["relay_service"] == {"reservations": 0, "circuits": 0}
    relay_addr = relay_status["addresses"][0]

    def hidden_config(name: str):
        path = tmp_path / f"{name}.toml"
        path.write_text(FAST.replace("[network]\n", f'[network]\nlisten = []\nrelays = ["{relay_addr}"]\n'))
        return ["--config", str(path)]

    b = group.spawn("b", args=hidden_config("b"), listen=False)
    b_status = b.wait(counters={"transport.relay_reservations": 1})["status"]
    b_id = b_status["peer_id"]
    (circuit,) = b_status["addresses"]
    assert circuit == f"{relay_addr}/p2p-circuit/p2p/{b_id}"
    assert relay.status()["relay_service"]["reservations"] == 1

    # a second hidden node finds the relay full (one reservation): it says so and keeps trying
    c = group.spawn("c", args=hidden_config("c"), listen=False)
    c_status = c.wait(counters={"transport.relay_reservations_failed": 1})["status"]
    assert c_status["relays"] == [] and c_status["addresses"] == []

    a = group.spawn("a", bootstrap=[circuit], args=["--config", str(tmp_path / "fast.toml")])
    assert a.request({"cmd": "ping", "peer": b_id, "bytes": 16 * 1024, "timeout": 60})["intact"]
    assert a.status()["transport"]["relay_dials"] >= 1 and relay.status()["relay_service"]["circuits"] >= 1
    # b dials a back (DCUtR: a listens where b can reach it), so the connection turns direct
    # and what the circuit's 64 KiB could not carry goes through
    assert a.request({"cmd": "ping", "peer": b_id, "bytes": 256 * 1024, "timeout": 60})["intact"]
    assert b_id not in a.status()["relayed"]

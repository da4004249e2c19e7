"""Real daemon processes on loopback. Few, and nothing polls: each wait is the daemon's own
(``Daemon.wait``: the ``wait`` control command), bounded by a deadline only a failure reaches."""

import json
import stat
import time
from functools import partial

import pytest

from edgeswarm.node.control.client import ControlError
from edgeswarm.protocols.envelope import Codec
from edgeswarm.protocols.membership.messages import Descriptor, ShuffleReply, ShuffleRequest
from edgeswarm.protocols.messenger import protocol_id
from edgeswarm.sim.processes import Daemon, DaemonGroup

from conftest import FAST, identity


def test_three_daemons_discover_gossip_transfer_and_stop_cleanly(group):
    a = group.spawn("a")
    seed = a.status()["addresses"][0]
    assert "/p2p/" + a.status()["peer_id"] in seed
    b = group.spawn("b", bootstrap=[seed])
    c = group.spawn("c", bootstrap=[seed])
    daemons = [a, b, c]
    ids = {d.status()["peer_id"] for d in daemons}
    for d in daemons:  # everyone knows everyone and has heard from both others
        met = d.wait(known=sorted(ids - {d.status()["peer_id"]}), heard_from=2)["status"]
        assert met["heard_from"] == 2 and set(met["view"]) | set(met["peers"]) == ids - {met["peer_id"]}
    pong = c.request({"cmd": "ping", "peer": a.status()["peer_id"], "bytes": 1 << 20})
    assert pong["intact"] and pong["bytes"] == 1 << 20
    for daemon in daemons:
        assert daemon.stop() == 0
        assert "stopped cleanly" in daemon.log()
        assert not (daemon.data_dir / "control.sock").exists()


def test_kill_9_then_restart_keeps_identity_and_rejoins_from_stored_peers(group):
    a = group.spawn("a")
    b = group.spawn("b", bootstrap=[a.status()["addresses"][0]])
    a_id, b_id = a.status()["peer_id"], b.status()["peer_id"]
    persisted = b.wait(in_view=[a_id])["status"]["counters"].get("store", {}).get("persisted", 0)
    b.wait(counters={"store.persisted": persisted + 1})  # a's address is in b's store now
    b.kill()
    # restart without --bootstrap: only the stored view can lead b back to a
    args = [x for x in b.args]
    i = args.index("--bootstrap")
    del args[i : i + 2]
    again = group.restart(b, args=args)
    assert again.status()["peer_id"] == b_id
    again.wait(peer=a_id, counters={"membership.shuffle_ok": 1})
    a.wait(heard_from=1)


def test_misbehaving_peer_is_dropped_counted_and_refused_others_unaffected(group):
    import trio
    from libp2p.peer.id import ID

    from edgeswarm.protocols.libp2p_network import Libp2pNetwork
    from edgeswarm.protocols.network import NetworkError, deadline

    a = group.spawn("a")
    b = group.spawn("b", bootstrap=[a.status()["addresses"][0]])
    a_id = a.status()["peer_id"]
    b.wait(peer=a_id)
    shuffle = protocol_id(ShuffleRequest)
    evil = identity(66)

    async def attack():
        codec = Codec(evil, next_seq=iter(range(100)).__next__, now=time.time)
        codec.register(ShuffleRequest, ShuffleReply)
        good = codec.seal(ShuffleRequest((Descriptor(evil.peer_id),)))
        forged = bytearray(good)
        forged[-1] ^= 1  # break the signature
        outcomes = []
        async with Libp2pNetwork.open(evil.seed()) as net:
            net.add_addrs(a_id, a.status()["addresses"])
            for attempt, data in enumerate((b"raw garbage", b"\x00" * 40_000, bytes(forged), good)):
                try:
                    with deadline(60):
                        await net.request(a_id, shuffle, data)
                    outcomes.append("answered")
                except NetworkError as exc:
                    outcomes.append(type(exc).__name__)
                if attempt == 3:
                    break
                # every offence makes `a` hang up on us; the next try must not ride the dead
                # connection, which py-libp2p may go on listing on our side: hang up here too
                await trio.to_thread.run_sync(partial(a.wait, disconnected=[evil.peer_id]))
                await net._host.disconnect(ID.from_base58(a_id))
        return outcomes

    outcomes = trio.run(attack)
    # garbage: refused; oversize frame: stream reset; forged: refused; then we are refused
    assert outcomes[0] == "RequestRefused" and outcomes[2] == "RequestRefused"
    assert outcomes[1] != "answered" and outcomes[3] != "answered"
    status = a.status()
    assert status["counters"]["rejects"] == {"bad_signature": 1, "malformed": 1}
    assert status["transport"]["offences"] == 3 and status["transport"]["peers_banned"] == 1
    a.wait(disconnected=[evil.peer_id])  # refused and dropped
    # the honest peer still talks to a
    before = a.status()["counters"]["msgs_in"].get("ping.request", 0)
    assert b.request({"cmd": "ping", "peer": a_id, "bytes": 1000})["intact"]
    assert a.status()["counters"]["msgs_in"]["ping.request"] == before + 1


def test_daemons_find_each_other_by_mdns_without_bootstrap(tmp_path):
    config = tmp_path / "mdns.toml"
    config.write_text(FAST)
    with DaemonGroup(tmp_path / "lan") as group:  # spawn() turns mDNS off: start these by hand
        daemons = []
        for name in ("a", "b"):
            d = Daemon(
                tmp_path / "lan" / name,
                ["--listen", "/ip4/127.0.0.1/tcp/0", "--mdns", "--config", str(config)],
                tmp_path / f"{name}.log",
            )
            group.daemons.append(d)
            d.start()
            d.wait_ready()
            daemons.append(d)
        a, b = daemons
        b_id = b.status()["peer_id"]
        # the daemon itself waits, on its own clock: no sleep loop here
        met = a.request({"cmd": "wait", "peer": b_id, "heard_from": 1, "timeout": 90}, timeout=100)
        assert met["peers"] == 1 and met["heard_from"] == 1
        with pytest.raises(ControlError, match=r"not met within 0.5 s: 1 peers connected \(want 2\)"):
            a.request({"cmd": "wait", "peers": 2, "timeout": 0.5})


def test_control_socket_is_private_and_cli_reads_it(group):
    from typer.testing import CliRunner

    from edgeswarm.node.cli import app

    a = group.spawn("a")
    b = group.spawn("b", bootstrap=[a.status()["addresses"][0]])
    sock = a.data_dir / "control.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(a.data_dir.stat().st_mode) == 0o700
    runner = CliRunner()
    result = runner.invoke(app, ["status", "--data-dir", str(a.data_dir), "--json"])
    assert result.exit_code == 0
    status = json.loads(result.stdout)
    assert {"peer_id", "addresses", "peers"} <= status.keys()
    assert all(addr.endswith("/p2p/" + status["peer_id"]) for addr in status["addresses"])
    table = runner.invoke(app, ["status", "--data-dir", str(a.data_dir)])
    assert table.exit_code == 0 and "connected peers" in table.stdout
    waited = runner.invoke(app, ["wait", "--peer", status["peer_id"], "--timeout", "60", "--data-dir", str(b.data_dir)])
    assert waited.exit_code == 0 and "peers connected" in waited.stdout
    ping = runner.invoke(app, ["ping", status["peer_id"], "--bytes", "4096", "--data-dir", str(b.data_dir)])
    assert ping.exit_code == 0 and "intact" in ping.stdout
    catalog = group.root / "catalog.csv"
    catalog.write_text("item,title,tags\nbt,Blue Train,jazz;hard bop\nkob,Kind of Blue,jazz;modal\n")
    added = runner.invoke(app, ["catalog", "add", str(catalog), "--data-dir", str(a.data_dir)])
    assert added.exit_code == 0 and "added 2 items" in added.stdout
    found = runner.invoke(app, ["search", "jazz", "--data-dir", str(a.data_dir)])
    assert found.exit_code == 0 and "Kind of Blue" in found.stdout and "Blue Train" in found.stdout
    clicked = runner.invoke(app, ["click", "kob", "--data-dir", str(a.data_dir)])
    assert clicked.exit_code == 0 and "clicked kob for 'jazz'" in clicked.stdout
    unknown = runner.invoke(app, ["click", "nope", "--data-dir", str(a.data_dir)])
    assert unknown.exit_code == 6 and "neither among the last results" in unknown.stderr
    # b pulls a's signed row after its own click, and ranks with it
    b_catalog = runner.invoke(app, ["catalog", "add", str(catalog), "--data-dir", str(b.data_dir)])
    assert b_catalog.exit_code == 0
    b.wait(in_view=[status["peer_id"]])  # b's only peer to pull from
    runner.invoke(app, ["search", "jazz", "--data-dir", str(b.data_dir)])
    assert runner.invoke(app, ["click", "bt", "--data-dir", str(b.data_dir)]).exit_code == 0
    assert b.status()["counters"]["ranking"].get("rows_received") == 1
    nobody = runner.invoke(app, ["status", "--data-dir", str(group.root / "nobody")])
    assert nobody.exit_code == 6 and "no daemon is running" in nobody.stderr


async def control(data_dir, request: dict):
    """The socket protocol as a program without edgeswarm speaks it (docs/python-api.md, "Commands")."""
    import asyncio

    reader, writer = await asyncio.open_unix_connection(data_dir / "control.sock", limit=16 << 20)
    writer.write(json.dumps(request).encode() + b"\n")
    await writer.drain()
    reply = json.loads(await reader.readline())
    writer.close()
    await writer.wait_closed()
    if not reply["ok"]:
        raise RuntimeError(reply["error"])
    return reply["result"]


def test_an_asyncio_program_drives_a_node_through_the_control_socket(group):
    import asyncio

    a = group.spawn("a")

    async def session():
        status = await control(a.data_dir, {"cmd": "status"})
        added = await control(
            a.data_dir, {"cmd": "catalog_add", "items": [{"item": "kob", "title": "Kind of Blue", "tags": ["jazz"]}]}
        )
        found = await control(a.data_dir, {"cmd": "search", "query": "jazz"})
        with pytest.raises(RuntimeError, match="invalid request.*commands: status"):
            await control(a.data_dir, {"cmd": "no_such_command"})
        return status, added, found

    status, added, found = asyncio.run(session())
    assert status["peer_id"] == a.status()["peer_id"] and added == {"added": 1}
    assert [r["item"] for r in found] == ["kob"]
    assert a.status()["counters"]["control"]["bad_requests"] == 1

"""The Python API: typed clients of a daemon, and a node embedded in an asyncio program."""

import asyncio
import threading

import msgspec
import pytest
import trio

import edgeswarm
from edgeswarm import AsyncClient, Client, ControlError, EmbeddedNode, NodeStopped, replies, requests
from edgeswarm.node import daemon as daemon_module
from edgeswarm.node.config import load_node_config

from conftest import FAST


def embedded_config(tmp_path, bootstrap=()):
    path = tmp_path / "embedded.toml"
    path.write_text(FAST)
    config = load_node_config(path)
    network = msgspec.structs.replace(
        config.network, listen=["/ip4/127.0.0.1/tcp/0"], bootstrap=list(bootstrap), mdns=False
    )
    return msgspec.structs.replace(config, network=network)


def test_every_command_names_a_reply_type_the_daemon_returns():
    for command in requests.Request.__args__:
        assert requests.reply_type(command) is not None
    status = replies.NodeStatus("p", [], [], [], 0, [], {}, {})
    assert msgspec.convert(msgspec.to_builtins(status), requests.reply_type(requests.Status)) == status


def test_the_blocking_client_reads_typed_replies(group):
    a = group.spawn("a")
    b = group.spawn("b", bootstrap=[a.status()["addresses"][0]])
    client = Client(b.data_dir)
    waited = client.wait(peers=1, timeout=60)
    assert isinstance(waited, replies.Waited) and waited.peers >= 1
    status = client.status()
    assert isinstance(status, replies.NodeStatus) and status.peer_id == b.status()["peer_id"]
    pong = client.ping(a.status()["peer_id"], 1000)
    assert pong.intact and pong.bytes == 1000
    with pytest.raises(ControlError, match="not met within"):
        client.wait(peers=5, timeout=0.2)
    with pytest.raises(ControlError, match="no daemon is running"):
        Client(group.root / "nobody").status()


def test_an_asyncio_program_runs_a_node_waits_for_a_peer_searches_clicks_and_stops_cleanly(group, tmp_path):
    peer = group.spawn("peer")
    peer.request({"cmd": "catalog_add", "items": [{"item": "bt", "title": "Blue Train", "tags": ["jazz", "hard bop"]}]})
    config = embedded_config(tmp_path, bootstrap=[peer.status()["addresses"][0]])
    data_dir = tmp_path / "embedded"
    threads_before = {t.ident for t in threading.enumerate()}

    async def program():
        async with EmbeddedNode(config, data_dir) as node:
            assert node.peer_id and (data_dir / "control.sock").exists()
            waited = await node.client.wait(peer=peer.status()["peer_id"], timeout=60)
            assert waited.status.peer_id == node.peer_id
            added = await node.client.request(
                requests.CatalogAdd(items=[requests.CatalogItem("kob", "Kind of Blue", ["jazz", "modal"])])
            )
            assert added.added == 1
            hits = await node.client.search("jazz")
            assert [hit.item for hit in hits] == ["kob"] and isinstance(hits[0], replies.SearchHit)
            clicked = await node.client.click("kob")
            assert clicked.item == "kob" and clicked.terms == ["jazz"]
            await asyncio.sleep(0.05)  # the asyncio loop goes on beside the node
        return asyncio.all_tasks() - {asyncio.current_task()}

    assert asyncio.run(program()) == set()  # no task left behind
    assert not (data_dir / "control.sock").exists()  # stopped as a daemon stops
    with pytest.raises(RuntimeError):
        trio.lowlevel.current_trio_token()  # no trio run is left in this thread
    assert {t for t in threading.enumerate() if t.ident not in threads_before and not t.daemon} == set()


def test_an_exception_in_the_asyncio_program_stops_the_node_and_reaches_the_caller(tmp_path):
    data_dir = tmp_path / "embedded"

    async def program():
        async with EmbeddedNode(embedded_config(tmp_path), data_dir):
            raise KeyError("the application's own error")

    with pytest.raises(KeyError, match="own error"):
        asyncio.run(program())
    assert not (data_dir / "control.sock").exists()


def test_a_node_that_fails_while_running_cancels_the_program_and_reaches_the_caller(tmp_path, monkeypatch):
    async def failing_dial(network, addr):
        raise OSError("the node's own failure")

    monkeypatch.setattr(daemon_module, "_dial", failing_dial)  # runs once the node serves
    config = embedded_config(tmp_path, bootstrap=["/ip4/127.0.0.1/tcp/9/p2p/" + edgeswarm_peer_id()])
    reached = []

    async def program():
        async with EmbeddedNode(config, tmp_path / "embedded"):
            await asyncio.sleep(60)
            reached.append("the end of the block")

    with pytest.raises(NodeStopped, match="own failure") as caught:
        asyncio.run(program())
    assert isinstance(caught.value.__cause__, OSError) and not reached


def test_a_node_that_cannot_start_raises_from_async_with(tmp_path):
    config = embedded_config(tmp_path)
    config = msgspec.structs.replace(config, network=msgspec.structs.replace(config.network, listen=["/ip4/nope"]))

    async def program():
        async with EmbeddedNode(config, tmp_path / "embedded"):
            pass

    with pytest.raises(Exception, match="nope"):
        asyncio.run(program())


def test_a_program_cancelled_while_its_node_starts_leaves_no_node_behind(tmp_path):
    data_dir = tmp_path / "embedded"

    async def program():
        node = EmbeddedNode(embedded_config(tmp_path), data_dir)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):  # cancelled before the node serves
                await node.__aenter__()
        return asyncio.all_tasks() - {asyncio.current_task()}

    assert asyncio.run(program()) == set()
    assert not (data_dir / "control.sock").exists()
    with pytest.raises(RuntimeError):
        trio.lowlevel.current_trio_token()


def test_the_async_client_works_under_trio_too(group):
    a = group.spawn("a")

    async def main():
        return await AsyncClient(a.data_dir).status()

    assert trio.run(main).peer_id == a.status()["peer_id"]
    assert edgeswarm.Client is Client


def edgeswarm_peer_id():
    from conftest import identity

    return identity(99).peer_id

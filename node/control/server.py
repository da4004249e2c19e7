"""The daemon's local control API: one JSON request, one JSON reply, over a unix socket.

The socket is ``<data_dir>/control.sock`` with mode 0600 inside the 0700 data dir, so only
the user who runs the daemon can use it (Linux checks write permission on connect). Requests
are single lines such as ``{"cmd": "status"}``, ``{"cmd": "ping", "peer": ID, "bytes": N}``,
``{"cmd": "search", "query": Q}`` or ``{"cmd": "click", "item": K}``, decoded once into the
typed structs of ``control.requests``; the reply is one line ``{"ok": true, "result": ...}``
(the command's ``control.replies`` struct) or ``{"ok": false, "error": "..."}``. No request, however malformed, ends the daemon: bad
ones are counted (``control.bad_requests``) and answered with what is wrong.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, get_args

import msgspec
import trio

from edgeswarm.node.control import replies as rep
from edgeswarm.node.control import requests as req
from edgeswarm.node.control import waits
from edgeswarm.node.control.client import SOCKET_FILE, ControlError
from edgeswarm.node.node import Node, NodeStatus
from edgeswarm.protocols.envelope import Rejected
from edgeswarm.protocols.network import NetworkError

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
MAX_CONNECTIONS = 64
"""Requests served at once; more are answered "busy" at once and counted (``control.refused_busy``)."""


async def _status(node: Node, request: req.Status) -> NodeStatus:
    return node.status(gossip=True)


async def _ping(node: Node, request: req.Ping) -> rep.RoundTrip:
    return await node.ping.ping(request.peer, request.bytes, timeout=request.timeout)


async def _wait(node: Node, request: req.Wait) -> rep.Waited:
    """Return once the node's status meets the request, so scripts need no sleep loops."""

    def unmet() -> tuple[list[str], NodeStatus]:
        status = node.ticks.snapshot("status", node.status)
        gossip = node.ticks.snapshot("gossip", node.network.gossip_peers) if request.gossip_peers else {}
        return waits.unmet(
            request,
            peers=set(status.peers),
            view=set(status.view),
            heard_from=status.heard_from,
            counters=status.counters,
            transport=status.transport,
            gossip=gossip,
        ), status

    def met() -> NodeStatus | None:
        missing, status = unmet()
        return None if missing else status

    started = trio.current_time()
    with trio.move_on_after(request.timeout):
        status = await node.ticks.until(met)
        return rep.Waited(round(trio.current_time() - started, 3), len(status.peers), status.heard_from, status)
    raise ValueError(f"not met within {request.timeout:g} s: " + "; ".join(unmet()[0]))


async def _presence(node: Node, request: req.Presence) -> rep.PresenceReport:
    return rep.PresenceReport(node.presence.seen(), node.presence.delays(request.since))


def _ranking(node: Node):
    if node.ranking is None:
        raise ValueError("the ranking service is disabled in this node's config")
    return node.ranking


async def _search(node: Node, request: req.Search) -> list[rep.SearchHit]:
    return [rep.SearchHit(r.item, r.title, list(r.tags)) for r in _ranking(node).search(request.query)]


async def _click(node: Node, request: req.Click) -> rep.Clicked:
    row = await _ranking(node).click(request.item)
    return rep.Clicked(row.number, list(row.terms), row.item)


async def _catalog_add(node: Node, request: req.CatalogAdd) -> rep.ItemsAdded:
    return rep.ItemsAdded(_ranking(node).add_items((i.item, i.title, i.tags) for i in request.items))


def _federation(node: Node):
    if node.federation is None:
        raise ValueError("federated learning is disabled in this node's config ([node.federation] enabled = true)")
    return node.federation


async def _fl_host(node: Node, request: req.FlHost) -> rep.RunStarted:
    federation = _federation(node)  # before anything imports Flower: a node without it stays light
    from edgeswarm.node.fl.run_records import RunSpec

    fields = msgspec.structs.asdict(request)
    return rep.RunStarted(await federation.start_host(RunSpec(**fields)))


async def _fl_join(node: Node, request: req.FlJoin) -> rep.RunRecord:
    return await _federation(node).join(request.run_id)


async def _fl_status(node: Node, request: req.FlStatus) -> rep.FlOverview:
    federation = _federation(node)
    announced = [
        rep.AnnouncedRun(a.run_id, host, a.task, a.strategy, a.rounds) for host, a in federation.announced.values()
    ]
    return rep.FlOverview(list(federation.runs.values()), announced, sorted(federation.config.tasks))


async def _fl_wait(node: Node, request: req.FlWait) -> rep.RunRecord:
    from edgeswarm.node.fl.run_records import LIVE

    runs = _federation(node).runs
    if request.run_id not in runs:
        raise ValueError(f"no run {request.run_id!r} hosted or joined here (see `edgeswarm fl status`)")

    def ended():
        record = runs.get(request.run_id)
        if record is None:  # more runs since, and this one's record was dropped
            raise ValueError(f"run {request.run_id} is no longer kept here")
        return record if record.state not in LIVE else None

    with trio.move_on_after(request.timeout):
        return await node.ticks.until(ended)
    raise ValueError(f"run {request.run_id} still {runs[request.run_id].state} after {request.timeout:g} s")


def _adapters(node: Node):
    if node.adapters is None:
        raise ValueError("LoRA adapters are disabled in this node's config ([adapters] enabled = true)")
    return node.adapters


async def _lora_train(node: Node, request: req.LoraTrain) -> rep.AdapterRow:
    return await _adapters(node).train()


async def _lora_publish(node: Node, request: req.LoraPublish) -> rep.AdapterRow:
    return await _adapters(node).publish(request.digest)


async def _lora_list(node: Node, request: req.LoraList) -> rep.AdapterList:
    adapters = _adapters(node)
    return rep.AdapterList(adapters.active, adapters.list())


async def _lora_pull(node: Node, request: req.LoraPull) -> rep.AdapterRow:
    return await _adapters(node).pull(request.digest)


async def _lora_merge(node: Node, request: req.LoraMerge) -> rep.MergeOutcome:
    outcome = await _adapters(node).merge(policy=request.policy, method=request.method, force=request.force)
    return rep.MergeOutcome(**outcome)


async def _lora_use(node: Node, request: req.LoraUse) -> rep.AdapterRow:
    return _adapters(node).use(request.digest)


HANDLERS: dict[type, Callable[[Node, Any], Awaitable[Any]]] = {
    req.Status: _status,
    req.Ping: _ping,
    req.Wait: _wait,
    req.Presence: _presence,
    req.Search: _search,
    req.Click: _click,
    req.CatalogAdd: _catalog_add,
    req.FlHost: _fl_host,
    req.FlJoin: _fl_join,
    req.FlStatus: _fl_status,
    req.FlWait: _fl_wait,
    req.LoraTrain: _lora_train,
    req.LoraPublish: _lora_publish,
    req.LoraList: _lora_list,
    req.LoraPull: _lora_pull,
    req.LoraMerge: _lora_merge,
    req.LoraUse: _lora_use,
}
assert set(HANDLERS) == set(get_args(req.Request)), "every request type has one handler"


async def serve_control(
    node: Node, data_dir: Path, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve the control socket until cancelled; ``task_status`` receives its path."""
    path = data_dir / SOCKET_FILE
    if path.exists():
        if _is_live(path):
            raise ControlError(f"another daemon already serves {path}")
        path.unlink()
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(128)
    listener = trio.SocketListener(sock)
    slots = trio.CapacityLimiter(MAX_CONNECTIONS)
    try:
        async with trio.open_nursery() as nursery:
            task_status.started(path)
            while True:
                stream = await listener.accept()
                try:
                    slots.acquire_on_behalf_of_nowait(stream)
                except trio.WouldBlock:
                    node.counters.add("control", "refused_busy")
                    nursery.start_soon(_refuse_busy, stream)
                    continue
                nursery.start_soon(_handle, node, stream, slots)
    finally:
        path.unlink(missing_ok=True)  # first: the await below raises at once when cancelled
        await listener.aclose()


async def _refuse_busy(stream: trio.SocketStream) -> None:
    """Tell a client over the cap so at once, without reading its request."""
    async with stream:
        with trio.move_on_after(1), contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            reply = {"ok": False, "error": f"busy: {MAX_CONNECTIONS} requests in progress; try again"}
            await stream.send_all(msgspec.json.encode(reply) + b"\n")


async def _handle(node: Node, stream: trio.SocketStream, slot: trio.CapacityLimiter) -> None:
    """Answer one request on the ``slot`` it holds; whatever the request, the reply is an
    answer and the daemon lives on."""
    async with stream:
        try:
            reply = await _answer(node, stream)
        finally:
            slot.release_on_behalf_of(stream)  # before the reply goes out: who has it may ask again
        if reply is None:  # a wait whose client left; counted once its slot is free
            node.counters.add("control", "waits_abandoned")
            return
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(msgspec.json.encode(reply) + b"\n")


async def _answer(node: Node, stream: trio.SocketStream) -> dict[str, Any] | None:
    """The reply to the stream's request; None for a wait whose client hung up."""
    try:
        with trio.fail_after(10):
            line = await _read_line(stream)
        request = req.decode_request(line)
    except req.BadRequest as exc:
        node.counters.add("control", "bad_requests")
        return {"ok": False, "error": str(exc)}
    except trio.TooSlowError:
        return {"ok": False, "error": "TooSlowError"}
    if not isinstance(request, req.Wait | req.FlWait):
        return await _reply(node, request)
    reply = None
    async with trio.open_nursery() as nursery:  # a wait only observes: end it if its client leaves
        nursery.start_soon(_cancel_when_hung_up, stream, nursery.cancel_scope)
        reply = await _reply(node, request)
        nursery.cancel_scope.cancel()
    return reply


async def _reply(node: Node, request: req.Request) -> dict[str, Any]:
    """Run the request's handler; whatever it raises becomes the reply."""
    try:
        return {"ok": True, "result": await HANDLERS[type(request)](node, request)}
    except req.BadRequest as exc:
        node.counters.add("control", "bad_requests")
        return {"ok": False, "error": str(exc)}
    except (ValueError, NetworkError, Rejected, trio.TooSlowError) as exc:
        return {"ok": False, "error": str(exc) or type(exc).__name__}
    except Exception as exc:  # a bug behind one command must not end the daemon
        node.counters.add("control", "internal_errors")
        log.exception("control command failed")
        return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"[:1000]}


async def _cancel_when_hung_up(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` once the client closes its end (bytes after the request are ignored):
    a thousand clients that send ``wait`` and leave must not hold every slot for a minute."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while await stream.receive_some(4096):
            pass
    scope.cancel()


async def _read_line(stream: trio.SocketStream) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise req.BadRequest(f"request over {MAX_REQUEST_BYTES} bytes")
    return data


def _is_live(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True

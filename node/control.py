"""The daemon's local control API: one JSON request, one JSON reply, over a unix socket.

The socket is ``<data_dir>/control.sock`` with mode 0600 inside the 0700 data dir, so only
the user who runs the daemon can use it (Linux checks write permission on connect). Requests
are single lines such as ``{"cmd": "status"}``, ``{"cmd": "ping", "peer": ID, "bytes": N}``,
``{"cmd": "search", "query": Q}`` or ``{"cmd": "click", "item": K}`` (see ``COMMANDS``); the
reply is one line ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``.
Later services add commands to ``COMMANDS``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import trio

from edgeswarm.protocols.envelope import Rejected
from edgeswarm.protocols.network import NetworkError

from .node import Node

SOCKET_FILE = "control.sock"
MAX_REQUEST_BYTES = 64 * 1024
MAX_REPLY_BYTES = 16 * 1024 * 1024


class ControlError(Exception):
    """The control API could not be reached or refused the request."""


async def _status(node: Node, request: dict[str, Any]) -> Any:
    return msgspec.to_builtins(node.status())


async def _ping(node: Node, request: dict[str, Any]) -> Any:
    peer, size = request.get("peer"), request.get("bytes", 0)
    if not isinstance(peer, str) or not isinstance(size, int):
        raise ValueError("ping needs 'peer' (string) and 'bytes' (integer)")
    return await node.ping.ping(peer, size, timeout=float(request.get("timeout", 30.0)))


async def _presence(node: Node, request: dict[str, Any]) -> Any:
    since = request.get("since", float("-inf"))
    if not isinstance(since, (int, float)):
        raise ValueError("presence 'since' must be a number (seconds since the epoch)")
    return {"seen": node.presence.seen(), "delays": node.presence.delays(since)}


def _ranking(node: Node):
    if node.ranking is None:
        raise ValueError("the ranking service is disabled in this node's config")
    return node.ranking


async def _search(node: Node, request: dict[str, Any]) -> Any:
    query = request.get("query")
    if not isinstance(query, str):
        raise ValueError("search needs 'query' (string)")
    return [{"item": r.item, "title": r.title, "tags": list(r.tags)} for r in _ranking(node).search(query)]


async def _click(node: Node, request: dict[str, Any]) -> Any:
    item = request.get("item")
    if not isinstance(item, str):
        raise ValueError("click needs 'item' (string)")
    row = await _ranking(node).click(item)
    return {"number": row.number, "terms": list(row.terms), "item": row.item}


async def _catalog_add(node: Node, request: dict[str, Any]) -> Any:
    items = request.get("items")
    if not isinstance(items, list):
        raise ValueError("catalog_add needs 'items' (list)")
    parsed = []
    for entry in items:
        if not (isinstance(entry, dict) and isinstance(entry.get("item"), str) and isinstance(entry.get("title"), str)
                and isinstance(entry.get("tags", []), list)):
            raise ValueError("each item needs 'item' and 'title' (strings) and 'tags' (list of strings)")
        parsed.append((entry["item"], entry["title"], [str(t) for t in entry.get("tags", [])]))
    return {"added": _ranking(node).add_items(parsed)}


def _federation(node: Node):
    if node.federation is None:
        raise ValueError("federated learning is disabled in this node's config ([node.federation] enabled = true)")
    return node.federation


async def _fl_host(node: Node, request: dict[str, Any]) -> Any:
    from .federation import RoundSpec

    fields = {k: request[k] for k in ("task", "strategy", "rounds", "min_clients", "join_window", "reply_timeout",
                                      "train_config") if k in request}
    try:
        spec = msgspec.convert(fields, RoundSpec)
    except msgspec.ValidationError as exc:
        raise ValueError(f"fl_host: {exc}") from None
    return {"round_id": await _federation(node).start_host(spec)}


async def _fl_join(node: Node, request: dict[str, Any]) -> Any:
    round_id = request.get("round_id")
    if not isinstance(round_id, str):
        raise ValueError("fl_join needs 'round_id' (string)")
    return msgspec.to_builtins(await _federation(node).join(round_id))


async def _fl_status(node: Node, request: dict[str, Any]) -> Any:
    federation = _federation(node)
    announced = [
        {"round_id": a.round_id, "host": str(host), "task": a.task, "strategy": a.strategy, "rounds": a.rounds}
        for host, a in federation.announced.values()
    ]
    return {"runs": msgspec.to_builtins(list(federation.runs.values())), "announced": announced,
            "offers": sorted(federation.config.tasks)}


def _adapters(node: Node):
    if node.adapters is None:
        raise ValueError("LoRA adapters are disabled in this node's config ([adapters] enabled = true)")
    return node.adapters


async def _lora_train(node: Node, request: dict[str, Any]) -> Any:
    return msgspec.to_builtins(await _adapters(node).train())


async def _lora_publish(node: Node, request: dict[str, Any]) -> Any:
    digest = request.get("digest")
    if digest is not None and not isinstance(digest, str):
        raise ValueError("lora_publish 'digest' must be a string")
    return msgspec.to_builtins(await _adapters(node).publish(digest))


async def _lora_list(node: Node, request: dict[str, Any]) -> Any:
    adapters = _adapters(node)
    return {"active": adapters.active, "adapters": msgspec.to_builtins(adapters.list())}


async def _lora_pull(node: Node, request: dict[str, Any]) -> Any:
    digest = request.get("digest")
    if not isinstance(digest, str):
        raise ValueError("lora_pull needs 'digest' (string)")
    return msgspec.to_builtins(await _adapters(node).pull(digest))


async def _lora_merge(node: Node, request: dict[str, Any]) -> Any:
    policy, method = request.get("policy", "validation"), request.get("method", "flora")
    if not isinstance(policy, str) or not isinstance(method, str):
        raise ValueError("lora_merge 'policy' and 'method' must be strings")
    return await _adapters(node).merge(policy=policy, method=method)


COMMANDS: dict[str, Callable[[Node, dict[str, Any]], Awaitable[Any]]] = {
    "status": _status,
    "ping": _ping,
    "presence": _presence,
    "search": _search,
    "click": _click,
    "catalog_add": _catalog_add,
    "fl_host": _fl_host,
    "fl_join": _fl_join,
    "fl_status": _fl_status,
    "lora_train": _lora_train,
    "lora_publish": _lora_publish,
    "lora_list": _lora_list,
    "lora_pull": _lora_pull,
    "lora_merge": _lora_merge,
}


async def serve_control(node: Node, data_dir: Path, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED) -> None:
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
    sock.listen(16)
    listener = trio.SocketListener(sock)
    try:
        async with trio.open_nursery() as nursery:
            task_status.started(path)
            while True:
                stream = await listener.accept()
                nursery.start_soon(_handle, node, stream)
    finally:
        path.unlink(missing_ok=True)  # first: the await below raises at once when cancelled
        await listener.aclose()


async def _handle(node: Node, stream: trio.SocketStream) -> None:
    async with stream:
        try:
            with trio.fail_after(10):
                line = await _read_line(stream)
            request = json.loads(line)
            if not isinstance(request, dict) or request.get("cmd") not in COMMANDS:
                raise ValueError(f"unknown command; known: {', '.join(sorted(COMMANDS))}")
            reply = {"ok": True, "result": await COMMANDS[request["cmd"]](node, request)}
        except (ValueError, NetworkError, Rejected, trio.TooSlowError) as exc:
            reply = {"ok": False, "error": str(exc) or type(exc).__name__}
        try:
            await stream.send_all(json.dumps(reply).encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def _read_line(stream: trio.SocketStream) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise ValueError("request too large")
    return data


def _is_live(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def call(data_dir: Path, request: dict[str, Any], *, timeout: float = 60.0) -> Any:
    """Send one request to the daemon of ``data_dir`` (blocking); return its result."""
    path = data_dir / SOCKET_FILE
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"no daemon is running for '{data_dir}' (no {SOCKET_FILE})") from None
        except OSError as exc:
            raise ControlError(f"cannot reach the daemon at '{path}': {exc.strerror}") from None
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_REPLY_BYTES:
                raise ControlError("reply too large")
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError("the daemon closed the connection without a reply") from None
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "request failed"))
    return reply["result"]

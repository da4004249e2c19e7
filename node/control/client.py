"""Clients of a running daemon's control socket: blocking, or async on asyncio and trio alike.

Each sends one ``control.requests`` command and hands back its typed ``control.replies``
struct; a refused command raises ``ControlError`` with the daemon's one-line reason::

    from edgeswarm import Client

    node = Client("~/.edgeswarm")
    node.wait(peers=1)
    for hit in node.search("jazz"):
        print(hit.title)

``AsyncClient`` has the same methods, awaited; it runs on whichever of asyncio and trio runs
it (anyio), so an asyncio application talks to its daemon without a trio of its own.
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from edgeswarm.node.control import replies as rep
from edgeswarm.node.control import requests as req

SOCKET_FILE = "control.sock"
MAX_REPLY_BYTES = 16 * 1024 * 1024
DEFAULT_DATA_DIR = Path("~/.edgeswarm")

R = TypeVar("R")


class ControlError(Exception):
    """The control API could not be reached or refused the request."""


def _line(request: req.Command[Any] | dict[str, Any]) -> bytes:
    return msgspec.json.encode(request) + b"\n"


def _result(data: bytes) -> Any:
    """The ``result`` of a reply line; raises ``ControlError`` with the daemon's reason."""
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError("the daemon closed the connection without a reply") from None
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "request failed"))
    return reply["result"]


def _seconds(request: req.Command[Any]) -> float:
    """How long to wait for ``request``'s reply: its own timeout (a wait) plus its call time."""
    return float(getattr(request, "timeout", 0.0)) + request.CALL_SECONDS


def _typed(request: req.Command[R], result: Any) -> R:
    try:
        return msgspec.convert(result, req.reply_type(type(request)))
    except msgspec.ValidationError as exc:  # a daemon of another version
        command = type(request).__struct_config__.tag
        raise ControlError(f"the daemon's reply to {command!r} is not what this edgeswarm expects: {exc}") from None


def call(data_dir: Path, request: req.Command[Any] | dict[str, Any], *, timeout: float = 60.0) -> Any:
    """Send one request to the daemon of ``data_dir`` (blocking); return its result as JSON.

    ``request`` is one of ``control.requests``' structs, or the same as a JSON-ready dict
    with its ``cmd`` (what scripts in other languages send). ``Client`` decodes it typed.
    """
    path = data_dir / SOCKET_FILE
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        # a blocking connect waits (at most `timeout`) while the daemon's backlog is full; with
        # settimeout's non-blocking mode a unix socket would fail at once with EAGAIN instead
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", int(timeout), int(timeout % 1 * 1e6)))
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"no daemon is running for '{data_dir}' (no {SOCKET_FILE})") from None
        except OSError as exc:
            raise ControlError(f"cannot reach the daemon at '{path}': {exc.strerror}") from None
        sock.settimeout(timeout)
        sock.sendall(_line(request))
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
            if len(data) > MAX_REPLY_BYTES:
                raise ControlError("reply too large")
    return _result(data)


class Client:
    """A blocking client of the daemon whose data directory is ``data_dir``."""

    def __init__(self, data_dir: str | Path = DEFAULT_DATA_DIR) -> None:
        self.data_dir = Path(data_dir).expanduser()

    def request(self, request: req.Command[R]) -> R:
        """Send any command; its typed reply (e.g. ``request(requests.FlStatus())``)."""
        return _typed(request, call(self.data_dir, request, timeout=_seconds(request)))

    def status(self) -> rep.NodeStatus:
        return self.request(req.Status())

    def wait(self, **conditions: Any) -> rep.Waited:
        """Block until the node meets every condition (``requests.Wait``'s fields, e.g.
        ``peers=2``, ``timeout=30``); raises ``ControlError`` naming what is unmet."""
        return self.request(req.Wait(**conditions))

    def search(self, query: str) -> list[rep.SearchHit]:
        return self.request(req.Search(query=query))

    def click(self, item: str) -> rep.Clicked:
        return self.request(req.Click(item=item))

    def ping(self, peer: str, size: int = 0) -> rep.RoundTrip:
        return self.request(req.Ping(peer=peer, bytes=size))


class AsyncClient:
    """``Client``'s methods, awaited: on asyncio or trio, whichever runs the caller."""

    def __init__(self, data_dir: str | Path = DEFAULT_DATA_DIR) -> None:
        self.data_dir = Path(data_dir).expanduser()

    async def request(self, request: req.Command[R]) -> R:
        import anyio  # here, not at the top: the CLI's blocking client starts without it

        path = self.data_dir / SOCKET_FILE
        with anyio.fail_after(_seconds(request)):
            try:
                stream = await anyio.connect_unix(path)
            except FileNotFoundError:
                raise ControlError(f"no daemon is running for '{self.data_dir}' (no {SOCKET_FILE})") from None
            except OSError as exc:
                raise ControlError(f"cannot reach the daemon at '{path}': {exc.strerror}") from None
            async with stream:
                await stream.send(_line(request))
                data = b""
                while not data.endswith(b"\n"):
                    try:
                        data += await stream.receive(1 << 16)
                    except anyio.EndOfStream:
                        break
                    if len(data) > MAX_REPLY_BYTES:
                        raise ControlError("reply too large")
        return _typed(request, _result(data))

    async def status(self) -> rep.NodeStatus:
        return await self.request(req.Status())

    async def wait(self, **conditions: Any) -> rep.Waited:
        return await self.request(req.Wait(**conditions))

    async def search(self, query: str) -> list[rep.SearchHit]:
        return await self.request(req.Search(query=query))

    async def click(self, item: str) -> rep.Clicked:
        return await self.request(req.Click(item=item))

    async def ping(self, peer: str, size: int = 0) -> rep.RoundTrip:
        return await self.request(req.Ping(peer=peer, bytes=size))

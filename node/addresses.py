"""Listen and bootstrap addresses: checked before the node starts, so a typo is a one-line error.

py-libp2p binds its TCP listeners with SO_REUSEPORT, so a second daemon on a port already
in use would silently share it (and get half the connections). ``claim_ports`` holds each
fixed port for the daemon's life, in two ways:

- a claim only one process on this machine (this network namespace) can hold at a time: an
  abstract unix socket named after the address on Linux, an ``flock`` elsewhere. The kernel
  drops it when the process ends, even by ``kill -9``. Two daemons started in the same
  instant on one port: exactly one gets it, the other exits 7.
- a probe bind with SO_REUSEADDR and without SO_REUSEPORT, which fails while anything else
  listens on the port but not for the TIME-WAIT connections a stopped or killed daemon
  leaves behind for a minute: a supervisor restarts it on the same port at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import sys
import tempfile
from collections.abc import Iterator, Sequence

import multiaddr

from edgeswarm.protocols.peer_id import PeerId


class ListenError(Exception):
    """This node cannot listen where asked: the port is held by another process (another
    daemon, most likely), or the address is not one of this machine's."""


def parse_listen(addr: str) -> tuple[int, str, int]:
    """``(family, host, port)`` of a listen multiaddr such as ``/ip4/0.0.0.0/tcp/4001``.

    Raises
    ------
    ValueError
        Not a multiaddr, or not ``/ip4|ip6/<address>/tcp/<port>``.
    """
    try:
        parsed = multiaddr.Multiaddr(addr)
    except (ValueError, multiaddr.exceptions.Error) as exc:
        raise ValueError(f"listen address {addr!r} is not a multiaddr (like /ip4/0.0.0.0/tcp/4001): {exc}") from None
    names = [p.name for p in parsed.protocols()]
    if names not in (["ip4", "tcp"], ["ip6", "tcp"]):
        raise ValueError(f"listen address {addr!r} must be /ip4/<address>/tcp/<port> or /ip6/<address>/tcp/<port>")
    family = socket.AF_INET if names[0] == "ip4" else socket.AF_INET6
    return family, parsed.value_for_protocol(names[0]), int(parsed.value_for_protocol("tcp"))


def parse_bootstrap(addr: str, what: str = "bootstrap") -> PeerId:
    """The PeerID a bootstrap (or relay) multiaddr names (it must end in ``/p2p/<peer id>``)."""
    try:
        peer = multiaddr.Multiaddr(addr).get_peer_id()
    except (ValueError, multiaddr.exceptions.Error) as exc:
        raise ValueError(f"{what} address {addr!r} is not a multiaddr: {exc}") from None
    if not peer:
        raise ValueError(f"{what} address {addr!r} lacks /p2p/<peer id>")
    return peer


@contextlib.contextmanager
def claim_ports(addrs: Sequence[str]) -> Iterator[None]:
    """Hold every fixed listen port of ``addrs`` until the block ends (see the module docstring).

    Raises
    ------
    ListenError
        Another edgeswarm daemon holds a port, something else listens on it, or the address
        is not this machine's. Port 0 (any free port) is never checked.
    """
    with contextlib.ExitStack() as held:
        for addr in addrs:
            family, host, port = parse_listen(addr)
            if port == 0:
                continue
            if not held.enter_context(_claim(host, port)):
                raise ListenError(
                    f"listen address {addr} is in use by another edgeswarm daemon on this machine; "
                    f"pick another port with --listen"
                )
            _probe(family, host, port, addr)
        yield


@contextlib.contextmanager
def _claim(host: str, port: int) -> Iterator[bool]:
    """Whether this process got the one claim on ``host:port`` (held while the block runs)."""
    name = f"edgeswarm/tcp/{host}/{port}"
    if sys.platform == "linux":
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as claim:
            try:
                claim.bind("\0" + name)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                yield False
                return
            yield True
        return
    path = os.path.join(tempfile.gettempdir(), name.replace("/", "-") + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _probe(family: int, host: str, port: int, addr: str) -> None:
    """ListenError unless ``host:port`` could be listened on now (TIME-WAIT leftovers allowed)."""
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen(1)  # a bind alone passes beside a SO_REUSEADDR socket that listens
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ListenError(
                    f"listen address {addr} is in use (another daemon?); pick another port with --listen"
                ) from None
            raise ListenError(f"cannot listen on {addr}: {exc.strerror}") from None

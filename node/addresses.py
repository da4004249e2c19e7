"""Listen and bootstrap addresses: checked before the node starts, so a typo is a one-line error.

py-libp2p binds its TCP listeners with SO_REUSEPORT, so a second daemon on a port already
in use would silently share it (and get half the connections). ``check_free`` binds each
fixed port once without SO_REUSEPORT first: that fails whenever anything holds the port.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

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


def parse_bootstrap(addr: str) -> PeerId:
    """The PeerID a bootstrap multiaddr names (it must end in ``/p2p/<peer id>``)."""
    try:
        peer = multiaddr.Multiaddr(addr).get_peer_id()
    except (ValueError, multiaddr.exceptions.Error) as exc:
        raise ValueError(f"bootstrap address {addr!r} is not a multiaddr: {exc}") from None
    if not peer:
        raise ValueError(f"bootstrap address {addr!r} lacks /p2p/<peer id>")
    return peer


def check_free(addrs: Sequence[str]) -> None:
    """Raise ``ListenError`` if any fixed listen port is held (port 0 is always free)."""
    for addr in addrs:
        family, host, port = parse_listen(addr)
        if port == 0:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ListenError(
                        f"listen address {addr} is in use (another daemon?); pick another port with --listen"
                    ) from None
                raise ListenError(f"cannot listen on {addr}: {exc.strerror}") from None

"""Real NAT on one machine: Linux network namespaces behind nftables masquerade routers.

A public segment (namespace ``pub``: a bridge at 10.99.0.1/24, where relays and bootstrap
nodes run) and private LANs, each a host namespace behind a router namespace that forwards
and masquerades onto the public segment, as a home router does. A private host dials out
and is seen as its router's public address; nothing on the public side can dial it.

Needs root, ``ip`` (iproute2) and ``nft`` (nftables); ``nat_lab`` skips the test, saying
which is missing, where they are not there. Namespaces and their links are removed after.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

PUBLIC_IP = "10.99.0.1"


@dataclass(frozen=True)
class PrivateHost:
    netns: str
    ip: str  # its LAN address: dialled from outside, it leads nowhere
    router_ip: str  # the public address its connections come from


class NatLab:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.public = f"{tag}pub"
        self.namespaces: list[str] = []

    def private(self, lan: int, nat: str = "endpoint-independent") -> PrivateHost:
        """A host on private LAN ``lan`` (1..99) behind its own masquerading router.

        ``nat``: "endpoint-independent" keeps a connection's source port where it can (so
        one socket is seen at one public address whoever it talks to: hole punching works);
        "symmetric" maps each connection to a random port (it cannot work). Either way the
        router drops an unsolicited inbound SYN rather than answering it (RFC 5382 REQ-4),
        as a home router's firewall does, so a simultaneous open has its window.
        """
        if nat not in ("endpoint-independent", "symmetric"):
            raise ValueError(f"nat must be endpoint-independent or symmetric, not {nat!r}")
        router, host = f"{self.tag}r{lan}", f"{self.tag}h{lan}"
        uplink, port, inside = f"{self.tag}u{lan}", f"{self.tag}p{lan}", f"{self.tag}l{lan}"
        public_ip, gateway, ip = f"10.99.0.{lan + 1}", f"192.168.{lan}.1", f"192.168.{lan}.2"
        for name in (router, host):
            self._netns(name)
        _ip("link", "add", uplink, "netns", router, "type", "veth", "peer", "name", port, "netns", self.public)
        _ip("-n", self.public, "link", "set", port, "master", "br0", "up")
        _ip("-n", router, "addr", "add", f"{public_ip}/24", "dev", uplink)
        _ip("-n", router, "link", "set", uplink, "up")
        _ip("link", "add", inside, "netns", router, "type", "veth", "peer", "name", "eth0", "netns", host)
        _ip("-n", router, "addr", "add", f"{gateway}/24", "dev", inside)
        _ip("-n", router, "link", "set", inside, "up")
        _ip("-n", host, "addr", "add", f"{ip}/24", "dev", "eth0")
        _ip("-n", host, "link", "set", "eth0", "up")
        _ip("-n", host, "route", "add", "default", "via", gateway)
        _run("ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for rule in (
            ["add", "table", "ip", "nat"],
            ["add", "chain", "ip", "nat", "post", "{ type nat hook postrouting priority 100 ; }"],
            ["add", "rule", "ip", "nat", "post", "oifname", uplink, "masquerade"]
            + (["random"] if nat == "symmetric" else []),
            ["add", "table", "ip", "filter"],
            ["add", "chain", "ip", "filter", "input", "{ type filter hook input priority 0 ; }"],
            ["add", "rule", "ip", "filter", "input", "iifname", uplink, "ct", "state", "new", "drop"],
        ):
            _run("ip", "netns", "exec", router, "nft", *rule)
        return PrivateHost(host, ip, public_ip)

    def _netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _build_public(self) -> None:
        self._netns(self.public)
        _ip("-n", self.public, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.public, "addr", "add", f"{PUBLIC_IP}/24", "dev", "br0")
        _ip("-n", self.public, "link", "set", "br0", "up")

    def close(self) -> None:
        for name in reversed(self.namespaces):  # deleting a namespace deletes its links
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def why_not() -> str | None:
    """Why namespaces with NAT cannot be built here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (package {package})"
    return None


@contextmanager
def nat_lab() -> Iterator[NatLab]:
    """A public segment; add private LANs with ``lab.private(n)``. Skips the test where it cannot."""
    reason = why_not()
    if reason is not None:
        import pytest

        pytest.skip(f"no NAT lab: {reason}")
    lab = NatLab(f"es{os.getpid() % 100000}")
    try:
        try:
            lab._build_public()
        except RuntimeError as exc:  # e.g. a container that may not make namespaces, root or not
            import pytest

            pytest.skip(f"no NAT lab: {exc}")
        yield lab
    finally:
        lab.close()


def _ip(*args: str) -> None:
    _run("ip", *args)


def _run(*command: str) -> None:
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")

"""A go-libp2p peer for the interop tests: go-libp2p-daemon's ``p2pd``, run as a subprocess.

``p2pd`` ships inside the hivemind 1.1.12 wheel on PyPI, so nothing but a registry package is
downloaded: ``python tests/go_peer.py fetch`` (``make test`` runs it) unpacks the one binary
to ``build/p2pd/p2pd``. ``EDGESWARM_P2PD`` names another binary. Tests that need it skip,
saying how to fetch it, when it is absent.

Its control API (varint-delimited protobuf on a unix socket, ``hivemind/proto/p2pd.proto``)
is spoken here only as far as the tests need it: subscribing to a topic, which is what makes
the Go peer relay that topic's GossipSub messages.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY = Path(os.environ.get("EDGESWARM_P2PD", ROOT / "build" / "p2pd" / "p2pd"))
WHEEL = "hivemind==1.1.12"
START_TIMEOUT = 60.0  # seconds for p2pd to print its addresses: only a broken binary takes that long


def fetch(target: Path = BINARY) -> Path:
    """Download the hivemind wheel (no dependencies) and unpack ``p2pd`` from it to ``target``."""
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp, WHEEL], check=True
        )
        (wheel,) = Path(tmp).glob("hivemind-*.whl")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        partial.write_bytes(zipfile.ZipFile(wheel).read("hivemind/hivemind_cli/p2pd"))
        partial.chmod(0o755)
        partial.replace(target)  # whole or not at all
    return target


@dataclass
class GoPeer:
    peer_id: str
    addrs: list[str]
    control: Path
    log: Path

    @property
    def addr(self) -> str:
        """Its first address with ``/p2p/<id>``: what a node takes as ``--bootstrap``."""
        return f"{self.addrs[0]}/p2p/{self.peer_id}"

    @contextmanager
    def subscribed(self, topic: str) -> Iterator[None]:
        """The Go peer joins ``topic``'s GossipSub mesh (and relays it) while the block runs."""
        pubsub = _field_bytes(1, _varint(3)) + _field_bytes(2, topic.encode(), wire=2)  # SUBSCRIBE, topic
        request = _field_bytes(1, _varint(8)) + _field_bytes(8, pubsub, wire=2)  # PUBSUB
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(START_TIMEOUT)
            sock.connect(str(self.control))
            sock.sendall(_varint(len(request)) + request)
            reply = _read_delimited(sock)
            if not reply.startswith(b"\x08\x00"):  # Response.type = OK
                raise RuntimeError(f"p2pd refused to subscribe to {topic}: {reply!r}")
            yield  # the subscription lasts while this socket is open


@contextmanager
def go_peer(workdir: Path, *args: str) -> Iterator[GoPeer]:
    """Run ``p2pd`` on a free loopback port with pub/sub on, and ``args``; stop it after."""
    if not BINARY.exists():
        import pytest

        pytest.skip(f"no go-libp2p peer: {BINARY} is missing (`python tests/go_peer.py fetch`, or `make test`)")
    control = Path(tempfile.mkdtemp(prefix="p2pd-")) / "control.sock"  # a unix socket path is short
    log = workdir / "p2pd.log"
    command = [str(BINARY), "-hostAddrs", "/ip4/127.0.0.1/tcp/0", "-listen", f"/unix{control}", "-pubsub", *args]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (found := _started(log.read_text(errors="replace"))):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"p2pd did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        yield GoPeer(found[0], found[1], control, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        control.unlink(missing_ok=True)
        control.parent.rmdir()


def _started(text: str) -> tuple[str, list[str]] | None:
    """The peer id and listen addresses once ``p2pd`` has printed them all."""
    match = re.search(r"Peer ID: (\S+)\nPeer Addrs:\n((?:/\S+\n)+)", text)
    return (match[1], match[2].split()) if match else None


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field_bytes(number: int, payload: bytes, *, wire: int = 0) -> bytes:
    """One protobuf field: a varint (``wire`` 0, ``payload`` already varint-encoded) or bytes."""
    return _varint(number << 3 | wire) + (_varint(len(payload)) if wire == 2 else b"") + payload


def _read_delimited(sock: socket.socket) -> bytes:
    size, shift = 0, 0
    while True:
        byte = sock.recv(1)
        if not byte:
            raise RuntimeError("p2pd closed its control socket")
        size |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise RuntimeError("p2pd closed its control socket")
        data += chunk
    return data


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        sys.exit("usage: python tests/go_peer.py fetch")
    print(fetch())

"""Large payloads moved in bounded chunks: offered, pulled and verified by SHA-256.

A signed message names a blob (``BlobRef``: SHA-256 and size); the holder keeps the bytes on
a ``BlobShelf``, for named peers only (a model sent to one participant) or for anyone (a
published adapter). The receiver pulls ``CHUNK_BYTES`` pieces with ``ChunkRequest`` and
accepts the whole only if size and hash match what the signed message promised. A shelf
holds a bounded total; the oldest offers go first. An offer to named peers is released as
each has pulled its last chunk (or is withdrawn by its owner, e.g. when a federated round
ends), so a node does not carry stale payloads until they expire.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated

import msgspec

from edgeswarm.protocols.envelope import Body, Rejected
from edgeswarm.protocols.messenger import Messenger
from edgeswarm.protocols.network import NetworkError, deadline
from edgeswarm.protocols.peer_id import PeerId

CHUNK_BYTES = 512 * 1024
Digest = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]


class BlobRef(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """A payload too big to inline: its SHA-256 and exact size."""

    digest: Digest
    size: Annotated[int, msgspec.Meta(ge=0, le=1 << 40)]


class ChunkRequest(Body, array_like=True, frozen=True):
    KIND = "blob.chunk"
    MAX_BYTES = 128
    digest: Digest
    index: Annotated[int, msgspec.Meta(ge=0, le=1 << 30)]


class Chunk(Body, array_like=True, frozen=True):
    KIND = "blob.chunk_reply"
    MAX_BYTES = CHUNK_BYTES + 128
    data: Annotated[bytes, msgspec.Meta(max_length=CHUNK_BYTES)]


MESSAGES = (ChunkRequest, Chunk)


class BlobError(Exception):
    """A blob could not be fetched or did not verify."""


class BlobShelf:
    """Blobs offered to given peers until they have them, they expire, their owner withdraws
    them or the shelf needs the room."""

    def __init__(self, clock: Callable[[], float], max_bytes: int = 512 * 1024 * 1024, ttl: float = 3600.0) -> None:
        self._clock = clock
        self._max_bytes = max_bytes
        self._ttl = ttl
        self._blobs: OrderedDict[bytes, tuple[bytes, set[PeerId] | None, float]] = OrderedDict()
        self._bytes = 0

    def offer(self, data: bytes, to: PeerId | None, *, ttl: float | None = None) -> BlobRef:
        """Keep ``data`` for peer ``to`` (or for anyone if None) for ``ttl`` seconds."""
        digest = hashlib.sha256(data).digest()
        if len(data) > self._max_bytes:
            raise BlobError(f"blob of {len(data)} bytes exceeds the shelf's {self._max_bytes}")
        peers: set[PeerId] | None = set()
        if digest in self._blobs:
            _, peers, _ = self._blobs.pop(digest)
            self._bytes -= len(data)
        if peers is not None:
            peers = None if to is None else {*peers, to}
        self._blobs[digest] = (data, peers, self._clock() + (self._ttl if ttl is None else ttl))
        self._bytes += len(data)
        while self._bytes > self._max_bytes:  # oldest offers go first
            _, (old, _, _) = self._blobs.popitem(last=False)
            self._bytes -= len(old)
        return BlobRef(digest, len(data))

    def chunk(self, peer: PeerId, request: ChunkRequest) -> bytes | None:
        """The requested piece, or None if unknown, expired, out of range or not for ``peer``."""
        entry = self._blobs.get(request.digest)
        if entry is None:
            return None
        data, peers, expires = entry
        if self._clock() > expires:
            del self._blobs[request.digest]
            self._bytes -= len(data)
            return None
        start = request.index * CHUNK_BYTES
        if (peers is not None and peer not in peers) or start >= max(len(data), 1):
            return None
        if peers is not None and start + CHUNK_BYTES >= len(data):  # its last piece: the peer has it all
            self.withdraw(request.digest, peer)
        return data[start : start + CHUNK_BYTES]

    def withdraw(self, digest: bytes, peer: PeerId | None = None) -> None:
        """No longer offer ``digest`` to ``peer`` (to anyone if None); drop it once nobody is left."""
        entry = self._blobs.get(digest)
        if entry is None:
            return
        data, peers, _ = entry
        if peers is not None and peer is not None:
            peers.discard(peer)
            if peers:
                return
        del self._blobs[digest]
        self._bytes -= len(data)


async def fetch(messenger: Messenger, peer: PeerId, ref: BlobRef, *, max_bytes: int, chunk_timeout: float) -> bytes:
    """Pull ``ref`` from ``peer`` chunk by chunk and verify it; raises BlobError.

    Each chunk must arrive within ``chunk_timeout`` seconds; the caller bounds the whole.
    """
    if ref.size > max_bytes:
        raise BlobError(f"blob of {ref.size} bytes is over this node's limit of {max_bytes}")
    parts, received = [], 0
    for index in range((ref.size + CHUNK_BYTES - 1) // CHUNK_BYTES):
        try:
            with deadline(chunk_timeout):
                reply = await messenger.request(peer, ChunkRequest(ref.digest, index), Chunk)
        except (NetworkError, Rejected) as exc:  # either way the blob is lost
            raise BlobError(f"chunk {index} from {peer}: {exc}") from exc
        expected = min(CHUNK_BYTES, ref.size - received)
        if len(reply.data) != expected:
            raise BlobError(f"chunk {index} from {peer} has {len(reply.data)} bytes, expected {expected}")
        parts.append(reply.data)
        received += len(reply.data)
    data = b"".join(parts)
    if hashlib.sha256(data).digest() != ref.digest:
        raise BlobError(f"blob from {peer} does not match its SHA-256")
    return data
